"""Monthly partitions on PostgreSQL: the migration with data, creation ahead, pruning, drops."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from bidlog.ingest.retention import retention_prune
from bidlog.models import BidLog, Call
from bidlog.partitions import (
    is_partitioned,
    month_floor,
    month_next,
    partition_create,
    partition_months,
    partitions_drop_before,
    partitions_ensure,
)
from bidlog.report_tasks import partitions_ensure_task
from bidlog.reports import tag_rollups
from bidlog.reports.services import report_summary
from bidlog.routing.eligibility import buyers_with_last_paid, eligible_buyers_sql
from bidlog.selectors import bid_list, call_bids
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions are PostgreSQL's; SQLite keeps tables"
)


def _partition_of(table: str, row_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [row_id])
        return cursor.fetchone()[0]


def _relkind(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        return cursor.fetchone()[0]


# --- the migration on a database with data ------------------------------------------------

ROW_TIMES = [
    datetime(2024, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2024, 12, 1, tzinfo=UTC),
    datetime(2025, 3, 15, 8, 30, tzinfo=UTC),
]


def _insert_old_schema_rows(buyer_id: int) -> list[tuple[int, int]]:
    """Calls and bids written with plain SQL against the tables of migration 0007."""
    ids = []
    with connection.cursor() as cursor:
        for at in [*ROW_TIMES, timezone.now()]:
            cursor.execute(
                "INSERT INTO bidlog_call (created_at, caller_id, state_code, params, strategy, "
                "bid_amount, destination, routed, paid_out, duration_ms, source, route_key) "
                "VALUES (%s, '3035551234', 'CO', '{}', 'waterfall', NULL, '', false, true, "
                "5, 'live', %s) RETURNING id",
                [at, uuid.uuid4()],
            )
            call_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO bidlog_bidlog (buyer_id, call_id, source, created_at, caller_id, "
                "state_code, request, message, destination, response_caller_id, duration_ms, "
                "attempt, outcome, error, raw_response, trace, external_id) VALUES (%s, %s, "
                "'live', %s, '3035551234', 'CO', '{}', '', '', '', 120, 1, 'declined', '', '', "
                "'[]', %s) RETURNING id",
                [buyer_id, call_id, at, f"ext-{call_id}"],
            )
            ids.append((call_id, cursor.fetchone()[0]))
    return ids


@pytest.mark.django_db(transaction=True)
def test_migration_partitions_existing_rows_and_goes_back():
    buyer = BuyerFactory()
    call_command("migrate", "bidlog", "0007", verbosity=0)
    try:
        assert _relkind("bidlog_bidlog") == "r" and _relkind("bidlog_call") == "r"
        ids = _insert_old_schema_rows(buyer.pk)

        call_command("migrate", "bidlog", verbosity=0)

        assert is_partitioned("bidlog_bidlog") and is_partitioned("bidlog_call")
        assert BidLog.objects.count() == Call.objects.count() == len(ids)
        for (call_id, bid_id), at in zip(ids, ROW_TIMES, strict=False):
            month = f"p{at:%Y%m}"
            assert _partition_of("bidlog_call", call_id) == f"bidlog_call_{month}"
            assert _partition_of("bidlog_bidlog", bid_id) == f"bidlog_bidlog_{month}"
            assert BidLog.objects.get(pk=bid_id).call_id == call_id
        # January and February 2025 had no rows: no partition for them.
        assert month_floor(datetime(2025, 1, 9, tzinfo=UTC)) not in partition_months("bidlog_call")
        # The sequences go on after the copied ids.
        call = CallFactory()
        assert call.pk > max(call_id for call_id, _ in ids)
        assert BidLogFactory(buyer=buyer, call=call).pk > max(bid_id for _, bid_id in ids)

        call_command("migrate", "bidlog", "0007", verbosity=0)

        assert _relkind("bidlog_bidlog") == "r" and _relkind("bidlog_call") == "r"
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bidlog_bidlog WHERE call_id IS NOT NULL")
            assert cursor.fetchone()[0] == len(ids) + 1
    finally:
        call_command("migrate", "bidlog", verbosity=0)
    assert is_partitioned("bidlog_bidlog")


def test_a_route_key_is_taken_once_for_the_same_decision(db):
    key, at = uuid.uuid4(), timezone.now()
    CallFactory(route_key=key, created_at=at)

    with pytest.raises(IntegrityError), transaction.atomic():
        CallFactory(route_key=key, created_at=at)
    assert Call.objects.filter(route_key=key).count() == 1


# --- creation ahead -----------------------------------------------------------------------


def test_ensure_creates_this_month_and_the_next_ones_once(db):
    now = datetime(2031, 11, 20, tzinfo=UTC)

    created = partitions_ensure(now=now, ahead=3)

    months = ["p203111", "p203112", "p203201", "p203202"]
    assert created == [f"{t}_{m}" for t in ("bidlog_bidlog", "bidlog_call") for m in months]
    assert partitions_ensure(now=now, ahead=3) == []


def test_a_new_month_takes_its_rows_out_of_the_default_partition(db):
    at = datetime(2033, 5, 6, 7, 8, tzinfo=UTC)
    bid = BidLogFactory(created_at=at)
    assert _partition_of("bidlog_bidlog", bid.pk) == "bidlog_bidlog_pdefault"

    assert partition_create(table="bidlog_bidlog", month=at) is True

    assert _partition_of("bidlog_bidlog", bid.pk) == "bidlog_bidlog_p203305"
    assert BidLog.objects.get(pk=bid.pk).created_at == at
    assert partition_create(table="bidlog_bidlog", month=at) is False


def test_the_beat_task_creates_partitions(db, settings):
    settings.BIDLOG_PARTITION_MONTHS_AHEAD = 14
    months = _months_ahead(14)

    created = partitions_ensure_task.apply().get()

    assert f"bidlog_call_p{months[-1]:%Y%m}" in created
    assert f"bidlog_bidlog_p{months[-1]:%Y%m}" in created
    assert set(months) <= set(partition_months("bidlog_bidlog"))
    assert partitions_ensure_task.apply().get() == []


def _months_ahead(count: int) -> list[datetime]:
    month, months = month_floor(timezone.now()), []
    for _ in range(count + 1):
        months.append(month)
        month = month_next(month)
    return months


# --- pruning: a query with a time range reads only its partitions -------------------------


def _partitions_in_plan(plan: str, table: str) -> set[str]:
    return set(re.findall(rf"\b({table}_p(?:\d{{6}}|default))\b", plan))


def test_a_one_day_range_reads_one_partition(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    day = datetime(2032, 2, 10, tzinfo=UTC)
    bids = BidLog.objects.filter(created_at__gte=day, created_at__lt=day + timedelta(days=1))
    calls = Call.objects.filter(created_at__gte=day, created_at__lt=day + timedelta(days=1))

    assert _partitions_in_plan(bids.explain(), "bidlog_bidlog") == {"bidlog_bidlog_p203202"}
    assert _partitions_in_plan(calls.explain(), "bidlog_call") == {"bidlog_call_p203202"}


def test_the_bids_api_with_a_range_reads_its_month_only(db, viewer_api):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    day = datetime(2032, 2, 10, tzinfo=UTC)
    BidLogFactory(created_at=day + timedelta(hours=3))
    params = {"since": day.isoformat(), "until": (day + timedelta(days=1)).isoformat()}

    response = viewer_api.get("/api/v1/bids/", params)

    assert response.status_code == 200 and len(response.json()["results"]) == 1
    plan = bid_list(filters=params)[:50].explain()
    assert _partitions_in_plan(plan, "bidlog_bidlog") == {"bidlog_bidlog_p203202"}


def test_a_calls_bids_are_read_from_its_month_only(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    at = datetime(2032, 2, 10, 12, tzinfo=UTC)
    call = CallFactory(created_at=at)
    bids = [BidLogFactory(call=call, created_at=at + timedelta(seconds=s)) for s in (0, 3)]

    assert list(call_bids(call)) == bids
    assert _partitions_in_plan(call_bids(call).explain(), "bidlog_bidlog") == {
        "bidlog_bidlog_p203202"
    }


def test_a_tagged_one_day_range_reads_the_calls_of_its_month_only(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    day = datetime(2032, 2, 10, tzinfo=UTC)
    params = {
        "campaign": "spring",
        "since": day.isoformat(),
        "until": (day + timedelta(days=1)).isoformat(),
    }

    plan = bid_list(filters=params)[:50].explain()

    # Without the calls' moments bounded, each bid's call was looked up in every month.
    assert _partitions_in_plan(plan, "bidlog_call") == {"bidlog_call_p203202"}
    assert _partitions_in_plan(plan, "bidlog_bidlog") == {"bidlog_bidlog_p203202"}


def test_an_hours_tag_rollup_reads_the_calls_of_its_month_only(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    hour = datetime(2032, 2, 10, 12, tzinfo=UTC)

    plan = tag_rollups._tagged_bids(hour, hour + timedelta(hours=1)).explain()

    # Each bid's call was looked up in every month: 6 s an hour on 50 million bids.
    assert _partitions_in_plan(plan, "bidlog_call") == {"bidlog_call_p203202"}


def test_the_duplicate_window_lookup_skips_the_months_before_each_buyers_window(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=3)
    now = datetime(2032, 4, 20, 12, tzinfo=UTC)
    buyer = BuyerFactory(duplicate_window_days=30)  # back to March 21
    CallFactory(winner=buyer, caller_id="3035551234", routed=True, paid_out=True, created_at=now)
    sql, params = eligible_buyers_sql(buyer_ids=[buyer.pk], caller_id="3035551234", now=now)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    read = {
        name
        for name in _partitions_in_plan(plan, "bidlog_call")
        if re.search(rf"on {name} c_\d+ \(actual", plan)
    }
    # Merge Append reads every month it keeps: the months before the window are pruned.
    assert read == {"bidlog_call_p203203", "bidlog_call_p203204"}
    assert (
        buyers_with_last_paid(buyer_ids=[buyer.pk], caller_id="3035551234", now=now)[0].last_paid_at
        == now
    )


def test_a_tagged_bid_of_a_call_made_just_before_the_range_counts(db):
    partitions_ensure(now=datetime(2032, 1, 1, tzinfo=UTC), ahead=2)
    start = datetime(2032, 3, 1, tzinfo=UTC)  # a month's first moment: the call is in February
    call = CallFactory(campaign="spring", created_at=start - timedelta(seconds=2))
    BidLogFactory(call=call, created_at=start + timedelta(seconds=1))
    BidLogFactory(call=call, created_at=start - timedelta(seconds=1))  # before the range
    params = {"campaign": "spring", "since": start.isoformat()}

    assert [bid.call_id for bid in bid_list(filters=params)] == [call.pk]
    summary = report_summary(since=start, until=start + timedelta(hours=1), campaign="spring")
    assert summary["bids"] == 1


# --- retention drops whole months ---------------------------------------------------------

NOW = datetime(2001, 6, 30, 12, 40, tzinfo=UTC)


def test_retention_drops_whole_months_and_deletes_the_edge(db, settings):
    settings.BIDLOG_RETENTION_DAYS = 30  # cutoff 2001-05-31 12:00
    for month in (3, 4, 5, 6):
        partition_create(table="bidlog_bidlog", month=datetime(2001, month, 1, tzinfo=UTC))
    buyer = BuyerFactory()
    times = [
        datetime(2001, 3, 2, tzinfo=UTC),
        datetime(2001, 4, 30, 23, tzinfo=UTC),
        datetime(2001, 5, 31, 11, 59, tzinfo=UTC),
        datetime(2001, 5, 31, 12, 0, tzinfo=UTC),
        datetime(2001, 6, 29, tzinfo=UTC),
    ]
    for at in times:
        BidLogFactory(buyer=buyer, created_at=at)
    before = report_summary(since=times[0], until=NOW.replace(minute=0))
    # Written long before retention runs, in real life: their deferred key checks are done
    # (PostgreSQL refuses to drop a table with checks pending in the transaction).
    connection.check_constraints()

    result = retention_prune(now=NOW)

    assert result.dropped == ["bidlog_bidlog_p200103", "bidlog_bidlog_p200104"]
    assert result.deleted == 1
    assert sorted(BidLog.objects.values_list("created_at", flat=True)) == times[3:]
    assert partition_months("bidlog_bidlog")[:2] == [
        datetime(2001, 5, 1, tzinfo=UTC),
        datetime(2001, 6, 1, tzinfo=UTC),
    ]
    after = report_summary(since=times[0], until=NOW.replace(minute=0))
    assert after["attempts"] == before["attempts"] == len(times)


def test_drop_before_keeps_a_month_that_ends_after_the_cutoff(db):
    partition_create(table="bidlog_bidlog", month=datetime(2001, 1, 1, tzinfo=UTC))

    kept = partitions_drop_before(
        table="bidlog_bidlog", cutoff=datetime(2001, 1, 31, 23, tzinfo=UTC)
    )
    dropped = partitions_drop_before(table="bidlog_bidlog", cutoff=datetime(2001, 2, 1, tzinfo=UTC))

    assert kept == [] and dropped == ["bidlog_bidlog_p200101"]
