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
import throughput; the rollup build (all hours at once; one new hour from raw rows and a day
from its 24 hours, p50 and max) and the rollup rows each summary reads; the campaign and
publisher report. It ends with the issue's table and the database size.

``--reuse`` keeps the data an earlier run left (no load, no full build); ``--pages-only`` times
only the pages and the campaign report on that data. Modules: ``reports_data`` (the data),
``reports_api``, ``reports_pages``, ``reports_rollups`` (the measurements), ``timing``.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("API_THROTTLE_RATE", "1000000/minute")
# The settings read SECRET_KEY from the environment only; the pages need one to sign sessions.
if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = "benchmark-only-" + secrets.token_hex(24)

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Max, Min  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from benchmarks.reports_api import (  # noqa: E402
    bids_list_benchmark,
    campaigns_benchmark,
    import_benchmark,
    reports_benchmark,
)
from benchmarks.reports_data import (  # noqa: E402
    generate,
    live_rows_fill,
    old_month_write,
    sizes,
)
from benchmarks.reports_pages import pages_benchmark  # noqa: E402
from benchmarks.reports_rollups import build_benchmark, incremental_benchmark  # noqa: E402
from bidlog.models import BidLog  # noqa: E402
from bidlog.partitions import month_next, partitions_drop_before  # noqa: E402
from bidlog.reports.rollups import floor_hour, rollup_refresh  # noqa: E402
from buyers.models import Buyer  # noqa: E402

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


def _rollup_line(figures: dict[str, Any]) -> tuple[str, str, str]:
    """The rollup row of the table: one new hour and its day, beside the full build."""
    hour50, hour_top, day50, day_top = figures["incremental"]
    measured = (
        f"one new hour {_fmt(hour50)} p50 ({_fmt(hour_top)} max); its day from 24 hours "
        f"{_fmt(day50)} p50 ({_fmt(day_top)} max)"
    )
    build = figures.get("build")
    full = f"all {build[0]} hours at once {build[1]:.1f} s" if build else "full build not run"
    return "rollup build", measured, full


def _table_lines(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    s30, t30, s24 = figures["summary 30d"], figures["timeseries 30d"], figures["summary 24h"]
    pages = figures["pages"]
    return [
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
            f"30 days: {_fmt(pages['overview 30d'])}, {_fmt(pages['reports 30d'])}",
        ),
        ("import through the API", f"{figures['import']:,.0f} rows/s", ""),
        (
            "retention of one day",
            f"partition dropped in {_fmt(figures['retention'][0])}",
            f"DELETE of one day {_fmt(figures['retention'][1])}",
        ),
        _rollup_line(figures),
    ]


def print_table(rows: int, figures: dict[str, Any]) -> None:
    """The issue's table: each figure beside the raw query it replaces, and the target."""
    print(f"\n## The issue's table at {rows:,} rows")
    print("| what | measured | the raw query it replaces | target at 50 million rows |")
    print("|---|---|---|---|")
    for what, measured, raw in _table_lines(figures):
        print(f"| {what} | {measured} | {raw} | {TARGETS[what]} |")
    size, s30 = figures["sizes"], figures["summary 30d"]
    print(
        f"\nDatabase size {size['database'] / 2**30:.2f} GiB (bid log with indexes "
        f"{size['bidlog_bidlog'] / 2**30:.2f} GiB, calls {size['bidlog_call'] / 2**30:.2f} GiB); "
        f"latency percentiles rollup/exact: {s30[3]}; counts equal to raw: {s30[2]}; "
        f"rollup rows read by a summary: 24 h {figures['summary 24h'][4]:,}, "
        f"7 d {figures['summary 7d'][4]:,}, 30 d {s30[4]:,}"
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="bids to generate")
    parser.add_argument("--days", type=int, default=30, help="days of bids, 1-400")
    parser.add_argument("--buyers", type=int, default=50, help="buyers, 1-10000")
    parser.add_argument("--requests", type=int, default=20, help="requests per page or report")
    parser.add_argument("--baseline-runs", type=int, default=3, help="runs of each raw query")
    parser.add_argument("--import-batches", type=int, default=50, help="batches of 5,000")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the data of an earlier run (no load, no build)"
    )
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="only the pages and the campaign report, on the data of an earlier run",
    )
    args = parser.parse_args()
    if not (1 <= args.days <= 400 and 1 <= args.buyers <= 10_000 and 1 <= args.rows <= 10**10):
        parser.error("--days must be 1-400, --buyers 1-10000, --rows 1-10^10")
    if not (1 <= args.requests <= 10_000 and 1 <= args.baseline_runs <= 1000):
        parser.error("--requests must be 1-10000, --baseline-runs 1-1000")
    if not 1 <= args.import_batches <= 10_000:
        parser.error("--import-batches must be 1-10000")
    return args


def load(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the bids and their calls and build every rollup; returns the build figures
    and the range of the data."""
    started = time.perf_counter()
    start, end = generate(rows=args.rows, days=args.days, buyers=args.buyers)
    print(f"generate data (bids + {args.rows // 4:,} calls): {time.perf_counter() - started:.1f} s")
    return {"build": build_benchmark(start, end, args.rows), "start": start, "end": end}


def reused(args: argparse.Namespace) -> dict[str, Any]:
    """The range and size of the data an earlier run left; exits when there is none."""
    found = BidLog.objects.aggregate(start=Min("created_at"), end=Max("created_at"))
    if found["start"] is None:
        sys.exit("--reuse and --pages-only need the data of an earlier run: the bid log is empty.")
    args.rows = BidLog.objects.count()
    args.buyers = Buyer.objects.count()
    args.days = max(1, -(-(found["end"] - found["start"]) // timedelta(days=1)))
    print(f"reusing the {args.rows:,} bids already loaded ({args.days} days, {args.buyers} buyers)")
    return {"start": floor_hour(found["start"]), "end": floor_hour(found["end"])}


def live_catch_up() -> None:
    """The log as it is live: rows up to this moment (``live_rows_fill``), rolled up by one
    run of the beat task (``rollup_refresh``: the hours since the data, then the hour still
    running up to a minute ago), as a report read at any moment finds it."""
    bids, calls = live_rows_fill()
    started = time.perf_counter()
    hours = rollup_refresh()
    print(
        f"live log up to now: {bids:,} bids and {calls:,} calls copied from a day before; "
        f"the beat task's refresh built {hours} hours and the running hour in "
        f"{time.perf_counter() - started:.1f} s"
    )


def bench(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Every measurement on the loaded data (the pages and campaigns only with --pages-only)."""
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = APIClient()
    client.force_authenticate(user)
    buyer = Buyer.objects.order_by("id")[0]
    if args.pages_only:
        campaigns_benchmark(client, args.requests)
        pages_benchmark(user, buyer, args.requests)
        return
    figures["incremental"] = incremental_benchmark(figures["end"])
    live_catch_up()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    # As each web server process does once it has loaded everything (callgrid_portal/wsgi.py):
    # what is loaded by now lives as long as the process and is never scanned again by a full
    # collection, so the figures carry no pause the server does not have.
    gc.collect()
    gc.freeze()
    figures |= reports_benchmark(client, args.requests, args.baseline_runs)
    figures["bids first"] = bids_list_benchmark(client, buyer, args.requests)
    figures["campaigns"] = campaigns_benchmark(client, args.requests)
    figures["pages"] = pages_benchmark(user, buyer, args.requests)
    figures["retention"] = retention_benchmark(
        figures["start"], args.rows // args.days, args.buyers
    )
    figures["import"] = import_benchmark(client, args.import_batches)
    figures["sizes"] = sizes()
    print_table(args.rows, figures)


def main() -> None:
    args = _arguments()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database.")
    call_command("migrate", verbosity=0)
    reuse = args.reuse or args.pages_only
    figures = reused(args) if reuse else {}
    print(
        f"# CallGrid Portal report benchmark: {args.rows:,} bids, {args.buyers} buyers, "
        f"{args.days} days"
    )
    bench(args, figures if reuse else load(args))


if __name__ == "__main__":
    main()
