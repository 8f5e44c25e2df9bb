"""The report tables, defined once: the API's CSV, the reports page and its CSV downloads
all render these columns, in this order, from the report services' rows."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from callgrid_portal.csvexport import csv_write

# How a page shows a column's values (bidlog/_report_table.html); the CSV writes them plain.
TEXT, COUNT, RATE, MONEY, TIME, CODE, GRID, STATE = (
    "text",
    "count",
    "rate",
    "money",
    "time",
    "code",
    "grid",
    "state",
)


@dataclass(frozen=True)
class Column:
    """One column: its CSV header, its page header, how the page shows it, where it is."""

    key: str
    title: str
    kind: str = COUNT
    # Where the value sits in a report row, when not under ``key`` (``latency_ms`` → ``p95``).
    path: tuple[str, ...] = ()

    def value(self, record: Mapping[str, Any]) -> Any:
        """This column's value in ``record``; ``None`` where the row has none."""
        value: Any = record
        for part in self.path or (self.key,):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


@dataclass(frozen=True)
class ReportTable:
    """A named table of columns, as every place that shows a report renders it."""

    name: str
    columns: tuple[Column, ...]

    def header(self) -> list[str]:
        """The CSV header: each column's key."""
        return [column.key for column in self.columns]

    def rows(self, records: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        """Each record as a row of values, in column order."""
        return [[column.value(record) for column in self.columns] for record in records]

    def cells(self, rows: Iterable[list[Any]], *, time_format: str) -> list[list[SafeString]]:
        """Rows as the page shows them: each value as its ``<td>``, written as its column's
        kind says (:func:`cell_html`); times in ``time_format`` (the ``date`` filter's)."""
        kinds = [column.kind for column in self.columns]
        codes = reverse("troubleshooting")
        return [
            [
                cell_html(kind, value, time_format=time_format, codes_url=codes)
                for kind, value in zip(kinds, row, strict=True)
            ]
            for row in rows
        ]

    def csv(self, rows: Iterable[list[Any]], *, masked: bool) -> str:
        """The CSV download: the header, then the rows with money to the cent and times in
        ISO 8601; text escaped against formulas and phone-masked when ``masked``."""
        out = io.StringIO()
        csv_write(out, [self.header(), *([plain(v) for v in row] for row in rows)], masked=masked)
        return out.getvalue()


def cell_html(kind: str, value: Any, *, time_format: str, codes_url: str) -> SafeString:
    """One table cell, ``<td>...</td>``, as a template would write the value: localized
    (``{{ value }}``), escaped, a rate as a whole percent (``{% widthratio value 1 100 %}``),
    money after a dollar sign, a time through the ``date`` filter, a code linked to its entry
    of the troubleshooting page (``codes_url``). Written here rather than in the template:
    a page of 200 buyers has thousands of cells, and a chain of ``{% if %}`` per cell took
    about as long as computing the reports themselves."""
    if kind == CODE:
        code = _shown(value)
        return format_html('<td><a href="{}#code-{}">{}</a></td>', codes_url, code, code)
    if kind == GRID:
        return format_html("<td><code>{}</code></td>", _shown(value))
    if kind == RATE:
        return format_html("<td>{}</td>", "" if value is None else f"{_percent(value)}%")
    if kind == MONEY:
        return format_html("<td>{}</td>", "" if value is None else f"${_shown(value)}")
    if kind == TIME:
        return format_html("<td>{}</td>", _date(value, time_format))
    if kind == STATE:
        return format_html("<td>{}</td>", _shown(value or "(none)"))
    return format_html("<td>{}</td>", "" if value is None else _shown(value))


def _local(value: Any) -> Any:
    # An aware moment in the current time zone, as a template shows it (USE_TZ is on).
    if isinstance(value, datetime) and timezone.is_aware(value):
        return timezone.localtime(value)
    return value


def _shown(value: Any) -> str:
    # What {{ value }} writes before escaping: moments in the current time zone, localized.
    return str(formats.localize(_local(value)))


def _percent(value: Any) -> str:
    # {% widthratio value 1 100 %}: the same float arithmetic, the same rounding.
    try:
        return str(round(float(value) / 1.0 * 100))
    except (ValueError, TypeError):
        return ""


def _date(value: Any, time_format: str) -> str:
    # {{ value|date:time_format }}: the filter sees the moment in the current time zone.
    if value in (None, ""):
        return ""
    try:
        return formats.date_format(_local(value), time_format)
    except AttributeError:
        return ""


def plain(value: Any) -> Any:
    """Money as a string with 2 decimals (as DRF's DecimalField), times in ISO 8601; the
    same inside dicts and lists (the API's JSON answers)."""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


_LATENCY = ("p50", "p95", "p99", "max")

CODES = ReportTable(
    "codes",
    (
        Column("code", "Code", CODE),
        Column("title", "Meaning", TEXT),
        Column("priority", "Priority", TEXT),
        Column("count", "Count"),
    ),
)
BUYERS = ReportTable(
    "buyers",
    (
        Column("buyer", "ID", TEXT),
        Column("name", "Buyer", TEXT),
        Column("grid_id", "Grid ID", GRID),
        Column("attempts", "Attempts"),
        Column("bids", "Bids"),
        Column("accepted", "Accepted"),
        Column("acceptance_rate", "Acceptance", RATE),
        Column("timeouts", "Timeouts"),
        Column("timeout_rate", "Timeout rate", RATE),
        Column("routed_calls", "Routed calls"),
        Column("revenue", "Revenue", MONEY),
        *(
            Column(f"latency_{name}_ms", f"{name} ms", COUNT, ("latency_ms", name))
            for name in _LATENCY
        ),
        Column("timeout_seconds", "Timeout s"),
        Column("recommended_timeout_seconds", "Recommended timeout s"),
    ),
)
STATES = ReportTable(
    "states",
    (
        Column("state_code", "State", STATE),
        Column("attempts", "Attempts"),
        Column("bids", "Bids"),
        Column("accepted", "Accepted"),
        Column("acceptance_rate", "Acceptance", RATE),
    ),
)
TIMESERIES = ReportTable(
    "timeseries",
    (
        Column("bucket_start", "From (UTC)", TIME),
        Column("bids", "Bids"),
        Column("accepted", "Accepted"),
        Column("acceptance_rate", "Acceptance", RATE),
        Column("timeouts", "Timeouts"),
        Column("calls", "Calls"),
        Column("routed_calls", "Routed calls"),
        Column("revenue", "Revenue", MONEY),
        Column("p95_ms", "p95 ms"),
    ),
)
# The reports page's tables, in page order; each is also a CSV download (?export=<name>).
REPORT_TABLES = {table.name: table for table in (CODES, BUYERS, STATES, TIMESERIES)}


def summary_records(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of :data:`BUYERS`: every buyer's together first, then one per buyer."""
    return [{"buyer": None, "name": "All buyers", "grid_id": "", **summary}, *summary["buyers"]]


def tag_table(group: str) -> ReportTable:
    """Calls, sales and revenue per ``group`` (``campaign`` or ``publisher``; untagged: "")."""
    return ReportTable(
        "campaigns",
        (
            Column(group, group.capitalize(), TEXT),
            Column("calls", "Calls"),
            Column("routed_calls", "Sold"),
            Column("acceptance_rate", "Acceptance (calls sold)", RATE),
            Column("revenue", "Revenue", MONEY),
            Column("revenue_per_call", "Revenue per call", MONEY),
        ),
    )
