"""``POST /api/v1/route/`` and ``GET /api/v1/buyers/eligibility/`` over real HTTP to buyers."""

import threading
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIRequestFactory, force_authenticate

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing.api import RouteView
from bidlog.routing.eligibility import cap_counters
from tests.factories import BuyerFactory, CallFactory

ROUTE = "/api/v1/route/"
ELIGIBILITY = "/api/v1/buyers/eligibility/"
CALLER = "3035551234"


def test_route_answers_with_the_winner_and_every_bid(operator_api, sim_buyer, simulator):
    sim_buyer(name="decliner", priority=1, respond="decline")
    winner = sim_buyer(name="winner", priority=2, bid_amount="25.50")

    response = operator_api.post(
        ROUTE, {"CallerId": "(303) 555-1234", "InboundStateCode": "CO"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["routed"] is True
    assert body["buyer"] == winner.pk
    assert body["grid_id"] == winner.grid_id
    assert body["bid_amount"] == "25.50"
    assert body["destination"] == "13035551234"
    assert body["caller_id"] == "3035551234"
    assert body["strategy"] == "waterfall"
    assert body["duration_ms"] >= 0
    assert Call.objects.get(pk=body["call"]).winner == winner
    assert [(b["buyer_name"], b["outcome"], b["code"]) for b in body["bids"]] == [
        ("decliner", Outcome.DECLINED, 2000),
        ("winner", Outcome.ACCEPTED, 1000),
    ]


def test_route_forwards_extra_params_but_not_routing_controls(operator_api, sim_buyer, simulator):
    buyer = sim_buyer()

    operator_api.post(
        ROUTE,
        {
            "CallerId": "3035551234",
            "InboundZipCode": "80301",
            "CallQualityScore": "95",
            "strategy": "highest_bid",
            "buyers": [buyer.pk],
        },
        format="json",
    )

    (received,) = simulator.requests(buyer.grid_id)
    assert received["body"] == {
        "CallerId": "3035551234",
        "InboundZipCode": "80301",
        "CallQualityScore": "95",
    }


@pytest.mark.parametrize("caller_id", ["123-4567", "0035551234", "+44 20 7946 0000", ""])
def test_bad_caller_id_answers_4003_and_sends_nothing(
    operator_api, sim_buyer, simulator, caller_id
):
    sim_buyer()

    response = operator_api.post(ROUTE, {"CallerId": caller_id}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 4003
    assert body["field"] == "CallerId"
    assert body["message"].startswith("Invalid caller ID")
    assert simulator.requests() == []
    assert Call.objects.count() == 0
    assert BidLog.objects.count() == 0


def test_missing_caller_id_answers_4003(operator_api, db):
    response = operator_api.post(ROUTE, {"InboundStateCode": "CO"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == 4003
    assert response.json()["field"] == "CallerId"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"strategy": "cheapest"}, "strategy"),
        ({"buyers": "all"}, "buyers"),
        ({"buyers": [424242]}, "buyers"),
        ({"buyers": [1, "x"]}, "buyers"),
        ({"buyers": []}, "buyers"),
        ({"strategy": None}, "strategy"),
        ({"InboundStateCode": "ZZ"}, "InboundStateCode"),
        ({"InboundStateCode": 5}, "InboundStateCode"),
        ({"Extra": {"nested": True}}, "Extra"),
    ],
)
def test_bad_route_fields_answer_400_naming_the_field(operator_api, sim_buyer, payload, field):
    sim_buyer()

    response = operator_api.post(ROUTE, {"CallerId": "3035551234", **payload}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["code"] == 4000
    assert Call.objects.count() == 0


def test_route_body_must_be_an_object(operator_api, db):
    response = operator_api.post(ROUTE, ["3035551234"], format="json")

    assert response.status_code == 400


def test_no_eligible_buyer_answers_200_unrouted_with_reasons(operator_api, sim_buyer, simulator):
    sim_buyer(name="texas", accepted_states=["TX"])
    sim_buyer(name="paused", status="paused")

    response = operator_api.post(
        ROUTE, {"CallerId": "3035551234", "InboundStateCode": "CO"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["routed"] is False
    assert body["buyer"] is None
    assert body["bid_amount"] is None
    reasons = {b["buyer_name"]: (b["outcome"], b["reason"]) for b in body["bids"]}
    assert reasons["texas"][0] == Outcome.SKIPPED_STATE
    assert "CO" in reasons["texas"][1]
    assert reasons["paused"] == (Outcome.SKIPPED_STATUS, "buyer is paused")
    assert simulator.requests() == []


def test_viewers_and_strangers_cannot_route(viewer_api, api_client, db):
    assert viewer_api.post(ROUTE, {"CallerId": "3035551234"}, format="json").status_code == 403
    assert api_client.post(ROUTE, {"CallerId": "3035551234"}, format="json").status_code in (
        401,
        403,
    )


# --- eligibility --------------------------------------------------------------------------


def test_eligibility_says_who_can_take_the_caller_and_until_when(operator_api, db):
    open_buyer = BuyerFactory(name="open", priority=1)
    dup_buyer = BuyerFactory(name="dup", priority=2, duplicate_window_days=30)
    paid = timezone.now() - timedelta(days=2)
    CallFactory(winner=dup_buyer, routed=True, caller_id="3035551234", created_at=paid)

    response = operator_api.get(ELIGIBILITY, {"caller_id": "303-555-1234"})

    assert response.status_code == 200
    body = response.json()
    assert body["caller_id"] == "3035551234"
    rows = {row["name"]: row for row in body["buyers"]}
    assert rows["open"]["eligible"] is True
    assert rows["open"]["reasons"] == []
    assert rows["open"]["buyer"] == open_buyer.pk
    (reason,) = rows["dup"]["reasons"]
    assert rows["dup"]["eligible"] is False
    assert reason["outcome"] == Outcome.SKIPPED_DUPLICATE
    until = paid + timedelta(days=30)
    assert f"until {until:%Y-%m-%d %H:%M} UTC" in reason["reason"]
    assert rows["dup"]["eligible_from"] == reason["until"]


def test_eligibility_masks_the_caller_for_viewers(viewer_api, db):
    BuyerFactory()

    body = viewer_api.get(ELIGIBILITY, {"caller_id": "3035551234"}).json()

    assert body["caller_id"] == "303***1234"


def test_eligibility_refuses_a_bad_caller_id_with_4003(viewer_api, db):
    response = viewer_api.get(ELIGIBILITY, {"caller_id": "12"})

    assert response.status_code == 400
    assert response.json()["code"] == 4003
    assert response.json()["field"] == "caller_id"


def test_eligibility_can_be_limited_to_some_buyers(viewer_api, db):
    wanted = BuyerFactory(min_bid=Decimal("1.00"))
    BuyerFactory()

    body = viewer_api.get(ELIGIBILITY, {"caller_id": "3035551234", "buyer": wanted.pk}).json()

    assert [row["buyer"] for row in body["buyers"]] == [wanted.pk]


@pytest.mark.parametrize(
    ("amounts", "responds"),
    [
        (("25.50", "31.05"), ("accept", "accept")),  # routed, the higher bid wins
        (("7.10", "0.01"), ("accept", "decline")),  # below min and a decline: not routed
    ],
)
def test_route_answer_matches_the_documented_serializer(sim_buyer, amounts, responds):
    # The live path builds the answer without the serializer; the OpenAPI document describes
    # the serializer, so the two must give the same JSON.
    from bidlog.routing.serializers import RouteOutputSerializer, route_answer
    from bidlog.routing.strategies import call_route

    for amount, respond in zip(amounts, responds, strict=True):
        sim_buyer(respond=respond, bid_amount=amount, min_bid=Decimal("10.00"))
    call = call_route(caller_id="3035551234", state_code="CO", strategy="highest_bid")

    assert route_answer(call) == RouteOutputSerializer(call).data
    assert len(route_answer(call)["bids"]) == 2


def _duplicate_holder(buyer, caller_id: str) -> str:
    """What the shared store holds for the caller with the buyer ("" when nothing)."""
    (admission,) = limits.admit(
        requests=[
            limits.AdmissionRequest(
                grid_id=f"probe-{buyer.pk}",
                max_concurrency=1,
                per_minute=60,
                reserve=limits.ReservationRequest(
                    buyer_id=buyer.pk,
                    duplicate_key=limits.duplicate_key(buyer_id=buyer.pk, caller_id=caller_id),
                ),
            )
        ]
    )
    if admission.lease is not None:
        limits.admission_settle(
            leases=[admission.lease],
            release=[admission.reservation] if admission.reservation is not None else [],
        )
    return admission.holder


def test_route_gives_slots_back_and_confirms_the_winner_by_the_time_the_server_closes(
    bob, sim_buyer, simulator
):
    loser = sim_buyer(name="loser", priority=1, bid_amount="12.00", duplicate_window_days=30)
    winner = sim_buyer(name="winner", priority=2, bid_amount="30.00", duplicate_window_days=30)
    request = APIRequestFactory().post(
        ROUTE, {"CallerId": "3035551234", "strategy": "highest_bid"}, format="json"
    )
    force_authenticate(request, user=bob)

    response = RouteView.as_view()(request)
    assert response.status_code == 200 and response.data["buyer"] == winner.pk
    response.close()  # what the WSGI server does once the body is written

    assert limits.concurrency_in_flight(grid_id=winner.grid_id) == 0
    assert limits.concurrency_in_flight(grid_id=loser.grid_id) == 0
    assert _duplicate_holder(winner, "3035551234") == f"won:{response.data['call']}"
    assert _duplicate_holder(loser, "3035551234") == ""


def test_the_settle_runs_in_close_once_the_answer_is_out(bob, sim_buyer, simulator):
    winner = sim_buyer(duplicate_window_days=30)
    settle = limits.admission_settle
    settled: list[int] = []

    def counted_settle(**kwargs):
        settled.append(len(kwargs["leases"]))
        settle(**kwargs)

    request = APIRequestFactory().post(ROUTE, {"CallerId": "3035551234"}, format="json")
    force_authenticate(request, user=bob)
    with mock.patch.object(limits, "admission_settle", counted_settle):
        response = RouteView.as_view()(request)
        # The answer is ready and the call written; the winner's slot is still held.
        assert response.status_code == 200 and response.data["buyer"] == winner.pk
        assert Call.objects.get(pk=response.data["call"]).routed
        assert settled == []
        assert limits.concurrency_in_flight(grid_id=winner.grid_id) == 1
        response.close()  # what the WSGI server does once the body is written

    assert settled == [1]
    assert limits.concurrency_in_flight(grid_id=winner.grid_id) == 0
    assert _duplicate_holder(winner, "3035551234") == f"won:{response.data['call']}"


def test_a_stuck_settle_holds_only_its_own_route(bob, sim_buyer, simulator):
    first, second = sim_buyer(name="first"), sim_buyer(name="second")
    stuck_started, release = threading.Event(), threading.Event()
    settle = limits.admission_settle

    def settle_first_slowly(**kwargs):
        if any(lease.grid_id == first.grid_id for lease in kwargs["leases"]):
            stuck_started.set()
            release.wait(timeout=10)  # the store hangs for this route's step
        settle(**kwargs)

    def route(buyer):
        request = APIRequestFactory().post(
            ROUTE, {"CallerId": "3035551234", "buyers": [buyer.pk]}, format="json"
        )
        force_authenticate(request, user=bob)
        return RouteView.as_view()(request)

    with mock.patch.object(limits, "admission_settle", settle_first_slowly):
        stuck = route(first)
        closing = threading.Thread(target=stuck.close)
        closing.start()
        try:
            assert stuck_started.wait(timeout=5)
            done = route(second)
            done.close()  # returns while the first route's step is still stuck

            assert not release.is_set()
            assert limits.concurrency_in_flight(grid_id=second.grid_id) == 0
            assert limits.concurrency_in_flight(grid_id=first.grid_id) == 1
        finally:
            release.set()
            closing.join(timeout=10)
    assert not closing.is_alive()
    assert limits.concurrency_in_flight(grid_id=first.grid_id) == 0


def test_a_failure_after_the_answer_is_logged_and_the_answer_stands(
    bob, sim_buyer, simulator, caplog
):
    sim_buyer(priority=1)
    request = APIRequestFactory().post(ROUTE, {"CallerId": "3035551234"}, format="json")
    force_authenticate(request, user=bob)
    with mock.patch.object(
        limits, "admission_settle", side_effect=ConnectionError("redis went away")
    ):
        response = RouteView.as_view()(request)
        assert Call.objects.get(pk=response.data["call"]).routed  # written before the answer
        # close() ends the request as a server would (Django then lets go of its connection).
        response.close()

    assert response.status_code == 200 and response.data["routed"] is True
    assert "the step after the answer failed" in caplog.text


def _route_in_flight(buyer, caller_id: str) -> limits.Admission:
    """Take what a route takes before asking ``buyer``: a slot, a cap place and the caller."""
    (admission,) = limits.admit(
        requests=[
            limits.AdmissionRequest(
                grid_id=buyer.grid_id,
                max_concurrency=buyer.max_concurrency,
                per_minute=buyer.rate_limit_per_minute,
                reserve=limits.ReservationRequest(
                    buyer_id=buyer.pk,
                    caps=cap_counters(buyer=buyer, now=timezone.now(), counts=(0, 0)),
                    duplicate_key=limits.duplicate_key(buyer_id=buyer.pk, caller_id=caller_id),
                ),
            )
        ]
    )
    assert admission.admitted
    return admission


def test_eligibility_counts_routes_in_flight_in_caps_and_duplicate_windows(viewer_api, db):
    buyer = BuyerFactory(daily_cap=1, duplicate_window_days=30, max_concurrency=5)
    other_caller = "7205550100"
    running = _route_in_flight(buyer, CALLER)

    same = viewer_api.get(ELIGIBILITY, {"caller_id": CALLER}).json()["buyers"][0]
    other = viewer_api.get(ELIGIBILITY, {"caller_id": other_caller}).json()["buyers"][0]

    assert same["eligible"] is False
    assert [r["outcome"] for r in same["reasons"]] == [
        Outcome.SKIPPED_CAP,
        Outcome.SKIPPED_DUPLICATE,
    ]
    assert (
        "daily cap of 1 routed calls reached with routes in flight" in same["reasons"][0]["reason"]
    )
    assert "being sold to this buyer right now" in same["reasons"][1]["reason"]
    # Another caller is only kept out by the cap place the running route holds.
    assert [r["outcome"] for r in other["reasons"]] == [Outcome.SKIPPED_CAP]

    limits.admission_settle(leases=[running.lease], release=[running.reservation])

    after = viewer_api.get(ELIGIBILITY, {"caller_id": CALLER}).json()["buyers"][0]
    assert after["eligible"] is True and after["reasons"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"Source": "web\u0000"}, "Source"), ({"Bad\u0000Key": "x"}, "Bad\u0000Key")],
)
def test_nul_character_in_a_forwarded_param_answers_400_and_sends_nothing(
    operator_api, sim_buyer, simulator, params, field
):
    sim_buyer()

    response = operator_api.post(ROUTE, {"CallerId": CALLER, **params}, format="json")

    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (4000, field)
    assert "NUL" in response.json()["message"]
    assert simulator.requests() == []
    assert not Call.objects.exists()


def test_a_buyer_answering_with_nul_characters_is_logged_and_the_call_routed(
    operator_api, sim_buyer
):
    sim_buyer(name="odd", priority=1, respond="decline", sim={"message": "no\u0000pe"})
    winner = sim_buyer(name="plain", priority=2)

    response = operator_api.post(
        ROUTE, {"CallerId": CALLER, "strategy": "highest_bid"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["buyer"] == winner.pk
    odd = BidLog.objects.get(call_id=response.json()["call"], buyer__name="odd")
    assert (odd.outcome, odd.message) == (Outcome.DECLINED, "no\ufffdpe")
