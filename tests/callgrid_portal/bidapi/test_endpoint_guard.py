"""The endpoint guard at every send: allow-list changes, DNS answers, metadata addresses.

Everything listens on loopback: the simulator on 127.0.0.2 (allow-listed by address) and a
trap on 127.0.0.3 (not allow-listed) that counts the connections it is offered.
"""

import ipaddress
import socket
import threading
import time

import pytest

from bidlog.choices import Outcome, RoutingStrategy
from bidlog.models import BidLog
from bidlog.routing.send import bid_send
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from buyers.services import buyer_set_status, buyer_update
from callgrid_portal.bidapi.client import BidTarget, send_bid
from callgrid_portal.bidapi.endpoints import EndpointPolicy
from callgrid_portal.bidapi.transport import Transport
from callgrid_portal.simulator import Simulator
from tests.factories import BuyerFactory

GRID = "cm97s8hmv000ijt06r4djmije"
CALLER = "3035550142"


# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:169.254.169.254]/latest/",
        "http://[::ffff:a9fe:a9fe]/latest/",
        "http://169.254.169.254/latest/",
        "http://[fd00:ec2::254]/latest/",
        "http://100.100.100.200/latest/",
    ],
)
def test_metadata_addresses_are_refused_in_every_spelling_even_when_allowlisted(url):
    host = url.split("//")[1].split("/")[0]
    policy = EndpointPolicy.from_lists([host], [host])

    problem = policy.url_problem(url)

    assert problem is not None
    assert "metadata" in problem


def test_an_ipv4_mapped_loopback_is_read_as_the_allowlisted_ipv4_address():
    policy = EndpointPolicy.from_lists(["127.0.0.1"], ["127.0.0.1"])

    assert policy.url_problem("http://[::ffff:127.0.0.1]:8099/api/bid/") is None
    assert policy.address_problem(ipaddress.ip_address("::ffff:127.0.0.1")) is None


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.9", "127.0.0.3", "::1", "fc00::1"])
def test_an_allowlisted_name_may_not_resolve_to_a_private_address(address):
    policy = EndpointPolicy.from_lists(["buyer.example"], [])

    allowed, problem = policy.allowed_addresses([address])

    assert allowed == []
    assert problem is not None and "CALLGRID_ENDPOINT_ALLOWLIST" in problem


def test_a_public_address_passes_and_the_allowlist_names_the_host():
    policy = EndpointPolicy.from_lists(["bid.callgrid.com"], [])

    assert policy.allowed_addresses(["93.184.215.14"]) == (["93.184.215.14"], None)
    assert "CALLGRID_ENDPOINT_ALLOWLIST" in policy.url_problem("https://evil.example/api/bid/")
    assert "CALLGRID_INSECURE_HOSTS" in policy.url_problem("http://bid.callgrid.com/api/bid/")


# --- DNS answers ---------------------------------------------------------------------------


@pytest.fixture
def listeners():
    """The simulator on 127.0.0.2 and, on the same port of 127.0.0.3, a connection counter."""
    simulator = Simulator(host="127.0.0.2").start()
    trap = socket.create_server(("127.0.0.3", simulator.port))
    trap.settimeout(0.05)
    offered: list[object] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            try:
                conn, _ = trap.accept()
            except TimeoutError:
                continue
            offered.append(conn)
            conn.close()

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    yield simulator, offered
    done.set()
    thread.join(timeout=5)
    trap.close()
    simulator.stop()


class ChangingResolver:
    """A resolver whose answer the test changes, counting how often it is asked."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return answer


def _target(simulator: Simulator) -> BidTarget:
    return BidTarget(
        grid_id=GRID,
        endpoint_url=f"http://buyer.test:{simulator.port}/api/bid/",
        policy=EndpointPolicy.from_lists(["buyer.test", "127.0.0.2"], ["buyer.test"]),
    )


def test_a_name_is_sent_to_the_address_it_was_checked_at(listeners):
    simulator, offered = listeners
    resolver = ChangingResolver(["127.0.0.2"])
    transport = Transport(resolver=resolver, dns_cache_seconds=0)

    result = send_bid(_target(simulator), CALLER, transport=transport)

    # buyer.test exists only in the test resolver: libcurl never looked it up itself.
    assert result.outcome == Outcome.ACCEPTED
    assert len(simulator.requests(GRID)) == 1
    assert offered == []


def test_a_dns_answer_that_changes_to_a_refused_address_is_never_connected_to(listeners):
    simulator, offered = listeners
    resolver = ChangingResolver(["127.0.0.2"], ["127.0.0.3"], ["127.0.0.3", "127.0.0.2"])
    transport = Transport(resolver=resolver, dns_cache_seconds=0)
    target = _target(simulator)

    first = send_bid(target, CALLER, transport=transport)
    rebound = send_bid(target, CALLER, transport=transport)
    mixed = send_bid(target, CALLER, transport=transport)

    assert first.outcome == Outcome.ACCEPTED
    assert rebound.outcome == Outcome.SKIPPED_ENDPOINT
    assert rebound.final.error.startswith("not sent: 127.0.0.3 is a loopback")
    assert "CALLGRID_ENDPOINT_ALLOWLIST" in rebound.final.error
    assert mixed.outcome == Outcome.ACCEPTED  # only the allowed address was used
    assert len(simulator.requests(GRID)) == 2
    assert offered == []
    assert resolver.asked == 3


def test_a_kept_alive_connection_is_checked_again_before_each_request(listeners):
    simulator, offered = listeners
    target = _target(simulator)
    transport = Transport(resolver=ChangingResolver(["127.0.0.2"]), dns_cache_seconds=60)
    assert send_bid(target, CALLER, transport=transport).outcome == Outcome.ACCEPTED
    # The policy tightens; the connection to 127.0.0.2 is still open in the pool.
    tightened = BidTarget(
        grid_id=GRID,
        endpoint_url=target.endpoint_url,
        policy=EndpointPolicy.from_lists(["buyer.test"], ["buyer.test"]),
    )

    result = send_bid(tightened, CALLER, transport=transport)

    assert result.outcome == Outcome.SKIPPED_ENDPOINT
    assert len(simulator.requests(GRID)) == 1
    assert offered == []


# --- the settings, while bids flow -----------------------------------------------------------


def test_tightening_the_allowlist_stops_bids_at_once_and_logs_why(sim_buyer, simulator, settings):
    buyer = sim_buyer(name="local")
    before = [call_route(caller_id=f"30355501{n:02d}") for n in range(3)]
    assert all(call.winner == buyer for call in before)

    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com"]
    after = [
        call_route(caller_id=f"30355502{n:02d}", strategy=strategy)
        for n, strategy in enumerate(RoutingStrategy.values)
    ]

    assert all(not call.routed for call in after)
    rows = BidLog.objects.filter(call__in=after)
    assert {row.outcome for row in rows} == {Outcome.SKIPPED_ENDPOINT}
    assert all("not in CALLGRID_ENDPOINT_ALLOWLIST" in row.error for row in rows)
    assert len(simulator.requests(buyer.grid_id)) == 3


def test_a_buyer_whose_endpoint_no_longer_passes_can_be_paused_edited_and_disabled(
    sim_buyer, settings, operator_api
):
    buyer = sim_buyer(name="local", min_bid="5.00")
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com"]

    buyer_set_status(buyer=buyer, status="paused")
    buyer_update(buyer=buyer, min_bid="7.50", notes="moving to https")
    response = operator_api.patch(
        f"/api/v1/buyers/{buyer.pk}/", {"status": "disabled"}, format="json"
    )

    assert response.status_code == 200, response.json()
    buyer.refresh_from_db()
    assert (buyer.status, str(buyer.min_bid)) == ("disabled", "7.50")
    # A new endpoint is still checked.
    changed = operator_api.patch(
        f"/api/v1/buyers/{buyer.pk}/", {"endpoint_url": "http://127.0.0.1:9/"}, format="json"
    )
    assert changed.status_code == 400
    assert "CALLGRID_ENDPOINT_ALLOWLIST" in str(changed.json())


def test_a_test_bid_to_a_buyer_that_no_longer_passes_is_skipped(sim_buyer, simulator, settings):
    buyer = sim_buyer(name="local")
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com"]

    result = bid_send(buyer=buyer, caller_id=CALLER)

    assert result.outcome == Outcome.SKIPPED_ENDPOINT
    assert simulator.requests(buyer.grid_id) == []


def test_the_buyer_target_carries_the_guard_and_user_agent_from_settings(settings):
    settings.CALLGRID_USER_AGENT = "CallGridPortal/test"
    buyer = Buyer(**{f: getattr(BuyerFactory.build(), f) for f in ("name", "grid_id")})

    target = buyer.as_bid_target()

    assert target.user_agent == "CallGridPortal/test"
    assert target.policy is not None
    assert target.policy.url_problem("http://127.0.0.1:8099/api/bid/") is None


def test_a_slow_dns_answer_ends_at_the_bid_budget(simulator):
    release = threading.Event()

    def stalled(host: str, port: int) -> list[str]:
        release.wait(10)  # a DNS server that never answers
        return ["127.0.0.1"]

    target = BidTarget(
        grid_id=GRID,
        endpoint_url=f"http://buyer.test:{simulator.port}/api/bid/",
        timeout_seconds=1.0,
        policy=EndpointPolicy.from_lists(["buyer.test", "127.0.0.1"], ["buyer.test"]),
    )
    started = time.monotonic()

    result = send_bid(target, CALLER, transport=Transport(resolver=stalled))

    elapsed = time.monotonic() - started
    release.set()
    assert result.outcome == Outcome.NETWORK_ERROR
    assert result.final.error == "could not resolve the host name (no DNS answer within 1.0 s)"
    assert elapsed < 2.5  # the budget (1 s), not the resolver's 10 s
    assert simulator.requests(GRID) == []
