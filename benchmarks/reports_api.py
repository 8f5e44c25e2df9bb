"""API timings for benchmarks/reports.py: reports against the raw GROUP BY, lists, import."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from rest_framework.test import APIClient

from benchmarks.reports_rollups import rollup_rows_read
from benchmarks.timing import timed
from bidlog.models import BidLog, RollupBucket
from bidlog.reports.services import report_summary, report_timeseries
from buyers.models import Buyer

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
SPANS = (("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)))


def _summary(client: APIClient, since: datetime, until: datetime, runs: tuple[int, int]) -> tuple:
    """The summary through the API (p50, p95) beside the raw GROUP BY (p50), whether their
    counts are equal, their latency percentiles and the rollup rows the summary reads."""
    params = {"since": since.isoformat(), "until": until.isoformat()}
    p50, p95, response = timed(
        functools.partial(client.get, "/api/v1/reports/summary/", params), runs[0]
    )
    assert response.status_code == 200, response.content[:300]
    raw50, _raw95, exact = timed(
        functools.partial(report_summary, since=since, until=until, exact=True), runs[1]
    )
    fast = report_summary(since=since, until=until)
    equal = all(fast[n] == exact[n] for n in SUMMARY_NAMES)
    latency = " ".join(
        f"{k}={fast['latency_ms'][k]}/{exact['latency_ms'][k]}" for k in ("p50", "p95", "p99")
    )
    return p50, p95, raw50, equal, latency, rollup_rows_read(since, until), fast


def _timeseries(
    client: APIClient, since: datetime, until: datetime, runs: tuple[int, int]
) -> tuple:
    """The hourly series in New York time through the API (p50, p95) beside the raw query."""
    params = {"since": since.isoformat(), "until": until.isoformat()}
    params |= {"bucket": "hour", "tz": "America/New_York"}
    p50, p95, response = timed(
        functools.partial(client.get, "/api/v1/reports/timeseries/", params), runs[0]
    )
    assert response.status_code == 200, response.content[:300]
    raw = functools.partial(
        report_timeseries,
        since=since,
        until=until,
        bucket="hour",
        tz="America/New_York",
        exact=True,
    )
    raw50, _r95, _rows = timed(raw, runs[1])
    return p50, p95, raw50


def reports_benchmark(client: APIClient, requests: int, baseline_runs: int) -> dict[str, Any]:
    """Summary and hourly series through the API for 24 h, 7 d and 30 d, each beside the raw
    GROUP BY (``exact=True``) in the same run; returns p95s and raw p50s by label."""
    now = timezone.now()
    runs = (requests, baseline_runs)
    found: dict[str, Any] = {}
    print(f"\n## Reports through the API ({requests} requests each), vs raw GROUP BY")
    print(f"{'report':<22}{'p50 ms':>9}{'p95 ms':>9}{'raw p50 ms':>12}{'ratio':>8}  equal")
    for label, span in SPANS:
        p50, p95, raw50, equal, latency, read, fast = _summary(client, now - span, now, runs)
        print(
            f"summary {label:<14}{p50:>9.1f}{p95:>9.1f}{raw50:>12.1f}{raw50 / p50:>7.0f}x  "
            f"{equal} (latency p50/p95/p99 rollup/exact {latency}; {read:,} rollup rows read)"
        )
        found[f"summary {label}"] = (p95, raw50, equal, latency, read)
        p50, p95, raw50 = _timeseries(client, now - span, now, runs)
        print(f"timeseries hour {label:<6}{p50:>9.1f}{p95:>9.1f}{raw50:>12.1f}{raw50 / p50:>7.0f}x")
        found[f"timeseries {label}"] = (p95, raw50)
    print(f"summary bids={fast['bids']:,} accepted={fast['accepted']:,} revenue={fast['revenue']}")
    return found


def campaigns_benchmark(client: APIClient, requests: int) -> dict[str, float]:
    """Calls and revenue per campaign and per publisher through the API (call rollups);
    returns the p95 of each by label."""
    print(f"\n## Per campaign and publisher ({requests} requests each)")
    now = timezone.now()
    found = {}
    for label, span, group in (
        ("campaigns 24h", timedelta(hours=24), "campaign"),
        ("campaigns 30d", timedelta(days=30), "campaign"),
        ("publishers 30d", timedelta(days=30), "publisher"),
    ):
        params = {"since": (now - span).isoformat(), "until": now.isoformat(), "group": group}
        p50, p95, response = timed(
            functools.partial(client.get, "/api/v1/reports/campaigns/", params), requests
        )
        assert response.status_code == 200, response.content[:300]
        assert response.json()["results"], f"{label}: no rows"
        print(f"{label:<22}{p50:>9.1f}{p95:>9.1f} ms (p50, p95)")
        found[label] = p95
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


def _records(batch: int, now: datetime, grids: list[str]) -> list[dict[str, Any]]:
    return [
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


def import_benchmark(client: APIClient, batches: int) -> float:
    """``batches`` batches of 5,000 records through the import API; returns rows per second."""
    print(f"\n## Import ({batches} batches of 5,000 through the API)")
    now = timezone.now()
    grids = list(Buyer.objects.values_list("grid_id", flat=True))
    total, elapsed = 0, 0.0
    for batch in range(batches):
        records = _records(batch, now, grids)
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
