"""The Bid API client against the simulator over real HTTP: codes, amounts, deadlines, retries."""

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from callgrid_portal.bidapi.answers import MAX_BODY_BYTES, parse_response, parse_retry_after
from callgrid_portal.bidapi.client import BidAttempt, BidTarget, send_bid
from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.bidapi.transport import default_transport

GRID = "cm97s8hmv000ijt06r4djmije"


def target_for(simulator, **overrides) -> BidTarget:
    fields = {"grid_id": GRID, "endpoint_url": simulator.endpoint, "timeout_seconds": 5.0}
    fields.update(overrides)
    return BidTarget(**fields)


class SleepRecorder:
    """A pace for send_bid: remembers each planned wait and skips it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> float:
        self.waits.append(seconds)
        return 0.0


# --- codes and outcomes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("respond", "code", "http_status", "outcome"),
    [
        ("accept", 1000, 200, Outcome.ACCEPTED),
        ("decline", 2000, 200, Outcome.DECLINED),
        ("no_capacity", 3000, 200, Outcome.NO_CAPACITY),
        ("invalid_request", 4000, 200, Outcome.INVALID_REQUEST),
        ("system_error", 5000, 200, Outcome.SYSTEM_ERROR),
        ("disabled", 4001, 200, Outcome.DISABLED),
        ("paused", 4002, 200, Outcome.PAUSED),
        ("invalid_caller_id", 4003, 200, Outcome.INVALID_CALLER_ID),
        ("capacity_check_failed", 4004, 200, Outcome.CAPACITY_CHECK_FAILED),
        ("duplicate", 4005, 200, Outcome.DUPLICATE),
        ("no_numbers", 4006, 200, Outcome.NO_NUMBERS),
        ("rate_limit", 5001, 429, Outcome.RATE_LIMITED),
    ],
)
def test_each_callgrid_code_maps_to_its_outcome(simulator, respond, code, http_status, outcome):
    simulator.configure(GRID, respond=respond, retry_after=0)

    result = send_bid(target_for(simulator), "3035551234", "CO", backoff_base=0.001)

    assert result.final.code == code
    assert result.final.http_status == http_status
    assert result.outcome == outcome
    assert result.final.message  # CallGrid's message is kept for the log


def test_accepted_bid_carries_amount_destination_and_normalized_caller(simulator):
    result = send_bid(target_for(simulator, min_bid=Decimal("10.00")), "(303) 555-1234", "co")

    final = result.final
    assert result.acceptable
    assert final.bid_amount == Decimal("25.50")
    assert final.destination == "13035551234"
    assert final.caller_id == "3035551234"
    assert final.state_code == "CO"
    assert final.response_caller_id == "13035551234"
    assert final.attempt == 1
    assert final.started_at.tzinfo is not None
    assert final.started_at.utcoffset() == timedelta(0)
    assert isinstance(final.duration_ms, int)


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ("25.50", Decimal("25.50")),
        ("25.5", Decimal("25.50")),
        ("19.99", Decimal("19.99")),
        ("0.1", Decimal("0.10")),
        ("12345678.91", Decimal("12345678.91")),
        ("25.505", Decimal("25.50")),  # truncated to cents: never record more than offered
        ("25.509", Decimal("25.50")),
        ("30", Decimal("30.00")),
    ],
)
def test_bid_amount_is_an_exact_decimal_truncated_to_cents(simulator, sent, recorded):
    simulator.configure(GRID, bid_amount=sent)

    result = send_bid(target_for(simulator), "3035551234")

    assert result.final.bid_amount == recorded
    assert result.final.bid_amount.as_tuple().exponent == -2


def test_bid_below_minimum_is_not_acceptable(simulator):
    simulator.configure(GRID, bid_amount="14.99")

    result = send_bid(target_for(simulator, min_bid=Decimal("15.00")), "3035551234")

    assert result.outcome == Outcome.BELOW_MIN_BID
    assert not result.acceptable
    assert result.final.bid_amount == Decimal("14.99")
    assert "below the minimum" in result.final.error


def test_bid_a_fraction_of_a_cent_below_minimum_is_below_minimum(simulator):
    simulator.configure(GRID, bid_amount="24.999")

    result = send_bid(target_for(simulator, min_bid=Decimal("25.00")), "3035551234")

    assert result.outcome == Outcome.BELOW_MIN_BID
    assert result.final.bid_amount == Decimal("24.99")


def test_bid_exactly_at_minimum_is_accepted(simulator):
    simulator.configure(GRID, bid_amount="15.00")

    result = send_bid(target_for(simulator, min_bid=Decimal("15.00")), "3035551234")

    assert result.outcome == Outcome.ACCEPTED


def test_acceptance_without_destination_is_a_bad_response(simulator):
    simulator.configure(GRID, destination=None)

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert result.final.code == 1000
    assert result.final.error == "accepted without a destination"
    assert not result.acceptable


@pytest.mark.parametrize(
    ("amount", "detail"), [("-5.00", "negative"), ("NaN", "NaN is not a number")]
)
def test_acceptance_with_impossible_amount_is_a_bad_response(simulator, amount, detail):
    simulator.configure(GRID, bid_amount=amount)

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert detail in result.final.error
    assert result.final.raw_response


# --- what is sent -----------------------------------------------------------------------------


def test_request_body_and_headers_reach_the_server(simulator):
    send_bid(target_for(simulator, user_agent="CallGridPortal/test"), "303.555.1234", "co")

    (received,) = simulator.requests(GRID)
    assert received["body"] == {"CallerId": "3035551234", "InboundStateCode": "CO"}
    assert received["headers"]["Content-Type"] == "application/json"
    assert received["headers"]["Accept"] == "application/json"
    assert received["headers"]["User-Agent"] == "CallGridPortal/test"


def test_e164_buyer_receives_plus_one_caller_id(simulator):
    result = send_bid(target_for(simulator, caller_id_format="e164"), "303-555-1234")

    assert simulator.requests(GRID)[0]["body"]["CallerId"] == "+13035551234"
    assert result.final.request["CallerId"] == "+13035551234"
    assert result.final.caller_id == "3035551234"  # logged as the 10 national digits


def test_extra_params_are_sent_and_call_params_override_them(simulator):
    target = target_for(
        simulator,
        extra_params={"PublisherId": "pub123", "CampaignType": "insurance", "CallerId": "x"},
    )

    result = send_bid(
        target, "3035551234", "", {"CampaignType": "solar", "InboundZipCode": "80301"}
    )

    body = simulator.requests(GRID)[0]["body"]
    assert body == {
        "CallerId": "3035551234",
        "PublisherId": "pub123",
        "CampaignType": "solar",
        "InboundZipCode": "80301",
    }
    assert result.final.request == body


def test_invalid_caller_id_sends_nothing_and_answers_a_local_4003(simulator):
    result = send_bid(target_for(simulator), "(012) 555-1234", "CO")

    assert simulator.requests() == []
    (attempt,) = result.attempts
    assert attempt.outcome == Outcome.INVALID_CALLER_ID
    assert attempt.code == 4003
    assert attempt.http_status is None
    assert "area code 012" in attempt.error
    assert attempt.request == {}


# --- deadlines --------------------------------------------------------------------------------


def test_dribbling_server_is_cut_off_at_the_buyer_timeout(simulator):
    simulator.configure(GRID, respond="dribble", dribble_interval=0.5)

    result = send_bid(target_for(simulator, timeout_seconds=2), "3035551234")

    # How soon after the timeout it stops is measured in benchmarks/deadlines.py.
    assert result.outcome == Outcome.TIMEOUT
    assert result.final.duration_ms >= 1900  # not cut off before the buyer's timeout
    assert len(result.attempts) == 1  # a timeout is never retried
    assert "within 2.0 s" in result.final.error
    assert result.final.http_status == 200


def test_server_dribbling_its_headers_is_cut_off_at_the_buyer_timeout(simulator):
    # Each byte of the status line arrives well inside a per-recv timeout; only a total
    # deadline stops this server.
    simulator.configure(GRID, respond="dribble_headers", dribble_interval=0.3)

    result = send_bid(target_for(simulator, timeout_seconds=2), "3035551234")

    assert result.outcome == Outcome.TIMEOUT
    assert result.final.duration_ms >= 1900
    assert "within 2.0 s" in result.final.error
    assert len(result.attempts) == 1


def test_slow_headers_within_the_budget_are_read_normally(simulator):
    simulator.configure(GRID, respond="dribble_headers", dribble_interval=0.005)

    result = send_bid(target_for(simulator, timeout_seconds=5), "3035551234")

    assert result.outcome == Outcome.ACCEPTED
    assert result.final.bid_amount == Decimal("25.50")


def test_dribbling_server_is_cut_off_at_the_call_deadline(simulator):
    simulator.configure(GRID, respond="dribble", dribble_interval=0.5)

    start = time.monotonic()
    result = send_bid(target_for(simulator, timeout_seconds=10), "3035551234", deadline=start + 1.0)

    # The call's deadline (1 s), not the buyer's 10 s, is the budget the answer was given.
    assert result.outcome == Outcome.TIMEOUT
    assert "within 1.0 s" in result.final.error


def test_slow_server_times_out_before_headers(simulator):
    simulator.configure(GRID, latency_ms=1500)

    result = send_bid(target_for(simulator, timeout_seconds=1), "3035551234")

    assert result.outcome == Outcome.TIMEOUT
    assert "within 1.0 s" in result.final.error
    assert result.final.http_status is None
    assert "no answer" in result.final.error


def test_latency_within_timeout_is_measured(simulator):
    simulator.configure(GRID, latency_ms=200)

    result = send_bid(target_for(simulator, timeout_seconds=2), "3035551234")

    assert result.outcome == Outcome.ACCEPTED
    assert result.final.duration_ms >= 200  # the buyer's latency is in the measure


def test_deadline_already_passed_sends_nothing(simulator):
    result = send_bid(target_for(simulator), "3035551234", deadline=time.monotonic() - 1)

    assert simulator.requests() == []
    assert result.outcome == Outcome.TIMEOUT
    assert "deadline passed" in result.final.error


# --- retries ----------------------------------------------------------------------------------


def test_system_error_is_retried_twice_with_exponential_backoff(simulator):
    simulator.configure(GRID, respond="system_error")
    sleep = SleepRecorder()

    result = send_bid(target_for(simulator), "3035551234", pace=sleep)

    assert len(simulator.requests(GRID)) == 3
    assert [a.attempt for a in result.attempts] == [1, 2, 3]
    assert result.outcome == Outcome.SYSTEM_ERROR
    assert sleep.waits == [0.25, 0.5]


def test_system_error_backoff_really_waits(simulator):
    simulator.configure(GRID, respond="system_error")

    send_bid(target_for(simulator), "3035551234", backoff_base=0.1)

    times = [r["received_at"] for r in simulator.requests(GRID)]
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2


def test_fail_then_accept_recovers_on_retry(simulator):
    simulator.configure(GRID, respond="fail_then_accept", fail_times=2)

    result = send_bid(target_for(simulator), "3035551234", backoff_base=0.01)

    assert [a.outcome for a in result.attempts] == [
        Outcome.SYSTEM_ERROR,
        Outcome.SYSTEM_ERROR,
        Outcome.ACCEPTED,
    ]
    assert result.acceptable
    assert len(simulator.requests(GRID)) == 3


def test_json_system_error_with_http_503_is_retried(simulator):
    simulator.configure(GRID, respond="system_error", http_status=503)

    result = send_bid(target_for(simulator), "3035551234", backoff_base=0.001)

    assert result.outcome == Outcome.SYSTEM_ERROR
    assert result.final.http_status == 503
    assert result.final.code == 5000
    assert len(result.attempts) == 3


@pytest.mark.parametrize(
    "respond",
    [
        "decline",
        "no_capacity",
        "invalid_request",
        "disabled",
        "paused",
        "invalid_caller_id",
        "capacity_check_failed",
        "duplicate",
        "no_numbers",
    ],
)
def test_final_answers_are_never_retried(simulator, respond):
    simulator.configure(GRID, respond=respond)
    sleep = SleepRecorder()

    result = send_bid(target_for(simulator), "3035551234", pace=sleep)

    assert len(simulator.requests(GRID)) == 1
    assert len(result.attempts) == 1
    assert sleep.waits == []


def test_rate_limit_waits_for_retry_after_in_real_time(simulator):
    simulator.configure(GRID, respond="rate_limit", retry_after=1)

    start = time.monotonic()
    result = send_bid(target_for(simulator), "3035551234", deadline=start + 1.5)

    received = simulator.requests(GRID)
    # The second request came after the asked-for second; a third would cross the deadline.
    assert len(received) == 2, result.attempts
    assert received[1]["received_at"] - received[0]["received_at"] >= 1.0
    assert result.outcome == Outcome.RATE_LIMITED
    assert len(result.attempts) == 2


def test_rate_limit_honours_retry_after_on_each_retry(simulator):
    simulator.configure(GRID, respond="rate_limit", retry_after=7)
    sleep = SleepRecorder()

    result = send_bid(target_for(simulator), "3035551234", pace=sleep)

    assert sleep.waits == [7.0, 7.0]
    assert len(simulator.requests(GRID)) == 3
    assert result.final.code == 5001
    assert result.outcome == Outcome.RATE_LIMITED


def test_rate_limit_asking_for_too_long_a_wait_is_not_retried(simulator):
    simulator.configure(GRID, respond="rate_limit", retry_after=60)
    sleep = SleepRecorder()

    result = send_bid(target_for(simulator), "3035551234", pace=sleep)

    assert sleep.waits == []
    assert len(simulator.requests(GRID)) == 1
    assert "Retry-After 60 s" in result.final.error


def test_simulator_rate_limit_answers_429_and_client_reports_it(simulator):
    simulator.configure(GRID, rate_limit_per_minute=1)
    target = target_for(simulator)

    first = send_bid(target, "3035551234")
    second = send_bid(target, "3035551234", pace=SleepRecorder())

    assert first.outcome == Outcome.ACCEPTED
    assert second.outcome == Outcome.RATE_LIMITED
    # The window frees up in about a minute: too long to wait, so no retry is made.
    assert len(second.attempts) == 1
    assert second.final.http_status == 429


def test_deadline_stops_retries_before_the_backoff(simulator):
    simulator.configure(GRID, respond="system_error")
    sleep = SleepRecorder()

    result = send_bid(
        target_for(simulator), "3035551234", deadline=time.monotonic() + 0.1, pace=sleep
    )

    assert len(simulator.requests(GRID)) == 1
    assert sleep.waits == []
    assert result.outcome == Outcome.SYSTEM_ERROR


def test_deadline_allows_only_the_retries_that_fit(simulator):
    simulator.configure(GRID, respond="system_error")

    start = time.monotonic()
    result = send_bid(target_for(simulator), "3035551234", deadline=start + 0.5)

    # 0.25 s of backoff fits before the deadline, the next 0.5 s does not.
    assert len(result.attempts) == 2
    assert len(simulator.requests(GRID)) == 2


# --- garbage ----------------------------------------------------------------------------------


def test_malformed_json_is_a_bad_response_with_the_body_kept(simulator):
    simulator.configure(GRID, respond="malformed")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert "not valid JSON" in result.final.error
    assert result.final.raw_response.startswith('{"code": 1000')
    assert len(result.attempts) == 1


def test_html_error_page_is_a_system_error_and_retried(simulator):
    simulator.configure(GRID, respond="html_error")

    result = send_bid(target_for(simulator), "3035551234", backoff_base=0.001)

    assert result.outcome == Outcome.SYSTEM_ERROR
    assert result.final.http_status == 502
    assert result.final.code is None
    assert "HTTP 502" in result.final.error
    assert "<html>" in result.final.raw_response
    assert len(simulator.requests(GRID)) == 3


def test_oversized_body_is_cut_off_at_the_cap(simulator):
    simulator.configure(GRID, respond="oversized")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert f"{MAX_BODY_BYTES // 1024} KiB" in result.final.error
    assert len(result.final.raw_response) <= 2000


def test_connection_cut_off_mid_answer_is_not_reused_for_the_next_bid(simulator):
    target = target_for(simulator, timeout_seconds=1)

    simulator.configure(GRID, respond="oversized")
    cut = send_bid(target, "3035551234")
    simulator.configure(GRID, respond="dribble")
    timed_out = send_bid(target, "3035551234")
    simulator.configure(GRID, respond="accept")
    after = send_bid(target, "3035551234")

    # Leftover bytes of a cut-off answer would corrupt the next one on a reused connection.
    assert [cut.outcome, timed_out.outcome, after.outcome] == [
        Outcome.BAD_RESPONSE,
        Outcome.TIMEOUT,
        Outcome.ACCEPTED,
    ]
    assert after.final.bid_amount == Decimal("25.50")


def test_unexpected_failure_is_reported_not_raised(simulator):
    target = BidTarget(grid_id=GRID, endpoint_url=None)  # a bug upstream, not a network fault

    result = send_bid(target, "3035551234")

    assert result.outcome == Outcome.NETWORK_ERROR
    assert result.final.error.startswith("unexpected error:")


def test_unknown_code_is_a_bad_response_that_keeps_the_code(simulator):
    simulator.configure(GRID, respond="unknown_code")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert result.final.code == 7777
    assert result.final.error == "unknown code 7777"
    assert '"code": 7777' in result.final.raw_response


def test_json_list_is_a_bad_response(simulator):
    simulator.configure(GRID, respond="wrong_shape")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert "JSON list, not an object" in result.final.error


def test_http_404_without_a_code_is_a_bad_response(simulator):
    target = BidTarget(grid_id=GRID, endpoint_url=simulator.url + "/no/such/api/")

    result = send_bid(target, "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert result.final.http_status == 404
    assert "HTTP 404" in result.final.error


def test_closed_port_is_a_network_error_not_an_exception():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    target = BidTarget(grid_id=GRID, endpoint_url=f"http://127.0.0.1:{port}/api/bid/")

    result = send_bid(target, "3035551234", pace=SleepRecorder())

    assert result.outcome == Outcome.NETWORK_ERROR
    assert result.final.error == "connection refused"
    assert len(result.attempts) == 1


def test_unresolvable_host_is_a_network_error():
    target = BidTarget(grid_id=GRID, endpoint_url="http://callgrid-sim.invalid/api/bid/")

    result = send_bid(target, "3035551234")

    assert result.outcome == Outcome.NETWORK_ERROR
    assert "resolve" in result.final.error


def test_a_server_that_never_accepts_is_a_connect_timeout_within_the_budget():
    # A listener with a full backlog: the kernel drops further SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(8):  # fill the accept queue (its size varies by kernel)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        target = BidTarget(
            grid_id=GRID, endpoint_url=f"http://127.0.0.1:{port}/api/bid/", timeout_seconds=1.0
        )
        result = send_bid(target, "3035551234")

        for filler in fillers:
            filler.close()
    assert result.outcome == Outcome.TIMEOUT
    assert result.final.error == f"could not connect to 127.0.0.1:{port} within 1.0 s"
    assert len(result.attempts) == 1


def test_a_tls_failure_is_a_network_error_naming_tls():
    # Something that is not a TLS server on the other end of an https endpoint.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]

        def garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.2)

        server = threading.Thread(target=garbage, daemon=True)
        server.start()
        target = BidTarget(grid_id=GRID, endpoint_url=f"https://127.0.0.1:{port}/api/bid/")

        result = send_bid(target, "3035551234")

        server.join(timeout=5)
    assert result.outcome == Outcome.NETWORK_ERROR
    assert result.final.error.startswith("TLS error: ")


# --- parsing details (the same code the HTTP path runs) --------------------------------------


def _parse(body: bytes, status: int = 200, min_bid: str = "0") -> BidAttempt:
    attempt = BidAttempt(attempt=1, outcome=Outcome.PENDING, started_at=datetime.now(UTC))
    parse_response(attempt, status, {}, body, Decimal(min_bid))
    return attempt


@pytest.mark.parametrize("code", [b"1000", b"1000.0", b'"1000"'])
def test_code_may_be_an_integral_number_or_a_digit_string(code):
    attempt = _parse(b'{"code": ' + code + b', "bid_amount": 12.00, "destination": "1303"}')

    assert attempt.code == 1000
    assert attempt.outcome == Outcome.ACCEPTED


@pytest.mark.parametrize(
    "body", [b'{"code": 1000.5}', b'{"code": true}', b'{"message": "hi"}', b'{"code": null}']
)
def test_missing_or_odd_code_is_a_bad_response(body):
    attempt = _parse(body)

    assert attempt.outcome == Outcome.BAD_RESPONSE
    assert "no integer code" in attempt.error


def test_amount_given_as_a_string_is_read_exactly():
    attempt = _parse(b'{"code": 1000, "bid_amount": "19.99", "destination": "13035551234"}')

    assert attempt.bid_amount == Decimal("19.99")


def test_plain_5xx_without_json_is_a_system_error():
    attempt = _parse(b"Service Unavailable", status=503)

    assert attempt.outcome == Outcome.SYSTEM_ERROR
    assert attempt.http_status == 503
    assert attempt.raw_response == "Service Unavailable"


def test_huge_code_is_not_stored_in_the_small_integer_column():
    attempt = _parse(b'{"code": 99999999}')

    assert attempt.outcome == Outcome.BAD_RESPONSE
    assert attempt.code is None
    assert "99999999" in attempt.error


def test_retry_after_reads_seconds_and_http_dates():
    in_five = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)

    assert parse_retry_after("3") == 3.0
    assert 3.0 <= parse_retry_after(in_five) <= 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-4") == 0.0


# --- the transport --------------------------------------------------------------------------


def test_transport_is_one_per_process_and_ignores_proxy_settings(simulator, monkeypatch):
    # A proxy from the environment must not decide where a bid goes.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9/")
    transports = []
    threads = [
        threading.Thread(target=lambda: transports.append(default_transport())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    result = send_bid(target_for(simulator), "3035551234")

    assert all(t is default_transport() for t in transports)
    assert result.outcome == Outcome.ACCEPTED
    assert len(simulator.requests(GRID)) == 1


def test_forked_child_sends_on_connections_of_its_own(simulator):
    target = target_for(simulator)
    assert send_bid(target, "3035551234").outcome == Outcome.ACCEPTED
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child bids on its own loop, not on the parent's kept-alive socket
        result = send_bid(target, "3035551234")
        os.write(write, result.outcome.encode())
        os._exit(0)
    os.waitpid(pid, 0)
    answer = os.read(read, 20)
    os.close(read)
    os.close(write)

    assert answer == b"accepted"
    assert send_bid(target, "3035551234").outcome == Outcome.ACCEPTED
    assert len(simulator.requests(GRID)) == 3


def test_many_concurrent_bids_all_come_back(simulator):
    simulator.configure(GRID, latency_ms=50)
    target = target_for(simulator)
    results = []

    def bid() -> None:
        results.append(send_bid(target, "3035551234"))

    threads = [threading.Thread(target=bid) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 40
    assert all(r.outcome == Outcome.ACCEPTED for r in results)
    assert len(simulator.requests(GRID)) == 40


def test_client_imports_and_sends_without_django_settings(simulator):
    code = (
        "from callgrid_portal.bidapi.client import BidTarget, send_bid\n"
        f"target = BidTarget(grid_id='g1', endpoint_url='{simulator.endpoint}')\n"
        "r = send_bid(target, '3035551234')\n"
        "print(r.outcome, r.final.request['CallerId'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["accepted", "3035551234"]


def test_nul_characters_in_an_answer_are_replaced_so_the_answer_can_be_stored(simulator):
    # PostgreSQL's text refuses U+0000; the buyer's answer is kept with U+FFFD in its place.
    simulator.configure(GRID, respond="decline", message="No\u0000thanks")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.DECLINED
    assert result.final.message == "No\ufffdthanks"


def test_destination_with_a_control_character_is_a_bad_response(simulator):
    simulator.configure(GRID, destination="1303555\u00001234")

    result = send_bid(target_for(simulator), "3035551234")

    assert result.outcome == Outcome.BAD_RESPONSE
    assert result.final.error == "destination contains control characters"
    assert "\x00" not in result.final.raw_response
    assert not result.acceptable
