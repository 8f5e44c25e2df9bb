"""The overview's key figures against the previous period and the same period a week before.

Each figure's change is defined here once:

- counts, money and latency change by a signed percent of the earlier value, ``n/a`` when
  the earlier value is 0 or missing;
- rates (acceptance, timeout rate) change by percentage points, ``n/a`` when the earlier
  period had no bids (no rate);
- a change is "better" or "worse" by the figure's direction (more revenue is better, a
  higher p95 latency worse), "no change" under 0.05 %.

The earlier periods are the same range moved back by its own period (a day for today, seven
days for 7 days, the days picked for dates) and by seven days; both are read from rollups
like every report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bidlog.reports.campaigns import report_by_tag
from bidlog.reports.totals import report_totals_periods
from callgrid_portal import numbers

WEEK = timedelta(days=7)
# Below this (percent or points) a change reads "no change".
FLAT = 0.05


@dataclass(frozen=True)
class Kpi:
    """A key figure: where it is in a summary, its name, how it is shown and which way is up."""

    key: str
    label: str
    shown: Callable[[Any], str]
    higher_is_better: bool
    points: bool = False  # a rate: changes in percentage points


KPIS = (
    Kpi("calls", "Calls", numbers.fmt_count, True),
    Kpi("acceptance_rate", "Acceptance", numbers.fmt_rate, True, points=True),
    Kpi("revenue", "Revenue", numbers.fmt_money, True),
    Kpi("revenue_per_call", "Revenue per call", numbers.fmt_money, True),
    Kpi("p95_ms", "p95 response", numbers.fmt_ms, False),
    Kpi("timeout_rate", "Timeout rate", numbers.fmt_rate, False, points=True),
)


@dataclass(frozen=True)
class Change:
    """One figure against one earlier period, in words as well as arrow and colour."""

    against: str
    text: str  # "+12.5%", "-2.3 pts", "n/a"
    arrow: str  # "▲", "▼", "▶" or "" for n/a
    verdict: str  # "better", "worse", "same" or "n/a": the CSS class and the word shown
    words: str  # what a screen reader says: "up 12.5% on the previous period, better"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, Decimal | int | float) else None


def change_of(kpi: Kpi, current: Any, base: Any, *, against: str) -> Change:
    """How ``current`` compares with ``base`` for ``kpi`` (see the module's rules)."""
    now, then = _number(current), _number(base)
    if now is None or then is None or (not kpi.points and then == 0):
        return Change(against, "n/a", "", "n/a", f"no comparison with {against}")
    if kpi.points:
        delta = (now - then) * 100
        text, unit = f"{delta:+.1f} pts", f"{abs(delta):.1f} points"
    else:
        delta = (now - then) / abs(then) * 100
        text, unit = f"{delta:+.1f}%", f"{abs(delta):.1f}%"
    if abs(delta) < FLAT:
        return Change(against, "±0%", "▶", "same", f"no change on {against}")
    up = delta > 0
    verdict = "better" if up == kpi.higher_is_better else "worse"
    words = f"{'up' if up else 'down'} {unit} on {against}, {verdict}"
    return Change(against, text, "▲" if up else "▼", verdict, words)


def kpi_values(summary: dict[str, Any]) -> dict[str, Any]:
    """The key figures of a report summary (or its totals), by :data:`KPIS` key."""
    return {
        "calls": summary["calls"],
        "acceptance_rate": summary["acceptance_rate"],
        "revenue": summary["revenue"],
        "revenue_per_call": summary["revenue_per_call"],
        "p95_ms": summary["latency_ms"]["p95"],
        "timeout_rate": summary["timeout_rate"],
    }


def earlier_periods(period: timedelta) -> list[tuple[str, timedelta]]:
    """The two earlier periods to compare with, as (name, how far back)."""
    previous = "yesterday" if period == timedelta(days=1) else "the previous period"
    return [(previous, period), ("the same time last week", WEEK)]


def _shifted(args: dict[str, Any], back: timedelta) -> dict[str, Any]:
    return {**args, "since": args["since"] - back, "until": args["until"] - back}


def kpis_compare(
    *, args: dict[str, Any], summary: dict[str, Any], period: timedelta
) -> list[dict[str, Any]]:
    """Each key figure of ``summary`` (the report over ``args``), shown, with its changes."""
    current = kpi_values(summary)
    names, backs = zip(*earlier_periods(period), strict=True)
    filters = {name: value for name, value in args.items() if name not in ("since", "until")}
    totals = report_totals_periods(
        [(args["since"] - back, args["until"] - back) for back in backs], **filters
    )
    earlier = [(name, kpi_values(figures)) for name, figures in zip(names, totals, strict=True)]
    return [
        {
            "key": kpi.key,
            "label": kpi.label,
            "value": current[kpi.key],
            "shown": kpi.shown(current[kpi.key]),
            "changes": [
                change_of(kpi, current[kpi.key], values[kpi.key], against=name)
                for name, values in earlier
            ],
        }
        for kpi in KPIS
    ]


REVENUE = KPIS[2]


def tags_compare(*, args: dict[str, Any], group: str, period: timedelta) -> list[dict[str, Any]]:
    """Calls, acceptance and revenue per ``group`` tag, with revenue against the previous
    period; the biggest drop in revenue first, so the campaign losing money is on top."""
    filters = {**args, "group": group}
    rows = report_by_tag(**filters)
    before = {row[group]: row for row in report_by_tag(**_shifted(filters, period))}
    name = earlier_periods(period)[0][0]
    zero = Decimal("0.00")
    for row in rows:
        base = before.get(row[group], {}).get("revenue", zero)
        row["revenue_before"] = base
        row["revenue_delta"] = row["revenue"] - base
        row["revenue_change"] = change_of(REVENUE, row["revenue"], base, against=name)
    for tag, row in before.items():
        if not any(r[group] == tag for r in rows) and row["revenue"]:
            # Sold last period, nothing now: the clearest loss of all.
            rows.append(
                {
                    group: tag,
                    "calls": 0,
                    "routed_calls": 0,
                    "unsold_calls": 0,
                    "acceptance_rate": None,
                    "revenue": zero,
                    "revenue_per_call": None,
                    "revenue_before": row["revenue"],
                    "revenue_delta": -row["revenue"],
                    "revenue_change": change_of(REVENUE, zero, row["revenue"], against=name),
                }
            )
    rows.sort(key=lambda row: (row["revenue_delta"], -row["calls"], row[group]))
    return rows
