"""What the charts draw: codes over time, a buyer's latency histogram and the buyers list's
sparklines, the same from rollups as from raw rows, in a fixed number of queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import LATENCY_EDGES_MS, BidOutcomeRollup
from bidlog.monitoring.triage import open_immediate_forget
from bidlog.reports.charts import (
    NO_CODE,
    buyer_latency_histogram,
    buyers_hourly_bids,
    report_codes_over_time,
)
from bidlog.reports.rollups import floor_hour, rollup_build
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory


@pytest.fixture
def log(db):
    """Bids of two buyers over the last six hours, some answered, one timed out, one skipped."""
    now = timezone.now()
    acme, beta = BuyerFactory(name="Acme"), BuyerFactory(name="Beta", timeout_seconds=2)
    for hours, buyer, outcome, code, ms in [
        (5, acme, Outcome.ACCEPTED, 1000, 120),
        (5, acme, Outcome.DECLINED, 2000, 130),
        (3, beta, Outcome.CAPACITY_CHECK_FAILED, 4004, 900),
        (3, beta, Outcome.TIMEOUT, None, 2000),
        (1, beta, Outcome.ACCEPTED, 1000, 2500),
    ]:
        BidLogFactory(
            buyer=buyer,
            outcome=outcome,
            code=code,
            duration_ms=ms,
            bid_amount=None if outcome != Outcome.ACCEPTED else "20.00",
            created_at=now - timedelta(hours=hours, minutes=10),
        )
    BidLogFactory(
        buyer=acme,
        outcome=Outcome.SKIPPED_CONCURRENCY,
        code=None,
        created_at=now - timedelta(hours=2),
    )
    return now, acme, beta


def _rolled_up(now):
    rollup_build(start=now - timedelta(hours=8), end=now, now=now)


def test_codes_over_time_count_each_code_per_hour_and_leave_out_skips(log):
    now, _, _ = log
    args = {"since": now - timedelta(hours=6), "until": now, "bucket": "hour"}
    raw = report_codes_over_time(**args)
    assert {code: sum(counts) for code, counts in raw["codes"].items()} == {
        1000: 2,
        2000: 1,
        4004: 1,
        NO_CODE: 1,
    }
    # Each bid is in the bucket of its hour.
    starts = raw["starts"]
    hour_of_4004 = raw["codes"][4004].index(1)
    assert starts[hour_of_4004] == floor_hour(now - timedelta(hours=3, minutes=10))
    _rolled_up(now)
    assert report_codes_over_time(**args) == raw


def test_codes_per_day_read_day_rollups_and_count_the_same(log, settings):
    settings.TIME_ZONE = "UTC"
    now, acme, _ = log
    # Bids on whole days before today, so the days can be rolled up.
    for days, code in ((3, 1000), (3, 2000), (2, 1000)):
        BidLogFactory(buyer=acme, code=code, created_at=now - timedelta(days=days))
    args = {"since": now - timedelta(days=5), "until": now, "bucket": "day", "tz": "UTC"}
    raw = report_codes_over_time(**args)
    rollup_build(start=now - timedelta(days=6), end=now, now=now)
    # Whole days come from day rows alone: without the hour rows the counts stay.
    today = floor_hour(now).replace(hour=0)
    BidOutcomeRollup.objects.filter(grain="hour", bucket_start__lt=today).delete()
    rolled = report_codes_over_time(**args)
    assert rolled == raw
    assert {code: sum(counts) for code, counts in rolled["codes"].items()}[1000] == 4


def test_latency_histogram_is_the_same_from_rollups(log):
    now, _, beta = log
    since = now - timedelta(hours=24)
    raw = buyer_latency_histogram(buyer_id=beta.pk, since=since, until=now)
    assert sum(raw) == 3
    assert raw[LATENCY_EDGES_MS.index(max(e for e in LATENCY_EDGES_MS if e <= 900))] == 1
    _rolled_up(now)
    assert buyer_latency_histogram(buyer_id=beta.pk, since=since, until=now) == raw


def test_hourly_bids_per_buyer_for_sparklines(log):
    now, acme, beta = log
    idle = BuyerFactory(name="Idle")
    raw = buyers_hourly_bids(buyer_ids=[acme.pk, beta.pk, idle.pk], until=now)
    assert [len(series) for series in raw.values()] == [24, 24, 24]
    assert (sum(raw[acme.pk]), sum(raw[beta.pk]), sum(raw[idle.pk])) == (2, 3, 0)
    # The last point is the current hour; Beta's last bid was an hour and ten minutes ago.
    assert raw[beta.pk][-3:] in ([0, 1, 0], [1, 0, 0])
    _rolled_up(now)
    assert buyers_hourly_bids(buyer_ids=[acme.pk, beta.pk, idle.pk], until=now) == raw


def _list_queries(client) -> int:
    # The header's alert count is cached for a few seconds: count it on every page alike.
    open_immediate_forget()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("buyers:list")).status_code == 200
    return len(queries)


def test_buyers_list_reads_sparklines_in_the_same_queries_for_any_number_of_buyers(log, alice):
    client = page_client(alice)
    few = _list_queries(client)
    for number in range(20):
        BuyerFactory(name=f"More {number}")
    assert _list_queries(client) == few
    page = client.get(reverse("buyers:list")).content.decode()
    assert page.count('<svg class="sparkline"') == 22
    assert 'aria-label="Beta: 3 bids in the last 24 hours, at most 2 in one hour"' in page


def test_buyer_page_draws_its_last_day_against_its_timeout(log, alice):
    _, _, beta = log
    page = page_client(alice).get(reverse("buyers:detail", args=[beta.pk])).content.decode()
    # The buyer page opens with its figures, the last day's charts among them.
    section = page[page.index('id="figures"') :]
    section = section[: section.index("</section>")]
    assert 'aria-label="Response times of Beta in the last 24 hours"' in section
    assert "timeout 2 s" in section
    assert "(past the timeout)" in section
    assert "Bids and acceptance per hour (UTC)" in section
