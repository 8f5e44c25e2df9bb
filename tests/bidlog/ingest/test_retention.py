"""Retention deletes whole old hours of raw bid logs, and reports over them keep their numbers."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from bidlog.ingest.retention import retention_prune
from bidlog.models import BidLog, Call
from bidlog.partitions import is_partitioned, partitions_ensure
from bidlog.reports.rollups import rollup_build_hour
from bidlog.reports.services import report_summary
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

NOW = datetime(2025, 6, 30, 12, 40, tzinfo=UTC)


@pytest.fixture
def old_and_new(db, settings):
    settings.BIDLOG_RETENTION_DAYS = 30
    buyer = BuyerFactory()
    cutoff = datetime(2025, 5, 31, 12, tzinfo=UTC)  # NOW - 30 days, floored to the hour
    old = [cutoff - timedelta(days=3), cutoff - timedelta(minutes=1)]
    same_hour_as_cutoff = cutoff + timedelta(minutes=30)
    new = [same_hour_as_cutoff, NOW - timedelta(hours=1)]
    for at in old + new:
        BidLogFactory(buyer=buyer, created_at=at)
    CallFactory(created_at=old[0], winner=buyer, routed=True, bid_amount="20.00")
    return buyer, old, new


def test_prune_deletes_only_rows_from_hours_before_the_cutoff(old_and_new):
    _buyer, _old, new = old_and_new

    result = retention_prune(now=NOW, batch_size=1)

    assert result.deleted == 2
    assert sorted(BidLog.objects.values_list("created_at", flat=True)) == new


def test_prune_keeps_calls(old_and_new):
    retention_prune(now=NOW)

    assert Call.objects.count() == 1


def test_reports_over_pruned_ranges_keep_their_numbers(old_and_new):
    _buyer, old, _new = old_and_new
    since, until = old[0] - timedelta(hours=2), old[1] + timedelta(minutes=1)
    before = report_summary(since=since.replace(minute=0), until=until.replace(minute=0))

    retention_prune(now=NOW)

    after = report_summary(since=since.replace(minute=0), until=until.replace(minute=0))
    assert after == before
    assert after["bids"] == 2 and str(after["revenue"]) == "20.00"


def test_prune_with_nothing_old_does_nothing(old_and_new):
    retention_prune(now=NOW)

    assert retention_prune(now=NOW).deleted == 0
    assert BidLog.objects.count() == 2


def test_old_hours_are_never_rebuilt_from_their_pruned_rows(old_and_new):
    _buyer, old, _new = old_and_new
    retention_prune(now=NOW)

    with pytest.raises(ValueError, match="older than retention"):
        rollup_build_hour(hour=old[0], now=NOW)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded default's own path")
def test_sqlite_keeps_plain_tables_and_deletes(old_and_new):
    assert partitions_ensure() == [] and not is_partitioned("bidlog_bidlog")

    result = retention_prune(now=NOW)

    assert result.deleted == 2 and result.dropped == []
