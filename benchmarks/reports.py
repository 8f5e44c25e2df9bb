"""Benchmark of reports at scale on PostgreSQL: rollups against a raw GROUP BY, list, import.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/callgrid_bench \\
        .venv/bin/python benchmarks/reports.py --rows 50000000 --days 90 --buyers 200

It (re)creates the data in the database named by ``DATABASE_URL`` (use a scratch database:
the bid log there is wiped): ``--rows`` bids over the last ``--days`` days (default 30) for
``--buyers`` buyers (default 50), made by PostgreSQL with ``generate_series`` (plus one call
per four bids, see ``benchmarks/reports_data.py``), builds the rollups, then measures, each
beside the raw query it replaces in the same run: summary and hourly time series through the
API (p50/p95 of ``--requests``) for 24 h, 7 d and 30 d against the raw GROUP BY
(``exact=True``, with exact percentiles: the rollup's estimate is printed beside the exact
value); the bids list and the pages (a page half-way down by cursor against OFFSET at the same
depth, overview, reports); retention (a month partition dropped against a DELETE of one day);
import throughput; the rollup build (all hours, and one new hour). It ends with the issue's
table and the database size.
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
from datetime import datetime, timedelta
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
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from benchmarks.reports_data import generate, old_month_write, sizes  # noqa: E402
from bidlog.models import BidLog, Call, RollupBucket  # noqa: E402
from bidlog.partitions import month_next, partitions_drop_before  # noqa: E402
from bidlog.reports.pages import PAGE_SIZE  # noqa: E402
from bidlog.reports.rollups import floor_hour, rollup_build, rollup_build_hours  # noqa: E402
from bidlog.reports.services import report_summary, report_timeseries  # noqa: E402
from buyers.models import Buyer  # noqa: E402

T = TypeVar("T")


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


# The targets (issue 21), at 50 million rows.
TARGETS = {
    "summary 30 days, p95": "≤ 20 ms",
    "time series by hour, 30 days, p95": "≤ 30 ms",
    "summary 24 hours, p95": "≤ 20 ms",
    "bids list first page, p95": "≤ 20 ms",
    "overview and reports pages, p95": "≤ 100 ms",
    "import through the API": "≥ 50,000 rows/s",
    "retention of one day": "a partition dropped, in milliseconds",
    "rollup build": "incremental, under a second per new hour",
}


def pages_benchmark(user: User, buyer: Buyer, requests: int) -> dict[str, float]:
    """The browser pages on the same data: the bid log's first page, a filtered page, a page
    half-way down the log by cursor against OFFSET at the same depth, the overview, reports.
    Returns the p95 of each page by label."""
    browser = Client()
    browser.force_login(user)
    print(f"\n## Pages ({requests} requests each, rendered HTML)")
    pages: tuple[tuple[str, str, dict[str, str | int]], ...] = (
        ("bids first page", "/bids/", {}),
        ("bids buyer + outcome", "/bids/", {"buyer": buyer.pk, "outcome": "declined"}),
        ("calls first page", "/calls/", {}),
        ("calls not routed", "/calls/", {"routed": "false"}),
        ("calls won by a buyer", "/calls/", {"winner": buyer.pk}),
        ("overview 24h", "/", {}),
        ("reports 7d", "/reports/", {"range": "7d"}),
    )
    found = {}
    for label, path, params in pages:
        p50, p95, response = timed(functools.partial(browser.get, path, params), requests)
        assert response.status_code == 200, response.content[:300]
        print(f"{label:<22}{p50:>9.1f}{p95:>9.1f} ms (p50, p95)")
        found[label] = p95
    # Half-way down each log: the page a cursor link opens, against OFFSET at the same depth.
    for model, path in ((BidLog, "/bids/"), (Call, "/calls/")):
        found[f"{path} deep"], found[f"{path} offset"] = _deep_page(browser, model, path, requests)
    return found


def _deep_page(
    browser: Client, model: type[BidLog | Call], path: str, requests: int
) -> tuple[float, float]:
    """A listing's page half-way down its rows by cursor, against OFFSET at the same depth;
    returns both p50s."""
    newest = model._default_manager.order_by("-created_at", "-id")
    depth = newest.count() // 2
    last = newest.values("created_at", "id")[depth - 1]
    cursor = f"{last['created_at'].isoformat()}~{last['id']}"
    p50, _p95, response = timed(lambda: browser.get(path, {"before": cursor}), requests)
    assert response.status_code == 200
    shown = [int(pk) for pk in re.findall(rf'href="{path}(\d+)/"', response.content.decode())]
    offset50, _o95, rows = timed(lambda: list(newest[depth : depth + PAGE_SIZE]), 3)
    assert [row.pk for row in rows] == shown, f"the cursor page of {path} and OFFSET disagree"
    print(
        f"{path} page {depth:,} rows deep: cursor page {p50:.1f} ms (rendered), "
        f"OFFSET query alone {offset50:.1f} ms, {offset50 / p50:.1f}x slower"
    )
    return p50, offset50


SUMMARY_NAMES = (
    "attempts",
    "bids",
    "accepted",
    "timeouts",
    "by_outcome",
    "calls",
    "routed_calls",
    "revenue",
)


def reports_benchmark(client: APIClient, requests: int, baseline_runs: int) -> dict[str, Any]:
    """Summary and hourly series through the API for 24 h, 7 d and 30 d, each beside the raw
    GROUP BY (``exact=True``) in the same run; returns p95s and raw p50s by label."""
    now = timezone.now()
    found: dict[str, Any] = {}
    print(f"\n## Reports through the API ({requests} requests each), vs raw GROUP BY")
    print(f"{'report':<22}{'p50 ms':>9}{'p95 ms':>9}{'raw p50 ms':>12}{'ratio':>8}  equal")
    for label, span in (
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
    ):
        params = {"since": (now - span).isoformat(), "until": now.isoformat()}
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/reports/summary/", params), requests
        )
        assert response.status_code == 200, response.content[:300]
        raw50, _raw95, exact = timed(
            functools.partial(report_summary, since=now - span, until=now, exact=True),
            baseline_runs,
        )
        fast = report_summary(since=now - span, until=now)
        equal = all(fast[n] == exact[n] for n in SUMMARY_NAMES)
        latency = " ".join(
            f"{k}={fast['latency_ms'][k]}/{exact['latency_ms'][k]}" for k in ("p50", "p95", "p99")
        )
        print(
            f"summary {label:<14}{p50:>9.1f}{p95:>9.1f}{raw50:>12.1f}{raw50 / p50:>7.0f}x  "
            f"{equal} (latency p50/p95/p99 rollup/exact {latency})"
        )
        found[f"summary {label}"] = (p95, raw50, equal, latency)
        params = {**params, "bucket": "hour", "tz": "America/New_York"}
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/reports/timeseries/", params), requests
        )
        assert response.status_code == 200, response.content[:300]
        raw50, _r95, _rows = timed(
            functools.partial(
                report_timeseries,
                since=now - span,
                until=now,
                bucket="hour",
                tz="America/New_York",
                exact=True,
            ),
            baseline_runs,
        )
        print(f"timeseries hour {label:<6}{p50:>9.1f}{p95:>9.1f}{raw50:>12.1f}{raw50 / p50:>7.0f}x")
        found[f"timeseries {label}"] = (p95, raw50)
    print(f"summary bids={fast['bids']:,} accepted={fast['accepted']:,} revenue={fast['revenue']}")
    return found


def bids_list_benchmark(client: APIClient, buyer: Buyer, requests: int) -> float:
    """The bids API's first page and a buyer + outcome page; returns the first page's p95."""
    print(f"\n## Bids list ({requests} requests each)")
    bid_filters: tuple[tuple[str, dict[str, str | int]], ...] = (
        ("first page", {}),
        ("buyer + outcome", {"buyer": buyer.pk, "outcome": "declined"}),
    )
    first = 0.0
    for label, query in bid_filters:
        p50, p95, response = timed(functools.partial(client.get, "/api/v1/bids/", query), requests)
        assert response.status_code == 200
        print(f"{label:<22}{p50:>9.1f}{p95:>9.1f} ms (p50, p95)")
        first = first or p95
    return first


def import_benchmark(client: APIClient, batches: int) -> float:
    """``batches`` batches of 5,000 records through the import API; returns rows per second."""
    print(f"\n## Import ({batches} batches of 5,000 through the API)")
    now = timezone.now()
    grids = list(Buyer.objects.values_list("grid_id", flat=True))
    total, elapsed = 0, 0.0
    for batch in range(batches):
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
    return total / elapsed


def retention_benchmark(start: datetime, rows_per_day: int, buyers: int) -> tuple[float, float]:
    """Milliseconds to drop a month partition holding a day of bids, against a DELETE of the
    oldest day of the log (rolled back, so the data stays)."""
    month = old_month_write(start=start, rows=rows_per_day, buyers=buyers)
    started = time.perf_counter()
    dropped = partitions_drop_before(table=BidLog._meta.db_table, cutoff=month_next(month))
    drop_ms = (time.perf_counter() - started) * 1000
    assert dropped, "no partition was dropped"
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM bidlog_bidlog WHERE created_at >= %s AND created_at < %s",
            [start, start + timedelta(days=1)],
        )
        deleted = cursor.rowcount
        transaction.set_rollback(True)
    delete_ms = (time.perf_counter() - started) * 1000
    print(f"\n## Retention: drop of {dropped[0]} ({rows_per_day:,} rows) {drop_ms:.1f} ms; ")
    print(f"DELETE of the oldest day ({deleted:,} rows, rolled back) {delete_ms:,.0f} ms")
    return drop_ms, delete_ms


def _fmt(ms: float) -> str:
    return f"{ms:,.1f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def _raw(figure: tuple[float, ...]) -> str:
    """The raw GROUP BY's p50 beside a figure's p95, and how many times slower it is."""
    return f"raw GROUP BY {_fmt(figure[1])} ({figure[1] / figure[0]:,.0f}x)"


def print_table(rows: int, figures: dict[str, Any]) -> None:
    """The issue's table: each figure beside the raw query it replaces, and the target."""
    s30, t30, s24 = figures["summary 30d"], figures["timeseries 30d"], figures["summary 24h"]
    pages = figures["pages"]
    hours, build_s, hour_s = figures["rollup"]
    lines = [
        ("summary 30 days, p95", _fmt(s30[0]), _raw(s30)),
        ("time series by hour, 30 days, p95", _fmt(t30[0]), _raw(t30)),
        ("summary 24 hours, p95", _fmt(s24[0]), _raw(s24)),
        (
            "bids list first page, p95",
            _fmt(figures["bids first"]),
            f"page half-way down: cursor {_fmt(pages['/bids/ deep'])}, "
            f"OFFSET {_fmt(pages['/bids/ offset'])}",
        ),
        (
            "overview and reports pages, p95",
            f"{_fmt(pages['overview 24h'])}, {_fmt(pages['reports 7d'])}",
            "",
        ),
        ("import through the API", f"{figures['import']:,.0f} rows/s", ""),
        (
            "retention of one day",
            f"partition dropped in {_fmt(figures['retention'][0])}",
            f"DELETE of one day {_fmt(figures['retention'][1])}",
        ),
        (
            "rollup build",
            f"one new hour {hour_s * 1000:,.0f} ms",
            f"all {hours} hours at once {build_s:.1f} s",
        ),
    ]
    print(f"\n## The issue's table at {rows:,} rows")
    print("| what | measured | the raw query it replaces | target at 50 million rows |")
    print("|---|---|---|---|")
    for what, measured, raw in lines:
        print(f"| {what} | {measured} | {raw} | {TARGETS[what]} |")
    size = figures["sizes"]
    print(
        f"\nDatabase size {size['database'] / 2**30:.1f} GiB (bid log with indexes "
        f"{size['bidlog_bidlog'] / 2**30:.1f} GiB, calls {size['bidlog_call'] / 2**30:.1f} GiB); "
        f"latency percentiles rollup/exact: {s30[3]}; counts equal to raw: {s30[2]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--buyers", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=3)
    parser.add_argument("--import-batches", type=int, default=50)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database.")
    if not (1 <= args.days <= 400 and 1 <= args.buyers <= 10_000 and 1 <= args.rows <= 10**10):
        sys.exit("--days must be 1-400, --buyers 1-10000, --rows 1-10^10.")
    call_command("migrate", verbosity=0)

    print(
        f"# CallGrid Portal report benchmark: {args.rows:,} bids, {args.buyers} buyers, "
        f"{args.days} days"
    )
    started = time.perf_counter()
    start, end = generate(rows=args.rows, days=args.days, buyers=args.buyers)
    print(f"generate data (bids + {args.rows // 4:,} calls): {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    hours = rollup_build(start=start, end=end)
    elapsed = time.perf_counter() - started
    print(f"rollup build: {hours} hours in {elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)")
    last_hour = floor_hour(timezone.now()) - timedelta(hours=1)
    one_hour, _h95, _n = timed(
        lambda: rollup_build_hours(start=last_hour, end=last_hour + timedelta(hours=1)), 3
    )
    print(f"rebuild of the last hour: {one_hour:.0f} ms")
    with connection.cursor() as cursor:
        for table in ("bidoutcomerollup", "bidperformancerollup", "bidstaterollup", "callrollup"):
            cursor.execute(f"SELECT count(*) FROM bidlog_{table}")
            print(f"  bidlog_{table}: {cursor.fetchone()[0]:,} rows")
        cursor.execute("ANALYZE")

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = APIClient()
    client.force_authenticate(user)
    buyer = Buyer.objects.order_by("id")[0]
    figures: dict[str, Any] = reports_benchmark(client, args.requests, args.baseline_runs)
    figures["rollup"] = (hours, elapsed, one_hour / 1000)
    figures["bids first"] = bids_list_benchmark(client, buyer, args.requests)
    figures["pages"] = pages_benchmark(user, buyer, args.requests)
    figures["retention"] = retention_benchmark(start, args.rows // args.days, args.buyers)
    figures["import"] = import_benchmark(client, args.import_batches)
    figures["sizes"] = sizes()
    print_table(args.rows, figures)


if __name__ == "__main__":
    main()
