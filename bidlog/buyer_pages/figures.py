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

from bidlog.reports.charts import buyer_latency_histogram, latency_chart, volume_chart
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.routing.eligibility import cap_counts
from buyers.models import Buyer
from callgrid_portal import charts

DAY = timedelta(hours=24)
# A gauge turns amber from this share of its maximum and red from the next.
GAUGE_HIGH = 0.8
GAUGE_FULL = 1.0


def buyer_figures(buyer: Buyer, *, now: datetime) -> dict[str, Any]:
    """The last 24 hours of ``buyer`` as the page's tiles, gauges and charts."""
    since = now - DAY
    summary = report_summary(since=since, until=now, buyer_id=buyer.pk)
    row = next((r for r in summary["buyers"] if r["buyer"] == buyer.pk), None)
    latency = row["latency_ms"] if row else {}
    timeout_ms = buyer.timeout_seconds * 1000
    series = report_timeseries(since=since, until=now, bucket="hour", tz="UTC", buyer_id=buyer.pk)
    histogram = buyer_latency_histogram(buyer_id=buyer.pk, since=since, until=now)
    day, month = cap_counts(buyers=[buyer], now=now).get(buyer.pk, (0, 0))
    return {
        "bids": row["bids"] if row else 0,
        "acceptance": _percent(row["acceptance_rate"] if row else None),
        "revenue": (row["revenue"] if row else Decimal("0.00")),
        "routed_calls": row["routed_calls"] if row else 0,
        "timeout_rate": _percent(row["timeout_rate"] if row else None),
        "p50": latency.get("p50"),
        "p95": latency.get("p95"),
        "timeout_ms": timeout_ms,
        "gauges": [
            gauge
            for gauge in (
                _gauge(
                    "p95",
                    "p95 response time against the timeout",
                    latency.get("p95"),
                    timeout_ms,
                    unit="ms",
                ),
                _gauge("daily-cap", "Daily cap used", day, buyer.daily_cap, unit="routed calls"),
                _gauge(
                    "monthly-cap", "Monthly cap used", month, buyer.monthly_cap, unit="routed calls"
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


def _percent(rate: float | None) -> str:
    return charts.fmt_percent(rate) if rate is not None else "no bids"


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
