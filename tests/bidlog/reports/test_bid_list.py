"""The bids list for investigation (issue 20, item 7): several outcomes, day pickers, the
count, sorting, the CSV of the current filter, saved filters; "Outbid", the timeout guidance
and the code named once on the bid pages."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import BidLog, SavedBidFilter
from bidlog.reports import bid_pages
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

LIST = reverse("bids:list")


def _ids(response) -> list[int]:
    return [row["id"] for row in response.context["rows"]]


def test_several_outcomes_at_once(alice):
    accepted = BidLogFactory(outcome=Outcome.ACCEPTED)
    declined = BidLogFactory(outcome=Outcome.DECLINED, code=2000)
    BidLogFactory(outcome=Outcome.TIMEOUT, code=None)
    response = page_client(alice).get(LIST, {"outcome": ["accepted", "declined"]})
    assert sorted(_ids(response)) == sorted([accepted.pk, declined.pk])
    assert 'type="date"' in response.content.decode()


def test_day_pickers_include_the_last_day(alice):
    day = datetime(2026, 11, 30, tzinfo=UTC)
    before = BidLogFactory(created_at=day - timedelta(seconds=1))
    first = BidLogFactory(created_at=day)
    last = BidLogFactory(created_at=day + timedelta(days=1, hours=23, minutes=59))
    after = BidLogFactory(created_at=day + timedelta(days=2))
    response = page_client(alice).get(LIST, {"from_date": "2026-11-30", "to_date": "2026-12-01"})
    assert _ids(response) == [last.pk, first.pk]
    assert before.pk not in _ids(response) and after.pk not in _ids(response)
    assert "2 bids match." in response.content.decode()


def test_the_old_day_pickers_open_the_same_bids_as_exact_times(alice):
    # Saved filters and bookmarks of before the range control carry day_from and day_to.
    day = datetime(2026, 11, 30, tzinfo=UTC)
    first = BidLogFactory(created_at=day)
    last = BidLogFactory(created_at=day + timedelta(days=1, hours=23, minutes=59))
    BidLogFactory(created_at=day + timedelta(days=2))
    client = page_client(alice)
    response = client.get(LIST, {"day_from": "2026-11-30", "day_to": "2026-12-01", "code": ""})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?code=&since=2026-11-30&until=2026-12-02"
    assert _ids(client.get(response["Location"])) == [last.pk, first.pk]
    bad = client.get(LIST, {"day_to": "2026-13-45"}, follow=True)
    assert "until" in bad.context["filter"].form.errors


@pytest.mark.parametrize(
    "query, field, message",
    [
        ({"sort": "id; drop table"}, "sort", "Select a valid choice"),
        (
            {"sort": "-duration_ms", "from_date": "2026-11-01", "to_date": "2026-11-30"},
            "sort",
            "pick at most 7 days",
        ),
        ({"sort": "-duration_ms", "range": "30d"}, "sort", "pick at most 7 days"),
        ({"since": "yesterday"}, "since", "ISO 8601"),
    ],
)
def test_bad_orders_and_times_are_named_on_their_field(alice, query, field, message):
    BidLogFactory()
    response = page_client(alice).get(LIST, query)
    assert response.status_code == 200
    errors = response.context["filter"].form.errors
    assert message in " ".join(errors[field])
    assert response.context["rows"] == []
    # The field itself carries the error style.
    widget = str(response.context["filter"].form[field])
    assert 'aria-invalid="true"' in widget and "invalid" in widget.split('class="')[1]


@pytest.mark.parametrize("query", [{"page": "0"}, {"page": "x"}, {"export": "xlsx"}])
def test_bad_page_or_export_is_an_error_not_a_crash(alice, query):
    response = page_client(alice).get(LIST, query)
    assert response.status_code == 200
    assert response.context["filter"].form.errors["__all__"]


def test_the_count_stops_at_its_cap(alice, monkeypatch):
    monkeypatch.setattr(bid_pages, "COUNT_CAP", 3)
    for _ in range(5):
        BidLogFactory()
    page = page_client(alice).get(LIST).content.decode()
    assert "more than 3 bids match." in page


def test_columns_sort_slowest_first_within_the_last_day(alice):
    now = timezone.now()
    slow = BidLogFactory(duration_ms=900, created_at=now - timedelta(minutes=5))
    fast = BidLogFactory(duration_ms=50, created_at=now - timedelta(minutes=1))
    # Slowest of all, but older than the 24 hours a sort without days reads.
    BidLogFactory(duration_ms=5000, created_at=now - timedelta(days=2))
    response = page_client(alice).get(LIST, {"sort": "-duration_ms"})
    assert _ids(response) == [slow.pk, fast.pk]
    page = response.content.decode()
    assert "Slowest first: the last 24 hours." in page
    assert '<th aria-sort="descending"><a href="?sort=duration_ms">Time</a></th>' in page
    response = page_client(alice).get(LIST, {"sort": "duration_ms"})
    assert _ids(response) == [fast.pk, slow.pk]


def test_a_sort_reads_only_the_newest_rows_of_a_busy_range_and_says_so(alice, monkeypatch):
    monkeypatch.setattr(bid_pages, "SORT_WINDOW", 3)
    now = timezone.now()
    # The slowest bid is the oldest, outside the newest three the sort reads.
    BidLogFactory(duration_ms=9000, created_at=now - timedelta(minutes=10))
    newest = [
        BidLogFactory(duration_ms=ms, created_at=now - timedelta(minutes=m))
        for m, ms in ((4, 100), (3, 300), (2, 200), (1, 50))
    ]
    response = page_client(alice).get(LIST, {"sort": "-duration_ms"})
    assert _ids(response) == [newest[1].pk, newest[2].pk, newest[3].pk]
    assert "Sorted among the newest 3 of them" in response.content.decode()


def test_sorted_pages_go_on_by_number(alice, monkeypatch):
    monkeypatch.setattr(bid_pages, "PAGE_SIZE", 2)
    bids = [BidLogFactory(duration_ms=100 * n) for n in range(1, 6)]
    client = page_client(alice)
    first = client.get(LIST, {"sort": "-duration_ms"})
    assert _ids(first) == [bids[4].pk, bids[3].pk]
    second = client.get(LIST + "?" + first.context["pages"]["next"])
    assert _ids(second) == [bids[2].pk, bids[1].pk]
    assert "previous" in second.context["pages"]


def test_csv_holds_the_current_filter_in_the_page_order(bob):
    acme = BuyerFactory(name="Acme")
    BidLogFactory(buyer=acme, duration_ms=100, caller_id="3035551234")
    BidLogFactory(buyer=acme, duration_ms=700, outcome=Outcome.DECLINED, code=2000)
    BidLogFactory(duration_ms=300)  # another buyer
    response = page_client(bob).get(
        LIST, {"buyer": acme.pk, "sort": "-duration_ms", "export": "csv"}
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="callgrid-bids-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["buyer_name"], r["duration_ms"], r["outcome"]) for r in rows] == [
        ("Acme", "700", "Declined"),
        ("Acme", "100", "Accepted"),
    ]
    assert rows[1]["caller_id"] == "3035551234"


def _csv_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        text = client.get(LIST, {"export": "csv"}).content.decode()
    assert len(list(csv.DictReader(io.StringIO(text)))) == BidLog.objects.count()
    return len(queries)


def test_csv_reads_each_buyers_name_and_grid_id_with_its_rows(bob):
    client = page_client(bob)
    BidLogFactory(buyer=BuyerFactory(name="Acme"))
    few = _csv_queries(client)
    for buyer in BuyerFactory.create_batch(3):
        BidLogFactory.create_batch(4, buyer=buyer)

    assert _csv_queries(client) == few  # no query per row for the buyer's columns
    rows = list(csv.DictReader(io.StringIO(client.get(LIST, {"export": "csv"}).text)))
    assert {(r["buyer_name"], r["grid_id"]) for r in rows} == {
        (bid.buyer.name, bid.buyer.grid_id) for bid in BidLog.objects.select_related("buyer")
    }


def test_csv_masks_callers_for_viewers(alice):
    BidLogFactory(caller_id="3035551234")
    text = page_client(alice).get(LIST, {"export": "csv"}).content.decode()
    assert "3035551234" not in text and "1234" in text


def test_the_page_links_the_csv_of_its_filter(alice):
    BidLogFactory()
    page = page_client(alice).get(LIST, {"code": "1000"}).content.decode()
    assert 'href="?code=1000&amp;export=csv"' in page
    assert '<main id="main" tabindex="-1" class="wide">' in page


def test_saved_filters_belong_to_their_user_and_survive_logout(alice, bob):
    client = page_client(alice)
    response = client.post(
        reverse("bids:saved_save"),
        {"name": "Capacity checks", "query": "code=4004&before=x~1&page=2&export=csv"},
    )
    assert response["Location"] == f"{LIST}?code=4004"
    saved = SavedBidFilter.objects.get()
    assert (saved.user, saved.name, saved.query) == (alice, "Capacity checks", "code=4004")
    # A new session (after logging out) still lists it; another person does not see it.
    fresh = Client()
    fresh.force_login(alice)
    assert 'href="/bids/?code=4004">Capacity checks</a>' in fresh.get(LIST).content.decode()
    other = page_client(bob)
    assert "Capacity checks" not in other.get(LIST).content.decode()
    other.post(reverse("bids:saved_delete", args=[saved.pk]))
    assert SavedBidFilter.objects.exists()
    # Saving the same name again replaces it; deleting removes it.
    client.post(reverse("bids:saved_save"), {"name": "Capacity checks", "query": "code=4006"})
    assert list(SavedBidFilter.objects.values_list("query", flat=True)) == ["code=4006"]
    client.post(reverse("bids:saved_delete", args=[saved.pk]))
    assert not SavedBidFilter.objects.exists()


@pytest.mark.parametrize(
    "data, message",
    [({"name": "  ", "query": ""}, "Give the filter a name."), ({"name": "x" * 61}, "at most 60")],
)
def test_a_bad_saved_filter_name_is_named(alice, data, message):
    response = page_client(alice).post(reverse("bids:saved_save"), data, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SavedBidFilter.objects.exists()


def test_saved_filters_are_capped_per_user(alice, monkeypatch):
    for n in range(30):
        SavedBidFilter.objects.create(user=alice, name=f"f{n}", query="")
    response = page_client(alice).post(
        reverse("bids:saved_save"), {"name": "one more", "query": ""}, follow=True
    )
    assert "You have 30 saved filters; delete one first." in response.content.decode()


def test_an_auction_loser_reads_outbid(alice):
    winner, loser = BuyerFactory(name="Winner"), BuyerFactory(name="Loser")
    call = CallFactory(winner=winner, routed=True, bid_amount=Decimal("40.00"))
    won = BidLogFactory(buyer=winner, call=call, bid_amount=Decimal("40.00"))
    lost = BidLogFactory(buyer=loser, call=call, bid_amount=Decimal("25.00"))
    client = page_client(alice)
    rows = {row["id"]: row for row in client.get(LIST).context["rows"]}
    assert (rows[won.pk]["outcome"], rows[lost.pk]["outcome"]) == ("Accepted", "Outbid")
    assert rows[lost.pk]["outcome_class"] == "no_bid"
    page = client.get(reverse("bids:detail", args=[lost.pk])).content.decode()
    assert '<span class="badge no_bid">Outbid</span>' in page
    assert "another buyer bid more" in page


def test_a_timeout_gets_a_guidance_panel(alice):
    bid = BidLogFactory(outcome=Outcome.TIMEOUT, code=None, http_status=None, message="")
    page = page_client(alice).get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert "Timeout: no answer within the buyer&#x27;s timeout" in page
    assert "Likely causes" in page and "raise the timeout" in page


def test_the_answer_names_its_code_once(alice):
    bid = BidLogFactory(
        outcome=Outcome.DECLINED, code=2000, http_status=200, message="Bid declined"
    )
    page = page_client(alice).get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert '<span class="badge no_bid">Declined</span>' in page
    assert "HTTP 200, code 2000: Bid declined" in page
    assert "Declined (2000)" not in page


def test_the_page_keeps_its_labels_once_the_api_has_built_its_filter_fields(db):
    # A schema or an API request builds each filter's form field once and keeps it.
    for name in ("outcome", "outcome_class", "since"):
        assert bid_pages.BidListFilter.base_filters[name].field is not None
    form = bid_pages.BidListFilter(data={}, queryset=BidLog.objects.none()).form
    assert form.fields["outcome"].label == "Outcome (any of)"
    assert form.fields["outcome_class"].empty_label == "Any class"
    assert form.fields["since"].label == "Since"
