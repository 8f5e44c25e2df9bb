"""The report tables, defined once: the API's CSV, the reports page and its CSV downloads
all render these columns, in this order, from the report services' rows."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

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

    def cells(self, rows: Iterable[list[Any]]) -> list[list[dict[str, Any]]]:
        """Rows as the page renders them: each value with its column's kind."""
        kinds = [column.kind for column in self.columns]
        return [
            [{"kind": kind, "value": value} for kind, value in zip(kinds, row, strict=True)]
            for row in rows
        ]

    def csv(self, rows: Iterable[list[Any]], *, masked: bool) -> str:
        """The CSV download: the header, then the rows with money to the cent and times in
        ISO 8601; text escaped against formulas and phone-masked when ``masked``."""
        out = io.StringIO()
        csv_write(out, [self.header(), *([plain(v) for v in row] for row in rows)], masked=masked)
        return out.getvalue()


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
