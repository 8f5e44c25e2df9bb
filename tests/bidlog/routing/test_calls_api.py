"""``GET /api/v1/calls/`` and ``GET/PATCH /api/v1/calls/{id}/``."""

from datetime import timedelta

import pytest
from django.utils import timezone

from bidlog.choices import Outcome
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

CALLS = "/api/v1/calls/"
ROUTE = "/api/v1/route/"


def test_calls_list_newest_first_with_cursor_paging(viewer_api, db):
    buyer = BuyerFactory()
    old = CallFactory(created_at=timezone.now() - timedelta(hours=2))
    new = CallFactory(winner=buyer, routed=True, bid_amount="20.00")

    body = viewer_api.get(CALLS).json()

    assert set(body) == {"next", "previous", "results"}
    assert [row["id"] for row in body["results"]] == [new.pk, old.pk]
    assert body["results"][0]["winner_name"] == buyer.name
    assert body["results"][0]["grid_id"] == buyer.grid_id
    assert body["results"][0]["bid_amount"] == "20.00"


def test_calls_list_masks_caller_ids_for_viewers_only(viewer_api, operator_api, db):
    CallFactory(caller_id="3035551234")

    assert viewer_api.get(CALLS).json()["results"][0]["caller_id"] == "303***1234"
    assert operator_api.get(CALLS).json()["results"][0]["caller_id"] == "3035551234"


def test_calls_filter_by_routed_winner_caller_and_time(viewer_api, db):
    buyer = BuyerFactory()
    routed = CallFactory(winner=buyer, routed=True, caller_id="7205550100")
    CallFactory(routed=False, caller_id="3035551234")
    CallFactory(routed=False, created_at=timezone.now() - timedelta(days=3))

    def ids(**params):
        response = viewer_api.get(CALLS, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(routed="true") == [routed.pk]
    assert ids(winner=buyer.pk) == [routed.pk]
    assert ids(caller_id="(720) 555-0100") == [routed.pk]
    assert len(ids(since=(timezone.now() - timedelta(days=1)).isoformat())) == 2


def test_calls_filter_rejects_a_bad_value_naming_it(viewer_api, db):
    response = viewer_api.get(CALLS, {"since": "yesterday"})

    assert response.status_code == 400
    assert response.json()["field"] == "since"


def test_call_detail_lists_its_bids(viewer_api, db):
    buyer = BuyerFactory()
    call = CallFactory(winner=buyer, routed=True)
    BidLogFactory(call=call, buyer=buyer, outcome=Outcome.ACCEPTED)

    body = viewer_api.get(f"{CALLS}{call.pk}/").json()

    assert body["id"] == call.pk
    assert body["paid_out"] is True
    (bid,) = body["bids"]
    assert bid["outcome"] == Outcome.ACCEPTED
    assert bid["buyer_name"] == buyer.name


def test_patch_paid_out_false_frees_the_caller_for_that_buyer(operator_api, sim_buyer):
    buyer = sim_buyer(duplicate_window_days=30)
    first = operator_api.post(ROUTE, {"CallerId": "3035551234"}, format="json").json()
    blocked = operator_api.post(ROUTE, {"CallerId": "3035551234"}, format="json").json()
    assert first["buyer"] == buyer.pk
    assert blocked["routed"] is False
    assert blocked["bids"][0]["outcome"] == Outcome.SKIPPED_DUPLICATE

    patched = operator_api.patch(f"{CALLS}{first['call']}/", {"paid_out": False}, format="json")
    again = operator_api.post(ROUTE, {"CallerId": "3035551234"}, format="json").json()

    assert patched.status_code == 200
    assert patched.json()["paid_out"] is False
    assert again["routed"] is True
    assert again["buyer"] == buyer.pk


def test_patch_changes_nothing_but_paid_out(operator_api, db):
    call = CallFactory(winner=BuyerFactory(), routed=True)

    response = operator_api.patch(f"{CALLS}{call.pk}/", {"bid_amount": "99.00"}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "bid_amount"


def test_patch_refuses_an_unrouted_call(operator_api, db):
    call = CallFactory(routed=False)

    response = operator_api.patch(f"{CALLS}{call.pk}/", {"paid_out": False}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "paid_out"
    call.refresh_from_db()
    assert call.paid_out is True


def test_viewers_cannot_patch_and_nobody_can_put(viewer_api, operator_api, db):
    call = CallFactory(winner=BuyerFactory(), routed=True)

    forbidden = viewer_api.patch(f"{CALLS}{call.pk}/", {"paid_out": False}, format="json")
    put = operator_api.put(f"{CALLS}{call.pk}/", {"paid_out": False}, format="json")

    assert forbidden.status_code == 403
    assert put.status_code == 405


def test_unknown_call_is_404(viewer_api, db):
    assert viewer_api.get(f"{CALLS}999999/").status_code == 404


@pytest.mark.parametrize("name", ["routed", "paid_out", "campaign", "publisher"])
def test_a_filter_value_with_a_percent_sign_is_refused_naming_it(viewer_api, name):
    # The refusal quotes the value; a "%" in it once broke the error's formatting (500).
    response = viewer_api.get("/api/v1/calls/", {name: "50%s %d"})
    assert response.status_code == 400
    assert response.json()["field"] == name
