"""GET /api/v1/bids/ and /api/v1/bids/{id}/: filters, cursor paging, masking, access."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bidlog.choices import Outcome, Source
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/bids/"
T0 = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_list_returns_bids_newest_first_with_buyer_name_grid_id_and_class(operator_api):
    buyer = BuyerFactory(name="Acme Insurance")
    older = BidLogFactory(buyer=buyer, created_at=T0)
    newer = BidLogFactory(
        buyer=buyer,
        created_at=T0 + timedelta(minutes=1),
        outcome=Outcome.DECLINED,
        code=2000,
        bid_amount=None,
    )

    response = operator_api.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert [row["id"] for row in body["results"]] == [newer.id, older.id]
    row = body["results"][1]
    assert row["buyer"] == buyer.id
    assert row["buyer_name"] == "Acme Insurance"
    assert row["grid_id"] == buyer.grid_id
    assert row["outcome"] == "accepted"
    assert row["outcome_class"] == "bid"
    assert row["bid_amount"] == "25.50"
    assert row["url"].endswith(f"/api/v1/bids/{older.id}/")
    assert body["results"][0]["outcome_class"] == "no_bid"


def test_list_serializes_every_bidlog_field(operator_api):
    BidLogFactory()

    [row] = operator_api.get(URL).json()["results"]

    expected = {
        "id",
        "buyer",
        "call",
        "source",
        "created_at",
        "caller_id",
        "state_code",
        "request",
        "http_status",
        "code",
        "message",
        "bid_amount",
        "destination",
        "response_caller_id",
        "duration_ms",
        "attempt",
        "outcome",
        "error",
        "raw_response",
        "external_id",
        "claimed_at",
        "trace",
        "buyer_name",
        "grid_id",
        "outcome_class",
        "url",
    }
    assert set(row) == expected


def test_detail_returns_one_bid(viewer_api):
    bid = BidLogFactory(message="Bid accepted", http_status=200)

    response = viewer_api.get(f"{URL}{bid.id}/")

    assert response.status_code == 200
    assert response.json()["id"] == bid.id
    assert response.json()["http_status"] == 200


def test_detail_of_unknown_bid_is_404(viewer_api):
    response = viewer_api.get(f"{URL}999999/")

    assert response.status_code == 404
    assert response.json()["detail"]


def test_filter_by_buyer(viewer_api):
    mine, other = BuyerFactory(), BuyerFactory()
    wanted = BidLogFactory(buyer=mine)
    BidLogFactory(buyer=other)

    assert _ids(viewer_api.get(URL, {"buyer": mine.id})) == {wanted.id}


def test_filter_by_grid_id(viewer_api):
    mine, other = BuyerFactory(), BuyerFactory()
    wanted = BidLogFactory(buyer=mine)
    BidLogFactory(buyer=other)

    assert _ids(viewer_api.get(URL, {"grid_id": mine.grid_id})) == {wanted.id}


def test_filter_by_outcome_accepts_commas_and_repeats(viewer_api):
    accepted = BidLogFactory(outcome=Outcome.ACCEPTED)
    declined = BidLogFactory(outcome=Outcome.DECLINED, code=2000)
    BidLogFactory(outcome=Outcome.TIMEOUT, code=None, http_status=None)

    assert _ids(viewer_api.get(URL, {"outcome": "declined"})) == {declined.id}
    assert _ids(viewer_api.get(URL, {"outcome": "accepted,declined"})) == {
        accepted.id,
        declined.id,
    }
    assert _ids(viewer_api.get(URL, {"outcome": ["accepted", "declined"]})) == {
        accepted.id,
        declined.id,
    }


def test_filter_by_unknown_outcome_is_400_naming_outcome(viewer_api):
    response = viewer_api.get(URL, {"outcome": "won"})

    assert response.status_code == 400
    assert response.json()["field"] == "outcome"


def test_filter_by_buyer_and_outcome_combined(viewer_api):
    mine, other = BuyerFactory(), BuyerFactory()
    wanted = BidLogFactory(buyer=mine, outcome=Outcome.NO_CAPACITY, code=3000)
    BidLogFactory(buyer=mine, outcome=Outcome.ACCEPTED)
    BidLogFactory(buyer=other, outcome=Outcome.NO_CAPACITY, code=3000)

    response = viewer_api.get(URL, {"buyer": mine.id, "outcome": "no_capacity"})

    assert _ids(response) == {wanted.id}


def test_filter_by_code(viewer_api):
    wanted = BidLogFactory(outcome=Outcome.DISABLED, code=4001, http_status=400)
    BidLogFactory(code=1000)

    assert _ids(viewer_api.get(URL, {"code": 4001})) == {wanted.id}


def test_filter_by_source(viewer_api):
    wanted = BidLogFactory(source=Source.HEALTH)
    BidLogFactory(source=Source.LIVE)

    assert _ids(viewer_api.get(URL, {"source": "health"})) == {wanted.id}


def test_filter_by_call(viewer_api):
    call = CallFactory()
    wanted = BidLogFactory(call=call)
    BidLogFactory()

    assert _ids(viewer_api.get(URL, {"call": call.id})) == {wanted.id}


def test_filter_by_outcome_class(viewer_api):
    blocked = BidLogFactory(outcome=Outcome.DUPLICATE, code=4005)
    skipped = BidLogFactory(outcome=Outcome.SKIPPED_CAP, code=None, http_status=None)
    BidLogFactory(outcome=Outcome.ACCEPTED)
    BidLogFactory(outcome=Outcome.TIMEOUT, code=None, http_status=None)

    assert _ids(viewer_api.get(URL, {"outcome_class": "blocked"})) == {blocked.id, skipped.id}


def test_filter_by_formatted_caller_id_finds_normalized_rows(viewer_api):
    wanted = BidLogFactory(caller_id="3035551234")
    BidLogFactory(caller_id="7205550000")

    assert _ids(viewer_api.get(URL, {"caller_id": "(303) 555-1234"})) == {wanted.id}
    assert _ids(viewer_api.get(URL, {"caller_id": "+13035551234"})) == {wanted.id}


def test_filter_by_bad_caller_id_is_400_naming_caller_id(viewer_api):
    response = viewer_api.get(URL, {"caller_id": "555-1234"})

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "caller_id"
    assert "caller ID" in body["detail"]


def test_filter_since_is_inclusive_and_until_exclusive(viewer_api):
    before = BidLogFactory(created_at=T0 - timedelta(seconds=1))
    at_start = BidLogFactory(created_at=T0)
    inside = BidLogFactory(created_at=T0 + timedelta(minutes=30))
    at_end = BidLogFactory(created_at=T0 + timedelta(hours=1))

    assert _ids(viewer_api.get(URL, {"since": "2025-05-01T12:00:00Z"})) == {
        at_start.id,
        inside.id,
        at_end.id,
    }
    assert _ids(viewer_api.get(URL, {"until": "2025-05-01T13:00:00Z"})) == {
        before.id,
        at_start.id,
        inside.id,
    }
    assert _ids(
        viewer_api.get(URL, {"since": "2025-05-01T12:00:00Z", "until": "2025-05-01T13:00:00Z"})
    ) == {at_start.id, inside.id}


def test_filter_since_reads_naive_times_as_utc_and_honours_offsets(viewer_api):
    early = BidLogFactory(created_at=T0)
    late = BidLogFactory(created_at=T0 + timedelta(hours=2))

    assert _ids(viewer_api.get(URL, {"since": "2025-05-01T13:00:00"})) == {late.id}
    # 08:00 in Denver (UTC-6 in May) is 14:00 UTC: only the late bid is at or after it.
    assert _ids(viewer_api.get(URL, {"since": "2025-05-01T08:00:00-06:00"})) == {late.id}
    assert _ids(viewer_api.get(URL, {"until": "2025-05-01T14:00:00+02:00"})) == set()
    assert _ids(viewer_api.get(URL, {"since": "2025-05-01"})) == {early.id, late.id}


def test_filter_by_bad_since_is_400_naming_since(viewer_api):
    response = viewer_api.get(URL, {"since": "yesterday"})

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "since"
    assert "ISO 8601" in body["detail"]


def test_filter_by_bad_until_is_400_naming_until(viewer_api):
    response = viewer_api.get(URL, {"until": "2025-13-01T00:00:00Z"})

    assert response.status_code == 400
    assert response.json()["field"] == "until"


def test_cursor_pagination_walks_three_pages_without_duplicates_or_misses(viewer_api):
    buyer = BuyerFactory()
    # Pairs share a timestamp so the id tie-breaker matters at page boundaries.
    created = {
        BidLogFactory(buyer=buyer, created_at=T0 + timedelta(seconds=n // 2)).id for n in range(25)
    }

    seen: list[int] = []
    url = f"{URL}?page_size=10"
    pages = 0
    while url:
        response = viewer_api.get(url)
        assert response.status_code == 200
        body = response.json()
        seen.extend(row["id"] for row in body["results"])
        url = body["next"]
        pages += 1

    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == created


def test_cursor_pagination_previous_link_returns_the_page_before(viewer_api):
    for n in range(6):
        BidLogFactory(created_at=T0 + timedelta(seconds=n))

    first = viewer_api.get(URL, {"page_size": 3}).json()
    second = viewer_api.get(first["next"]).json()
    back = viewer_api.get(second["previous"]).json()

    assert first["previous"] is None
    assert [row["id"] for row in back["results"]] == [row["id"] for row in first["results"]]


def test_page_size_is_capped_at_500(viewer_api):
    BidLogFactory.create_batch(3)

    response = viewer_api.get(URL, {"page_size": 100000})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_list_never_counts_the_table(viewer_api, django_assert_max_num_queries):
    BidLogFactory.create_batch(5)

    with django_assert_max_num_queries(3) as captured:
        response = viewer_api.get(URL)

    assert response.status_code == 200
    assert not any("COUNT(" in query["sql"].upper() for query in captured.captured_queries)


def test_viewer_sees_caller_ids_masked_in_list_and_detail(viewer_api):
    bid = BidLogFactory(
        caller_id="3035551234",
        response_caller_id="3035551234",
        request={"CallerId": "+13035551234", "InboundStateCode": "CO"},
        raw_response="caller 3035551234 not found",
        destination="17205559876",  # the buyer's number, phone-like: masked too (SPEC §6)
    )

    [row] = viewer_api.get(URL).json()["results"]
    detail = viewer_api.get(f"{URL}{bid.id}/").json()

    for data in (row, detail):
        assert data["caller_id"] == "303***1234"
        assert data["response_caller_id"] == "303***1234"
        assert data["request"] == {"CallerId": "+1303***1234", "InboundStateCode": "CO"}
        assert data["raw_response"] == "caller 303***1234 not found"
        assert data["destination"] == "1720***9876"
        assert "3035551234" not in str(data)


@pytest.mark.parametrize("client_fixture", ["operator_api", "admin_api"])
def test_operator_and_admin_see_caller_ids_in_full(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    bid = BidLogFactory(caller_id="3035551234", request={"CallerId": "3035551234"})

    [row] = client.get(URL).json()["results"]
    detail = client.get(f"{URL}{bid.id}/").json()

    for data in (row, detail):
        assert data["caller_id"] == "3035551234"
        assert data["request"]["CallerId"] == "3035551234"


def test_masking_does_not_change_the_stored_bid(viewer_api):
    bid = BidLogFactory(caller_id="3035551234")

    viewer_api.get(f"{URL}{bid.id}/")

    bid.refresh_from_db()
    assert bid.caller_id == "3035551234"
    assert bid.request["CallerId"] == "3035551234"


def test_anonymous_is_refused(api_client):
    BidLogFactory()

    list_response = api_client.get(URL)
    detail_response = api_client.get(f"{URL}1/")

    assert list_response.status_code == 401
    assert detail_response.status_code == 401
    assert "results" not in list_response.json()


def test_user_without_a_role_is_refused(api_client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="x" * 12)
    api_client.force_authenticate(user)

    response = api_client.get(URL)

    assert response.status_code == 403


def test_bids_are_read_only(operator_api):
    bid = BidLogFactory()

    post = operator_api.post(URL, {"outcome": "accepted"}, format="json")
    delete = operator_api.delete(f"{URL}{bid.id}/")

    assert post.status_code == 405
    assert delete.status_code == 405
    assert bid.__class__.objects.filter(pk=bid.pk).exists()


def test_bid_amount_is_a_decimal_string(viewer_api):
    BidLogFactory(bid_amount=Decimal("7.05"))

    [row] = viewer_api.get(URL).json()["results"]

    assert row["bid_amount"] == "7.05"
