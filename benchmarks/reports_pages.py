"""Page timings for benchmarks/reports.py: the rendered browser pages on the benchmark's data."""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from benchmarks.timing import timed
from bidlog.models import BidLog, Call
from bidlog.reports.pages import PAGE_SIZE
from buyers.models import Buyer

Page = tuple[str, str, dict[str, Any]]


def _day(offset: int) -> str:
    return (timezone.now() + timedelta(days=offset)).date().isoformat()


def _bid_pages(buyer: Buyer) -> tuple[Page, ...]:
    """The bids list for investigation: outcomes, the range control's days, sorted columns,
    the CSV."""
    today = _day(0)
    week = {"from_date": _day(-6), "to_date": today}
    return (
        ("bids first page", "/bids/", {}),
        ("bids buyer + outcome", "/bids/", {"buyer": buyer.pk, "outcome": "declined"}),
        ("bids 3 outcomes", "/bids/", {"outcome": ["declined", "timeout", "no_capacity"]}),
        ("bids today", "/bids/", {"from_date": today, "to_date": today}),
        ("bids slowest 24h", "/bids/", {"sort": "-duration_ms"}),
        ("bids slowest 7 days", "/bids/", {"sort": "-duration_ms", **week}),
        ("bids by buyer 24h", "/bids/", {"sort": "buyer"}),
        ("bids buyer slowest 7d", "/bids/", {"sort": "-duration_ms", "buyer": buyer.pk, **week}),
        ("bids CSV buyer 10k", "/bids/", {"buyer": buyer.pk, "export": "csv"}),
        ("bids today campaign", "/bids/", {"range": "today", "campaign": "campaign-3"}),
    )


def _one_of_each_pages(buyer: Buyer) -> tuple[Page, ...]:
    """The pages of one row (the newest bid of a call, its call), the buyer's forms, and the
    pages that read the newest rows or none (live calls, alerts, troubleshooting)."""
    bid = BidLog.objects.filter(call__isnull=False).order_by("-created_at", "-id").first()
    assert bid is not None and bid.call_id is not None, "the data has no bid of a call"
    return (
        ("bid page", f"/bids/{bid.pk}/", {}),
        ("call page", f"/calls/{bid.call_id}/", {}),
        ("live calls", "/live/", {}),
        ("alert centre", "/alerts/", {}),
        ("troubleshooting", "/troubleshooting/", {}),
        ("new buyer form", "/buyers/new/", {}),
        ("buyer edit form", f"/buyers/{buyer.pk}/edit/", {}),
        ("buyer clone form", f"/buyers/{buyer.pk}/clone/", {}),
    )


def _other_pages(buyer: Buyer) -> tuple[Page, ...]:
    """The buyer page (figures, cap gauges, charts), calls, overview and reports pages."""
    return (
        ("buyer page", f"/buyers/{buyer.pk}/", {}),
        ("buyers list", "/buyers/", {}),
        ("calls first page", "/calls/", {}),
        ("calls not routed", "/calls/", {"routed": "false"}),
        ("calls won by a buyer", "/calls/", {"winner": buyer.pk}),
        ("calls 7d campaign", "/calls/", {"range": "7d", "campaign": "campaign-3"}),
        ("overview 24h", "/", {}),
        ("overview today", "/", {"range": "today"}),
        ("overview 7d", "/", {"range": "7d"}),
        ("overview 30d", "/", {"range": "30d"}),
        ("overview 7d /publisher", "/", {"range": "7d", "group": "publisher"}),
        ("overview 24h campaign", "/", {"campaign": "campaign-3"}),
        ("reports 7d", "/reports/", {"range": "7d"}),
        ("reports 30d", "/reports/", {"range": "30d"}),
        ("reports dates", "/reports/", {"from_date": _day(-6), "to_date": _day(0)}),
    )


def _get(browser: Client, path: str, params: dict[str, Any]) -> Any:
    """One page, read to its end (a streamed CSV is only written while it is read)."""
    response = browser.get(path, params)
    if isinstance(response, StreamingHttpResponse):
        body = b"".join(response.streaming_content)
        assert body, f"{path} streamed nothing"
    return response


def pages_benchmark(user: User, buyer: Buyer, requests: int) -> dict[str, float]:
    """Every page on the same data, then a page half-way down the bid and call logs by cursor
    against OFFSET at the same depth. Returns the p95 of each page by label, and the deep
    pages' p50s as ``<path> deep`` and ``<path> offset``."""
    browser = Client()
    browser.force_login(user)
    print(f"\n## Pages ({requests} requests each, rendered HTML)")
    print(f"{'page':<24}{'p50 ms':>9}{'p95 ms':>9}")
    found = {}
    for label, path, params in (
        *_bid_pages(buyer),
        *_other_pages(buyer),
        *_one_of_each_pages(buyer),
    ):
        p50, p95, response = timed(functools.partial(_get, browser, path, params), requests)
        assert response.status_code == 200, (label, response.status_code)
        print(f"{label:<24}{p50:>9.1f}{p95:>9.1f}")
        found[label] = p95
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
