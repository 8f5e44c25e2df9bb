"""The bids list's range control (issue 20, item 1): the same quick ranges and date picker
as the overview, the reports and the calls list; exact times narrow the range; a bad day is
named next to its field; saved filters and the CSV carry the range."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bidlog.models import SavedBidFilter
from bidlog.stale import floor_hour
from tests.conftest import page_client
from tests.factories import BidLogFactory, CallFactory

LIST = reverse("bids:list")
# Ages of the bids the quick ranges pick from.
AGES = {
    "minute": timedelta(minutes=1),
    "hours": timedelta(hours=20),
    "day_and_half": timedelta(hours=36),
    "three_days": timedelta(days=3),
    "ten_days": timedelta(days=10),
    "forty_days": timedelta(days=40),
}


def _ids(response) -> set[int]:
    return {row["id"] for row in response.context["rows"]}


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), time(0), tzinfo=UTC)


def _bounds(key: str, now: datetime) -> tuple[datetime, datetime]:
    """What each quick range means, said again here (TIME_ZONE is UTC in the tests)."""
    today = _midnight(now)
    return {
        "today": (today, now),
        "yesterday": (today - timedelta(days=1), today),
        # A rolling range starts on the UTC hour at or before its length ago.
        "24h": (floor_hour(now - timedelta(hours=24)), now),
        "7d": (floor_hour(now - timedelta(days=7)), now),
        "30d": (floor_hour(now - timedelta(days=30)), now),
        "any": (datetime(1970, 1, 1, tzinfo=UTC), now + timedelta(days=1)),
    }[key]


@pytest.fixture
def aged_bids(db) -> dict[str, object]:
    now = timezone.now()
    return {name: BidLogFactory(created_at=now - age) for name, age in AGES.items()}


@pytest.mark.parametrize("key", ["today", "yesterday", "24h", "7d", "30d", "any"])
def test_each_quick_range_limits_the_list_and_is_marked_current(alice, aged_bids, key):
    query = {} if key == "any" else {"range": key}
    response = page_client(alice).get(LIST, query)
    assert response.status_code == 200
    since, until = _bounds(key, timezone.now())
    wanted = {bid.pk for bid in aged_bids.values() if since <= bid.created_at < until}
    assert _ids(response) == wanted
    current = [link.key for link in response.context["range_form"].quick_ranges() if link.current]
    assert current == [key]
    assert response.content.decode().count('aria-current="true"') == 1


def test_quick_ranges_reach_as_far_as_they_say(alice, aged_bids):
    client = page_client(alice)
    week = _ids(client.get(LIST, {"range": "7d"}))
    month = _ids(client.get(LIST, {"range": "30d"}))
    assert aged_bids["three_days"].pk in week and aged_bids["ten_days"].pk not in week
    assert aged_bids["ten_days"].pk in month and aged_bids["forty_days"].pk not in month
    assert aged_bids["forty_days"].pk in _ids(client.get(LIST))


def test_from_and_to_days_include_the_last_day_and_keep_other_filters(alice):
    day = datetime(2026, 11, 30, tzinfo=UTC)
    BidLogFactory(created_at=day - timedelta(seconds=1), code=1000)
    first = BidLogFactory(created_at=day, code=1000)
    last = BidLogFactory(created_at=day + timedelta(days=1, hours=23), code=1000)
    BidLogFactory(created_at=day + timedelta(hours=1), code=2000)
    BidLogFactory(created_at=day + timedelta(days=2), code=1000)
    response = page_client(alice).get(
        LIST, {"from_date": "2026-11-30", "to_date": "2026-12-01", "code": "1000"}
    )
    assert _ids(response) == {first.pk, last.pk}
    page = response.content.decode()
    assert 'Time range: <span class="range-label">2026-11-30 to 2026-12-01</span>' in page
    assert 'name="from_date" value="2026-11-30"' in page
    # The quick-range links keep the code and drop the days.
    links = {link.key: link.query for link in response.context["range_form"].quick_ranges()}
    assert links["7d"] == "code=1000&range=7d"


def test_exact_times_narrow_the_range_picked(alice):
    now = timezone.now()
    old = BidLogFactory(created_at=now - timedelta(hours=3))
    recent = BidLogFactory(created_at=now - timedelta(minutes=30))
    BidLogFactory(created_at=now - timedelta(days=3))
    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = page_client(alice)
    assert _ids(client.get(LIST, {"range": "24h"})) == {old.pk, recent.pk}
    both = client.get(LIST, {"range": "24h", "since": since})
    assert _ids(both) == {recent.pk}
    # The exact time stays as typed, in its open box, and the quick range stays picked.
    page = both.content.decode()
    assert f'name="since" value="{since}"' in page
    assert '<details class="exact-times" open>' in page
    assert '<input type="hidden" name="range" value="24h">' in page
    # Exact times outside the range picked: nothing is inside both.
    long_ago = (now - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _ids(client.get(LIST, {"range": "today", "until": long_ago})) == set()


@pytest.mark.parametrize(
    "query, field, message",
    [
        ({"from_date": "2026-12-02", "to_date": "2026-12-01"}, "to_date", "on or after"),
        ({"from_date": "yesterday"}, "from_date", "Enter a valid date."),
        ({"from_date": "2026-13-45"}, "from_date", "Enter a valid date."),
        ({"to_date": "9999-12-31"}, "to_date", "Must be between 1970-01-01"),
        ({"to_date": "2" * 5000}, "to_date", "Enter a valid date."),
        ({"from_date": "2024-01-01"}, "from_date", "at most 400 days"),
    ],
)
def test_a_bad_day_is_named_next_to_its_field(alice, query, field, message):
    BidLogFactory()
    response = page_client(alice).get(LIST, {**query, "code": "1000"})
    assert response.status_code == 200
    errors = response.context["range_form"].errors
    assert message in " ".join(errors[field])
    assert response.context["rows"] == []
    page = response.content.decode()
    assert "Fix the filters above to see bids." in page
    # Next to its own field, with the error style, inside the range control.
    box = page.split('class="range-days"')[1].split("</div>")[0]
    own = box.split(f'name="{field}"')[1].split("</p>")[0]
    assert message.split("&")[0].replace("'", "&#x27;") in own
    widget = str(response.context["range_form"][field])
    assert 'aria-invalid="true"' in widget and "invalid" in widget.split('class="')[1]


def test_an_unknown_quick_range_is_said_and_lists_nothing(alice):
    BidLogFactory()
    response = page_client(alice).get(LIST, {"range": "forever"})
    assert response.status_code == 200
    assert response.context["rows"] == []
    assert "range: Select a valid choice." in response.content.decode()


def test_saved_filters_keep_the_range(alice):
    now = timezone.now()
    BidLogFactory(created_at=now - timedelta(days=3), code=1000)
    client = page_client(alice)
    page = client.get(LIST, {"range": "7d", "code": "1000"})
    query = page.context["save_form"].initial["query"]
    assert query == "range=7d&code=1000"
    response = client.post(reverse("bids:saved_save"), {"name": "This week", "query": query})
    assert response["Location"] == f"{LIST}?range=7d&code=1000"
    assert SavedBidFilter.objects.get().query == "range=7d&code=1000"
    days = {"from_date": "2026-11-01", "to_date": "2026-11-02"}
    saved = client.get(LIST, days).context["save_form"].initial["query"]
    assert saved == "from_date=2026-11-01&to_date=2026-11-02"
    listed = client.get(LIST).content.decode()
    assert f'href="{LIST}?range=7d&amp;code=1000">This week</a>' in listed


def test_the_csv_link_and_the_csv_carry_the_range(bob):
    now = timezone.now()
    inside = BidLogFactory(created_at=now - timedelta(hours=2))
    BidLogFactory(created_at=now - timedelta(days=2))
    client = page_client(bob)
    # Today holds the bid of two hours ago unless the day began less than two hours ago.
    asked = "today" if now.hour >= 2 else "24h"
    page = client.get(LIST, {"range": asked}).content.decode()
    assert f'href="?range={asked}&amp;export=csv"' in page
    rows = list(
        csv.DictReader(io.StringIO(client.get(LIST, {"range": asked, "export": "csv"}).text))
    )
    assert [int(row["id"]) for row in rows] == [inside.pk]
    picked = client.get(
        LIST, {"from_date": (now - timedelta(days=2)).date().isoformat(), "export": "csv"}
    )
    assert len(list(csv.DictReader(io.StringIO(picked.text)))) == 2


def test_a_sort_reads_the_range_picked(alice):
    now = timezone.now()
    slow_old = BidLogFactory(duration_ms=900, created_at=now - timedelta(days=3))
    fast = BidLogFactory(duration_ms=50, created_at=now - timedelta(minutes=5))
    client = page_client(alice)
    week = client.get(LIST, {"range": "7d", "sort": "-duration_ms"})
    assert [row["id"] for row in week.context["rows"]] == [slow_old.pk, fast.pk]
    assert "the last 24 hours" not in week.content.decode()
    day = client.get(LIST, {"range": "24h", "sort": "-duration_ms"})
    assert [row["id"] for row in day.context["rows"]] == [fast.pk]


def test_the_calls_list_shows_a_links_exact_times_and_narrows_the_range_with_them(alice):
    now = timezone.now()
    recent = CallFactory(created_at=now - timedelta(minutes=30))
    CallFactory(created_at=now - timedelta(hours=3))
    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = page_client(alice)
    response = client.get(reverse("calls:list"), {"range": "24h", "since": since})
    assert [row["id"] for row in response.context["rows"]] == [recent.pk]
    page = response.content.decode()
    assert f'type="text" name="since" value="{since}"' in page
    assert '<details class="exact-times" open>' in page
    # A list has no field for a custom range of its own: its exact times are its filter's.
    custom = client.get(reverse("calls:list"), {"range": "custom"})
    assert custom.status_code == 200 and len(custom.context["rows"]) == 2
