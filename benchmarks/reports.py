"""Benchmark of reports at scale on PostgreSQL: rollups against a raw GROUP BY, list, import.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/callgrid_bench \\
        .venv/bin/python benchmarks/reports.py [--rows 5000000] [--keep]

It (re)creates the data in the database named by ``DATABASE_URL`` (use a scratch database:
the bid log there is wiped), generates ``--rows`` bid rows over the last 30 days for 50 buyers
with ``generate_series`` (plus one call per four bids), builds the rollups, then prints:
summary and hourly time-series latency through the API (p50/p95 of 20 requests) for 24 h,
7 d and 30 d; the same summary from raw rows (``exact=True``: GROUP BY and exact percentiles)
as the baseline, the ratio and whether counts and sums agree; the bids list's first page and a
buyer + outcome page; the pages (bid log first, filtered and half-way down by cursor against
OFFSET at the same depth, overview, reports); import throughput for 50 batches of 5,000; and
the rollup build time.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("API_THROTTLE_RATE", "1000000/minute")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from bidlog.models import BidLog, Call, RollupBucket  # noqa: E402
from bidlog.reports.pages import PAGE_SIZE  # noqa: E402
from bidlog.reports.rollups import floor_hour, rollup_build  # noqa: E402
from bidlog.reports.services import report_summary  # noqa: E402
from buyers.models import Buyer  # noqa: E402

BUYERS = 50
DAYS = 30
T = TypeVar("T")
STATES = ["CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI", "CO", "AZ", ""]

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


def generate(rows: int) -> tuple:
    """Wipe the bid log and write ``rows`` bids and ``rows / 4`` calls; return the range."""
    end = floor_hour(timezone.now())
    start = end - timedelta(days=DAYS)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE bidlog_bidlog, bidlog_call, bidlog_bidoutcomerollup, "
            "bidlog_bidperformancerollup, bidlog_bidstaterollup, bidlog_callrollup, "
            "bidlog_rollupbucket, bidlog_alert CASCADE"
        )
    Buyer.objects.all().delete()
    for n in range(BUYERS):
        Buyer.objects.create(
            name=f"Bench buyer {n}",
            grid_id=f"bench{n:04d}" + "x" * 16,
            timeout_seconds=10,
            min_bid="10.00",
        )
    ids = list(Buyer.objects.order_by("id").values_list("id", flat=True))
    states = "ARRAY[" + ", ".join(f"'{s}'" for s in STATES) + "]"
    seconds = DAYS * 86400
    with connection.cursor() as cursor:
        # Loading without the secondary indexes and building them afterwards is several times
        # faster than maintaining eight indexes row by row.
        for index in BidLog._meta.indexes:
            cursor.execute(f'DROP INDEX IF EXISTS "{index.name}"')
        cursor.execute(
            f"""
            INSERT INTO bidlog_bidlog (buyer_id, source, created_at, caller_id, state_code,
                request, http_status, code, message, bid_amount, destination,
                response_caller_id, duration_ms, attempt, outcome, error, raw_response, trace)
            SELECT (%s::bigint[])[1 + (r3 * {BUYERS})::int %% {BUYERS}],
                CASE WHEN r4 < 0.95 THEN 'live' WHEN r4 < 0.99 THEN 'health' ELSE 'test' END,
                at,
                (2000000000 + (r3 * 7999999999)::bigint %% 7999999999)::text,
                ({states})[1 + (r4 * 1000)::int %% {len(STATES)}],
                '{{}}'::jsonb,
                {_case(3)}, {_case(2)}, '',
                CASE WHEN r < 0.34 THEN round((5 + r2 * 55)::numeric, 2) END,
                CASE WHEN r < 0.30 THEN '18005550100' ELSE '' END, '',
                {_case(4)}, 1, {_quoted_case(1)}, '', '', '[]'::jsonb
            FROM (
                SELECT random() AS r, random() AS r2, random() AS r3, random() AS r4,
                    %s::timestamptz + make_interval(secs => random() * {seconds}) AS at,
                    -- long-tailed latency: most answers in 100-400 ms, a few seconds at worst
                    least(9500, (60 + 250 * exp(random() * 1.6 - 0.3) * random()
                        + CASE WHEN random() < 0.03 THEN random() * 4000 ELSE 0 END)::int)
                        AS lat
                FROM generate_series(1, %s)
            ) g
            -- A real log is appended in time order, so an hour's rows sit together on disk.
            ORDER BY at
            """,
            [ids, start, rows],
        )
        cursor.execute(
            f"""
            INSERT INTO bidlog_call (created_at, caller_id, state_code, params, strategy,
                winner_id, bid_amount, destination, routed, paid_out, duration_ms, source)
            SELECT %s::timestamptz + make_interval(secs => random() * {seconds}),
                '3035551234', 'CO', '{{}}'::jsonb, 'waterfall',
                CASE WHEN routed THEN (%s::bigint[])[1 + (random() * {BUYERS})::int %% {BUYERS}]
                END,
                CASE WHEN routed THEN round((10 + random() * 50)::numeric, 2) END,
                CASE WHEN routed THEN '18005550100' ELSE '' END, routed, true,
                (random() * 900)::int, 'live'
            FROM (SELECT random() < 0.6 AS routed FROM generate_series(1, %s)) g
            ORDER BY 1
            """,
            [start, ids, rows // 4],
        )
    with connection.schema_editor() as editor:
        for index in BidLog._meta.indexes:
            editor.add_index(BidLog, index)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE bidlog_bidlog")
        cursor.execute("VACUUM ANALYZE bidlog_call")
    return start, end


def timed(function: Callable[[], T], repeat: int) -> tuple[float, float, T]:
    """p50 and p95 in ms of ``repeat`` calls (at least one), and the last result."""
    samples: list[float] = []
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        result = function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[max(0, -(-95 * len(samples) // 100) - 1)]
    return statistics.median(samples), p95, result


def pages_benchmark(user: User, buyer: Buyer, requests: int) -> None:
    """The browser pages on the same data: the bid log's first page, a filtered page, a page
    half-way down the log by cursor against OFFSET at the same depth, the overview, reports."""
    browser = Client()
    browser.force_login(user)
    print(f"\n## Pages ({requests} requests each, rendered HTML)")
    today = timezone.now().date()
    week = {"day_from": (today - timedelta(days=6)).isoformat(), "day_to": today.isoformat()}
    pages: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("bids first page", "/bids/", {}),
        ("bids buyer + outcome", "/bids/", {"buyer": buyer.pk, "outcome": "declined"}),
        # The bids list for investigation: several outcomes, days, sorted columns, the CSV.
        ("bids 3 outcomes", "/bids/", {"outcome": ["declined", "timeout", "no_capacity"]}),
        ("bids today", "/bids/", {"day_from": today.isoformat(), "day_to": today.isoformat()}),
        ("bids slowest 24h", "/bids/", {"sort": "-duration_ms"}),
        ("bids slowest 7 days", "/bids/", {"sort": "-duration_ms", **week}),
        ("bids by buyer 24h", "/bids/", {"sort": "buyer"}),
        ("bids buyer slowest 7d", "/bids/", {"sort": "-duration_ms", "buyer": buyer.pk, **week}),
        ("bids CSV buyer 10k", "/bids/", {"buyer": buyer.pk, "export": "csv"}),
        # The buyer page, figures first (24 hours of figures, cap gauges, charts), and the list.
        ("buyer page", f"/buyers/{buyer.pk}/", {}),
        ("buyers list", "/buyers/", {}),
        ("calls first page", "/calls/", {}),
        ("calls not routed", "/calls/", {"routed": "false"}),
        ("calls won by a buyer", "/calls/", {"winner": buyer.pk}),
        ("overview 24h", "/", {}),
        ("reports 7d", "/reports/", {"range": "7d"}),
    )
    for label, path, params in pages:
        p50, p95, response = timed(functools.partial(browser.get, path, params), requests)
        assert response.status_code == 200, response.content[:300]
        print(f"{label:<22}{p50:>9.1f}{p95:>9.1f} ms (p50, p95)")
    # Half-way down each log: the page a cursor link opens, against OFFSET at the same depth.
    for model, path in ((BidLog, "/bids/"), (Call, "/calls/")):
        _deep_page(browser, model, path, requests)


def _deep_page(browser: Client, model: type[BidLog | Call], path: str, requests: int) -> None:
    """A listing's page half-way down its rows by cursor, against OFFSET at the same depth."""
    newest = model._default_manager.order_by("-created_at", "-id")
    depth = newest.count() // 2
    last = newest.values("created_at", "id")[depth - 1]
    cursor = f"{last['created_at'].isoformat()}~{last['id']}"
    p50, _p95, response = timed(lambda: browser.get(path, {"before": cursor}), requests)
    assert response.status_code == 200
    shown = [int(pk) for pk in re.findall(rf'href="{path}(\d+)/"', response.content.decode())]
    offset50, _o95, rows = timed(lambda: list(newest[depth : depth + PAGE_SIZE]), requests)
    assert [row.pk for row in rows] == shown, f"the cursor page of {path} and OFFSET disagree"
    print(
        f"{path} page {depth:,} rows deep: cursor page {p50:.1f} ms (rendered), "
        f"OFFSET query alone {offset50:.1f} ms, {offset50 / p50:.1f}x slower"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--import-batches", type=int, default=50)
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="time the pages on the data a previous run left, generating nothing",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database.")
    call_command("migrate", verbosity=0)
    if args.pages_only:
        user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
        pages_benchmark(user, Buyer.objects.order_by("id")[0], args.requests)
        return

    print(f"# CallGrid Portal report benchmark: {args.rows:,} bids, {BUYERS} buyers, {DAYS} days")
    started = time.perf_counter()
    start, end = generate(args.rows)
    print(f"generate data (bids + {args.rows // 4:,} calls): {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    hours = rollup_build(start=start, end=end)
    elapsed = time.perf_counter() - started
    print(f"rollup build: {hours} hours in {elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)")
    with connection.cursor() as cursor:
        for table in ("bidoutcomerollup", "bidperformancerollup", "bidstaterollup", "callrollup"):
            cursor.execute(f"SELECT count(*) FROM bidlog_{table}")
            print(f"  bidlog_{table}: {cursor.fetchone()[0]:,} rows")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = APIClient()
    client.force_authenticate(user)
    now = timezone.now()

    print(f"\n## Reports through the API ({args.requests} requests each), vs raw GROUP BY")
    print(f"{'report':<22}{'p50 ms':>9}{'p95 ms':>9}{'raw p50 ms':>12}{'ratio':>8}  equal")
    for label, span in (
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
    ):
        params = {"since": (now - span).isoformat(), "until": now.isoformat()}
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/reports/summary/", params), args.requests
        )
        assert response.status_code == 200, response.content[:300]
        raw50, _raw95, exact = timed(
            functools.partial(report_summary, since=now - span, until=now, exact=True),
            args.baseline_runs,
        )
        fast = report_summary(since=now - span, until=now)
        names = (
            "attempts",
            "bids",
            "accepted",
            "timeouts",
            "by_outcome",
            "calls",
            "routed_calls",
            "revenue",
        )
        equal = all(fast[n] == exact[n] for n in names)
        latency = " ".join(
            f"{k}={fast['latency_ms'][k]}/{exact['latency_ms'][k]}" for k in ("p50", "p95", "p99")
        )
        print(
            f"summary {label:<14}{p50:>9.1f}{p95:>9.1f}{raw50:>12.1f}{raw50 / p50:>7.0f}x  "
            f"{equal} (latency rollup/exact {latency})"
        )
        params = {**params, "bucket": "hour", "tz": "America/New_York"}
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/reports/timeseries/", params), args.requests
        )
        assert response.status_code == 200, response.content[:300]
        print(f"timeseries hour {label:<6}{p50:>9.1f}{p95:>9.1f}")
    print(f"summary bids={fast['bids']:,} accepted={fast['accepted']:,} revenue={fast['revenue']}")

    print(f"\n## Bids list ({args.requests} requests each)")
    buyer = Buyer.objects.order_by("id")[0]
    bid_filters: tuple[tuple[str, dict[str, str | int]], ...] = (
        ("first page", {}),
        ("buyer + outcome", {"buyer": buyer.pk, "outcome": "declined"}),
    )
    for label, query in bid_filters:
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/bids/", query), args.requests
        )
        assert response.status_code == 200
        print(f"{label:<22}{p50:>9.1f}{p95:>9.1f} ms (p50, p95)")

    pages_benchmark(user, buyer, args.requests)

    print(f"\n## Import ({args.import_batches} batches of 5,000 through the API)")
    grids = list(Buyer.objects.values_list("grid_id", flat=True))
    total, elapsed = 0, 0.0
    for batch in range(args.import_batches):
        records = [
            {
                "external_id": f"bench-{now.timestamp():.0f}-{batch}-{i}",
                "grid_id": grids[i % len(grids)],
                "created_at": (now - timedelta(minutes=(i % 1440) + 5)).isoformat(),
                "caller_id": "3035551234",
                "state_code": "CO",
                "code": 2000 if i % 3 else 1000,
                "http_status": 200,
                "bid_amount": None if i % 3 else "25.00",
                "destination": "" if i % 3 else "18005550100",
                "duration_ms": 150 + i % 400,
            }
            for i in range(5000)
        ]
        started = time.perf_counter()
        response = client.post("/api/v1/bids/import/", {"records": records}, format="json")
        elapsed += time.perf_counter() - started
        assert response.status_code == 201, response.content[:300]
        total += response.json()["created"]
    print(f"imported {total:,} rows in {elapsed:.1f} s: {total / elapsed:,.0f} rows/s")
    print(
        f"bid log now {BidLog.objects.count():,} rows; stale hours: "
        f"{RollupBucket.objects.filter(grain='hour', stale=True).count()}"
    )


if __name__ == "__main__":
    main()
