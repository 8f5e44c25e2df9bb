"""Import on PostgreSQL: COPY into a staging table and one merge, idempotent by external_id."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.ingest.imports import ImportRejected, _insert_by_orm, bids_import
from bidlog.models import BidLog, RollupBucket
from bidlog.reports.rollups import floor_hour
from tests.factories import BuyerFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="COPY and ON CONFLICT are the PostgreSQL path"
)


def _records(buyer, count: int, prefix: str = "ext") -> list[dict]:
    now = timezone.now()
    return [
        {
            "external_id": f"{prefix}-{n}",
            "grid_id": buyer.grid_id,
            "created_at": (now - timedelta(hours=2, minutes=n % 90)).isoformat(),
            "caller_id": "3035551234",
            "state_code": "co",
            "code": 2000 if n % 3 else 1000,
            "http_status": 200,
            "bid_amount": None if n % 3 else "25.00",
            "destination": "" if n % 3 else "18005550100",
            "duration_ms": 150 + n,
            "request": {"n": n, "text": "tab\there, new\nline, back\\slash"},
            "message": "quote ' and \" and a comma,",
        }
        for n in range(count)
    ]


@pytest.fixture
def buyer(db):
    return BuyerFactory(min_bid=Decimal("10.00"))


def _columns(queryset) -> list[tuple]:
    return list(
        queryset.order_by("external_id").values_list(
            "external_id",
            "buyer_id",
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
            "duration_ms",
            "attempt",
            "outcome",
            "error",
        )
    )


def test_copy_writes_the_same_rows_as_the_orm(buyer):
    result = bids_import(records=_records(buyer, 30, "copy"))
    assert result.created == 30
    copied = _columns(BidLog.objects.filter(external_id__startswith="copy-"))
    # The same records through the ORM path (what SQLite runs), under other external_ids.
    with transaction.atomic():
        rows = list(BidLog.objects.filter(external_id__startswith="copy-").values())
        for row in rows:
            row.pop("id")
            row["external_id"] = row["external_id"].replace("copy-", "orm-")
        _insert_by_orm(rows)
    by_orm = _columns(BidLog.objects.filter(external_id__startswith="orm-"))

    assert [row[1:] for row in copied] == [row[1:] for row in by_orm]
    first = BidLog.objects.get(external_id="copy-1")
    assert first.request == {"n": 1, "text": "tab\there, new\nline, back\\slash"}
    assert first.message == "quote ' and \" and a comma,"
    assert (first.source, first.outcome) == (Source.IMPORT, Outcome.DECLINED)


def test_a_resent_batch_is_merged_without_duplicates_and_marks_only_new_hours(buyer):
    records = _records(buyer, 100)
    bids_import(records=records[:60])
    RollupBucket.objects.all().delete()

    result = bids_import(records=records)

    assert (result.created, result.existing, result.received) == (40, 60, 100)
    assert BidLog.objects.count() == 100
    new_hours = {
        floor_hour(BidLog.objects.get(external_id=f"ext-{n}").created_at) for n in range(60, 100)
    }
    stale = set(RollupBucket.objects.filter(grain="hour").values_list("bucket_start", flat=True))
    assert stale == new_hours


def test_the_staging_table_does_not_outlive_the_import(buyer):
    with transaction.atomic():
        bids_import(records=_records(buyer, 3))
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('pg_temp.bidlog_import_staging')")
            assert cursor.fetchone() == (None,)
        # A second import in the same transaction creates its staging table afresh.
        assert bids_import(records=_records(buyer, 3, "again")).created == 3


def test_a_rejected_batch_writes_nothing(buyer):
    records = _records(buyer, 10)
    records[7]["duration_ms"] = -1

    with pytest.raises(ImportRejected) as rejected:
        bids_import(records=records)

    assert rejected.value.errors == {7: {"duration_ms": ["Must be between 0 and 2147483647."]}}
    assert not BidLog.objects.exists()


def _blocked_on_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_the_same_batch_at_once_write_each_record_once():
    buyer = BuyerFactory(min_bid=Decimal("10.00"))
    records = _records(buyer, 200)
    first_inserted, release = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def first() -> int:
        try:
            with transaction.atomic():
                created = bids_import(records=records).created
                first_inserted.set()
                release.wait(30)
            return created
        finally:
            connections.close_all()

    def second() -> int:
        try:
            first_inserted.wait(30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids["second"] = cursor.fetchone()[0]
            return bids_import(records=records).created
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=2) as pool:
        one, two = pool.submit(first), pool.submit(second)
        # The second merge waits on the first one's uncommitted keys; let the first commit then.
        deadline = time.monotonic() + 30
        while not ("second" in pids and _blocked_on_a_lock(pids["second"])):
            assert time.monotonic() < deadline, "the second import never reached the merge"
            time.sleep(0.05)
        release.set()
        created = (one.result(), two.result())

    assert created == (200, 0)
    assert BidLog.objects.count() == 200
