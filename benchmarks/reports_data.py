"""Benchmark data for benchmarks/reports.py: bids and calls written by PostgreSQL itself.

Rows are made server-side with ``INSERT ... SELECT ... FROM generate_series`` one day at a time
(each day sorted by time, as a real log is appended, and small enough to sort in memory), into
the month partitions the portal keeps; the secondary indexes are dropped before the load and
built once after it. Calls carry campaign and publisher tags (some untagged). A day's calls are
spread evenly over it, and a live bid belongs to the call made in the same slice of the day
(86,400 s / the day's calls: 2 s at 5 million bids over 30 days), as a route writes its bids
within seconds of its call.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from bidlog.models import BidLog, Call
from bidlog.partitions import PARTITIONED_TABLES, month_floor, month_next, partition_create
from bidlog.reports.rollups import floor_hour
from buyers.models import Buyer

STATES = ["CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "CO", "AZ", ""]
# Call tags: a dozen campaigns from five traffic sources, some calls untagged.
CAMPAIGNS = [f"campaign-{n}" for n in range(12)] + [""]
PUBLISHERS = ["pub-a", "pub-b", "pub-c", "pub-d", "pub-e", ""]

# One row per outcome: (upper bound of the random draw, outcome, code, http status, latency SQL).
# The mix of an ordinary ops day: a third accepted, a quarter declined, a tail of errors.
MIX = [
    (0.30, "accepted", "1000", "200", "lat"),
    (0.34, "below_min_bid", "1000", "200", "lat"),
    (0.59, "declined", "2000", "200", "lat"),
    (0.69, "no_capacity", "3000", "200", "lat"),
    (0.70, "invalid_request", "4000", "400", "lat"),
    (0.72, "system_error", "5000", "500", "lat"),
    (0.725, "disabled", "4001", "403", "lat"),
    (0.73, "invalid_caller_id", "4003", "400", "lat"),
    (0.76, "duplicate", "4005", "409", "lat"),
    (0.78, "rate_limited", "5001", "429", "lat"),
    (0.82, "timeout", "NULL", "NULL", "10000 + (r2 * 50)::int"),
    (0.83, "network_error", "NULL", "NULL", "(r2 * 100)::int"),
    (0.84, "bad_response", "7777", "200", "lat"),
    (0.90, "skipped_duplicate", "NULL", "NULL", "0"),
    (0.94, "skipped_rate_limit", "NULL", "NULL", "0"),
    (1.01, "skipped_cap", "NULL", "NULL", "0"),
]


def _case(column: int) -> str:
    whens = " ".join(f"WHEN r < {row[0]} THEN {row[column]}" for row in MIX)
    return f"CASE {whens} END"


def _quoted_case(column: int) -> str:
    whens = " ".join(f"WHEN r < {row[0]} THEN '{row[column]}'" for row in MIX)
    return f"CASE {whens} END"


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def _bids_sql(buyers: int) -> str:
    """One day of bids: parameters are the buyer ids, the first call id of the day and the
    count of its calls twice (a live bid belongs to the call of its slice of the day; ``NULL``
    for none), the day's start and the row count."""
    return f"""
        INSERT INTO bidlog_bidlog (buyer_id, source, created_at, caller_id, state_code,
            request, http_status, code, message, bid_amount, destination,
            response_caller_id, duration_ms, attempt, outcome, error, raw_response, trace,
            call_id)
        SELECT (%s::bigint[])[1 + (r3 * {buyers})::int %% {buyers}],
            CASE WHEN r4 < 0.95 THEN 'live' WHEN r4 < 0.99 THEN 'health' ELSE 'test' END,
            at,
            (2000000000 + (r3 * 7999999999)::bigint %% 7999999999)::text,
            ({_array(STATES)})[1 + (r4 * 1000)::int %% {len(STATES)}],
            '{{}}'::jsonb,
            {_case(3)}, {_case(2)}, '',
            CASE WHEN r < 0.34 THEN round((5 + r2 * 55)::numeric, 2) END,
            CASE WHEN r < 0.30 THEN '18005550100' ELSE '' END, '',
            {_case(4)}, 1, {_quoted_case(1)}, '', '', '[]'::jsonb,
            CASE WHEN r4 < 0.95
                THEN %s::bigint + least(%s::bigint - 1, floor(secs / 86400 * %s::bigint)::bigint)
            END
        FROM (
            SELECT random() AS r, random() AS r2, random() AS r3, random() AS r4, secs,
                %s::timestamptz + make_interval(secs => secs) AS at,
                -- long-tailed latency: most answers in 100-400 ms, a few seconds at worst
                least(9500, (60 + 250 * exp(random() * 1.6 - 0.3) * random()
                    + CASE WHEN random() < 0.03 THEN random() * 4000 ELSE 0 END)::int) AS lat
            FROM (SELECT random() * 86400 AS secs FROM generate_series(1, %s)) AS moments
        ) g
        -- A real log is appended in time order, so an hour's rows sit together on disk.
        ORDER BY at
    """


def _calls_sql(buyers: int) -> str:
    """One day of calls, tagged: parameters are the buyer ids, the day's start and the row
    count twice; it returns the first id and the count of the calls written, one call in each
    equal slice of the day."""
    return f"""
        WITH written AS (
        INSERT INTO bidlog_call (created_at, caller_id, state_code, params, strategy,
            winner_id, bid_amount, destination, routed, paid_out, duration_ms, source,
            campaign, publisher)
        SELECT at, '3035551234', 'CO', '{{}}'::jsonb, 'waterfall',
            CASE WHEN routed THEN (%s::bigint[])[1 + (random() * {buyers})::int %% {buyers}]
            END,
            CASE WHEN routed THEN round((10 + random() * 50)::numeric, 2) END,
            CASE WHEN routed THEN '18005550100' ELSE '' END, routed, true,
            (random() * 900)::int, 'live',
            ({_array(CAMPAIGNS)})[1 + (random() * 1000)::int %% {len(CAMPAIGNS)}],
            ({_array(PUBLISHERS)})[1 + (random() * 1000)::int %% {len(PUBLISHERS)}]
        FROM (
            SELECT random() < 0.6 AS routed,
                %s::timestamptz + make_interval(secs => (slice + random()) * 86400 / %s) AS at
            FROM generate_series(0, %s - 1) AS slice
        ) g
        ORDER BY at
        RETURNING id
        )
        SELECT min(id), count(*) FROM written
    """


def _buyers_create(count: int) -> list[int]:
    Buyer.objects.all().delete()
    for n in range(count):
        Buyer.objects.create(
            name=f"Bench buyer {n}",
            grid_id=f"bench{n:04d}" + "x" * 16,
            timeout_seconds=10,
            min_bid="10.00",
        )
    return list(Buyer.objects.order_by("id").values_list("id", flat=True))


def _partitions_for(start: datetime, end: datetime) -> None:
    month = month_floor(start)
    while month < end:
        for table in PARTITIONED_TABLES:
            partition_create(table=table, month=month)
        month = month_next(month)


def generate(*, rows: int, days: int, buyers: int) -> tuple[datetime, datetime]:
    """Wipe the bid log, write ``rows`` bids and ``rows / 4`` calls over the last ``days``
    days for ``buyers`` buyers; return the range ``[start, end)``."""
    end = floor_hour(timezone.now())
    start = end - timedelta(days=days)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE bidlog_bidlog, bidlog_call, bidlog_bidoutcomerollup, "
            "bidlog_bidperformancerollup, bidlog_bidstaterollup, bidlog_callrollup, "
            "bidlog_bidoutcometotalrollup, bidlog_buyersummaryrollup, "
            "bidlog_rollupbucket, bidlog_alert CASCADE"
        )
    ids = _buyers_create(buyers)
    _partitions_for(start, end + timedelta(days=1))
    bids_sql, calls_sql = _bids_sql(buyers), _calls_sql(buyers)
    with connection.cursor() as cursor:
        # Loading without the secondary indexes and building them afterwards is several times
        # faster than maintaining eight indexes row by row.
        for index in BidLog._meta.indexes:
            cursor.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        for day in range(days):
            day_start = start + timedelta(days=day)
            calls = (rows // 4) * (day + 1) // days - (rows // 4) * day // days
            cursor.execute(calls_sql, [ids, day_start, calls, calls])
            first_call, written = cursor.fetchone()
            count = rows * (day + 1) // days - rows * day // days
            links = [first_call, written or None, written or None]
            cursor.execute(bids_sql, [ids, *links, day_start, count])
    with connection.schema_editor() as editor:
        for index in BidLog._meta.indexes:
            editor.add_index(BidLog, index)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE bidlog_bidlog")
        cursor.execute("VACUUM ANALYZE bidlog_call")
    return start, end


def live_rows_fill() -> tuple[int, int]:
    """Bring the log up to this moment as a live one is: the bids and calls of the day before,
    from a day before each table's newest row to a day before now, written again a day later
    (new ids, no external id, no route key; bids without their call). The hours after the
    generated data, and the hour still running, then hold rows as a busy hour does. Returns
    the bids and the calls written."""
    now = timezone.now()
    skipped = {
        "bidlog_bidlog": ("id", "created_at", "external_id", "call_id"),
        "bidlog_call": ("id", "created_at", "route_key"),
    }
    counts = []
    with connection.cursor() as cursor:
        for model in (BidLog, Call):
            table = model._meta.db_table
            columns = [
                f'"{f.column}"'
                for f in model._meta.concrete_fields
                if f.column not in skipped[table]
            ]
            names = ", ".join(columns)
            cursor.execute(f"SELECT max(created_at) FROM {table}")
            latest = cursor.fetchone()[0] or now
            cursor.execute(
                f"INSERT INTO {table} (created_at, {names}) "
                f"SELECT created_at + interval '1 day', {names} FROM {table} "
                "WHERE created_at > %s AND created_at < %s ORDER BY created_at",
                [latest - timedelta(days=1), now - timedelta(days=1)],
            )
            counts.append(max(cursor.rowcount, 0))
    return counts[0], counts[1]


def old_month_write(*, start: datetime, rows: int, buyers: int) -> datetime:
    """One day of bids in a month of its own, two months before ``start``, for timing a
    partition drop; returns the start of that month."""
    month = month_floor(month_floor(start) - timedelta(days=40))
    partition_create(table=BidLog._meta.db_table, month=month)
    ids = list(Buyer.objects.order_by("id").values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(_bids_sql(buyers), [ids, None, None, None, month, rows])
    return month


def sizes() -> dict[str, int]:
    """Bytes on disk: the database, and each partitioned table with its indexes."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        found["database"] = cursor.fetchone()[0]
        for table in PARTITIONED_TABLES:
            cursor.execute(
                "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)",
                [table],
            )
            found[table] = int(cursor.fetchone()[0])
    return found
