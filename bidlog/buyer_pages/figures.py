"""The buyer page's figures: the last 24 hours in numbers, cap use and the charts.

What a shift reads first on a buyer's page (issue 20, item 5): acceptance, revenue, response
times against the timeout, how much of the daily and monthly caps is used, and the hourly
chart. Every figure comes from the report services (rollups for whole fresh hours), so the
page costs a fixed number of queries however many bids the buyer has.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bidlog.models import LATENCY_EDGES_MS
from bidlog.reports.charts import buyer_latency_histogram, latency_chart, volume_chart
from bidlog.reports.figures import percentile_from_histogram
from bidlog.reports.services import report_timeseries
from bidlog.routing.eligibility import cap_counts
from buyers.models import Buyer
from callgrid_portal import charts

DAY = timedelta(hours=24)
# A gauge turns amber from this share of its maximum and red from the next.
GAUGE_HIGH = 0.8
GAUGE_FULL = 1.0


def buyer_figures(buyer: Buyer, *, now: datetime) -> dict[str, Any]:
    """The last 24 hours of ``buyer`` as the page's tiles, gauges and charts.

    The hourly series the chart draws and the latency histogram already hold every figure
    (sums per hour, latency buckets), so the tiles add them up rather than asking the
    report summary again: three reads for the whole panel, whatever the bid count.
    """
    since = now - DAY
    series = report_timeseries(since=since, until=now, bucket="hour", tz="UTC", buyer_id=buyer.pk)
    histogram = buyer_latency_histogram(buyer_id=buyer.pk, since=since, until=now)
    day, month = cap_counts(buyers=[buyer], now=now).get(buyer.pk, (0, 0))
    bids = sum(row["bids"] for row in series)
    timeout_ms = buyer.timeout_seconds * 1000
    # The open-ended last bucket answers its lower edge or the timeout, whichever is later.
    longest = max(LATENCY_EDGES_MS[-1], timeout_ms)
    p95 = percentile_from_histogram(histogram, 95, longest)
    return {
        "bids": bids,
        "acceptance": _share(sum(row["accepted"] for row in series), bids),
        "revenue": sum((row["revenue"] for row in series), Decimal("0.00")),
        "routed_calls": sum(row["routed_calls"] for row in series),
        "timeout_rate": _share(sum(row["timeouts"] for row in series), bids),
        "p50": percentile_from_histogram(histogram, 50, longest),
        "p95": p95,
        "timeout_ms": timeout_ms,
        "gauges": [
            gauge
            for gauge in (
                _gauge("p95", "p95 response time against the timeout", p95, timeout_ms, unit="ms"),
                _gauge("daily-cap", "Daily cap used", day, buyer.daily_cap, unit="routed calls"),
                _gauge(
                    "monthly-cap",
                    "Monthly cap used",
                    month,
                    buyer.monthly_cap,
                    unit="routed calls",
                ),
            )
            if gauge is not None
        ],
        "volume_chart": volume_chart(series, bucket="hour", tz="UTC"),
        "latency_chart": latency_chart(
            histogram,
            timeout_seconds=buyer.timeout_seconds,
            title=f"Response times of {buyer.name} in the last 24 hours",
        ),
    }


def _share(part: int, whole: int) -> str:
    return charts.fmt_percent(part / whole) if whole else "no bids"


def _gauge(
    key: str, label: str, value: int | None, maximum: int | None, *, unit: str
) -> dict[str, Any] | None:
    """One ``<meter>`` of the page, or ``None`` when there is nothing to measure against (no
    cap, or no response time yet). The words say what the colour says, for every reader."""
    if maximum is None or maximum <= 0:
        return None
    if value is None:
        return {"key": key, "label": label, "value": 0, "max": maximum, "text": "no bids yet"}
    share = value / maximum
    level = "full" if share >= GAUGE_FULL else "high" if share >= GAUGE_HIGH else "ok"
    return {
        "key": key,
        "label": label,
        "value": min(value, maximum),
        "max": maximum,
        "high": round(maximum * GAUGE_HIGH),
        "text": f"{charts.fmt_count(value)} of {charts.fmt_count(maximum)} {unit} "
        f"({charts.fmt_percent(share)})",
        "level": level,
    }
