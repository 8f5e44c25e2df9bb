"""The overview and the reports pages: key figures against earlier periods, charts, tables
and CSV downloads over the range the range control picks (``bidlog.reports.forms``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views import View

from bidlog.choices import AlertStatus
from bidlog.models import Alert
from bidlog.monitoring.health import buyers_health
from bidlog.reports.campaigns import report_by_tag
from bidlog.reports.charts import (
    bucket_label,
    codes_chart,
    report_codes_over_time,
    volume_chart,
)
from bidlog.reports.compare import kpis_compare, tags_compare
from bidlog.reports.forms import ReportRangeForm
from bidlog.reports.reads import serial_reads
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.reports.states import report_states
from bidlog.reports.tables import CODES, REPORT_TABLES, ReportTable, summary_records, tag_table
from buyers.models import Buyer
from buyers.selectors import buyer_list
from callgrid_portal import charts
from callgrid_portal.bidapi import codes
from callgrid_portal.numbers import fmt_count, fmt_money, fmt_ms, fmt_rate
from callgrid_portal.pages import RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids


def report_args(request: HttpRequest) -> tuple[ReportRangeForm, dict[str, Any] | None]:
    """The page's range form and, when it is valid, the report's arguments."""
    form = ReportRangeForm(request.GET)
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    return form, {
        "since": data["since"],
        "until": data["until"],
        "buyer_id": data["buyer"].pk if data["buyer"] else None,
        "source": data["source"] or None,
        "campaign": data["campaign"] or None,
        "publisher": data["publisher"] or None,
    }


class OverviewView(RoleRequiredMixin, View):
    """``/``: the key figures of a range (default the last 24 hours) against the period
    before and the same period last week, what needs attention, calls and revenue per
    campaign or publisher, every buyer with its health, acceptance and codes over time."""

    def get(self, request: HttpRequest) -> HttpResponse:
        form, args = report_args(request)
        context: dict[str, Any] = {"form": form, "time_zone": settings.TIME_ZONE}
        if args is not None:
            with serial_reads():
                context.update(_overview(form, args))
        context["alerts"] = sorted(
            Alert.objects.filter(status=AlertStatus.OPEN).select_related("buyer"),
            key=lambda alert: (_urgency(alert.priority), -alert.last_seen_at.timestamp()),
        )
        return render(request, "bidlog/overview.html", context)


def _overview(form: ReportRangeForm, args: dict[str, Any]) -> dict[str, Any]:
    """What the overview shows of a valid range: figures, changes, charts and tables."""
    data = form.cleaned_data
    summary = report_summary(**args)
    bucket, tz = data["bucket"], settings.TIME_ZONE
    series = report_timeseries(bucket=bucket, tz=tz, **args)
    over_time = report_codes_over_time(bucket=bucket, tz=tz, **args)
    by_buyer = {row["buyer"]: row for row in summary["buyers"]}
    every_buyer = list(buyer_list())
    health = buyers_health(every_buyer)
    total = sum(summary["by_class"].values()) or 1
    group = data["group"] or "campaign"
    return {
        "summary": summary,
        "kpis": kpis_compare(args=args, summary=summary, period=data["period"]),
        "group": group,
        "tag_rows": tags_compare(args=args, group=group, period=data["period"]),
        "volume_chart": volume_chart(series, bucket=bucket, tz=tz),
        "codes_chart": codes_chart(over_time, bucket=bucket, tz=tz),
        "classes": [
            {"name": name, "count": count, "share": round(count / total * 100, 1)}
            for name, count in summary["by_class"].items()
        ],
        "buyers": [
            _buyer_row(buyer, health[buyer.pk], by_buyer.get(buyer.pk)) for buyer in every_buyer
        ],
    }


def _buyer_row(buyer: Buyer, health: str, figures: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "buyer": buyer,
        "health": health,
        "figures": figures,
        "html": _buyer_row_html(buyer, health, figures),
    }


def _buyer_row_html(buyer: Buyer, health: str, figures: dict[str, Any] | None) -> SafeString:
    """One row of the overview's buyers table, ``<tr>...</tr>``: written here, as the report
    tables' cells are (``tables.cell_html``), because 200 buyers' rows through the template's
    ``url`` tag and number filters took a fifth of the page's time."""
    head = format_html(
        '<td><a href="{}">{}</a></td><td><span class="badge {}">{}</span></td><td>{}</td>',
        reverse("buyers:detail", args=[buyer.pk]),
        buyer.name,
        health,
        health,
        buyer.get_status_display(),
    )
    if figures is None:
        return format_html('<tr>{}<td colspan="5">no bids in this range</td></tr>', head)
    return format_html(
        "<tr>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        head,
        fmt_count(figures["bids"]),
        fmt_rate(figures["acceptance_rate"]),
        fmt_ms(figures["latency_ms"]["p95"]),
        fmt_count(figures["timeouts"]),
        fmt_money(figures["revenue"]),
    )


def _urgency(priority: str) -> int:
    order = codes.PRIORITY_ORDER
    return order.index(priority) if priority in order else len(order)


# The reports page's tables, in page order; each is also a CSV download (?export=<name>).
PAGE_TABLE_NAMES = (*REPORT_TABLES, "campaigns")

Table = tuple[list[str], list[list[Any]]]


def _report_records(
    name: str,
    args: dict[str, Any],
    bucket: str,
    summary: dict[str, Any] | None = None,
    group: str = "campaign",
) -> list[dict[str, Any]]:
    """The report rows behind one table of the reports page; a CSV download reads only its own."""
    if name == "campaigns":
        return report_by_tag(group=group, **args)
    if name == "states":
        return report_states(**args)
    if name == "timeseries":
        return report_timeseries(bucket=bucket, tz=settings.TIME_ZONE, **args)
    summary = summary or report_summary(**args)
    return summary["by_code"] if name == "codes" else summary_records(summary)


def _bids_bar(label: str, row: dict[str, Any]) -> tuple[str, int, str]:
    """A bar of bids for one buyer or state, its text saying how many of them were accepted."""
    accepted = row["acceptance_rate"]
    share = charts.fmt_percent(accepted) if accepted is not None else "no bids"
    return (label, row["bids"], f"{charts.fmt_count(row['bids'])} bids, {share} accepted")


def _report_charts(
    records: dict[str, list[dict[str, Any]]],
    summary: dict[str, Any],
    answers: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    bucket: str,
    group: str,
) -> dict[str, Any]:
    """The chart beside each table of the reports page, drawn from the same report rows."""
    series = records["timeseries"]
    tz = settings.TIME_ZONE
    return {
        "codes": charts.hbars(
            title="Answers and errors by CallGrid code",
            rows=[
                (f"{row['code']} {row['title']}", row["count"], charts.fmt_count(row["count"]))
                for row in [*answers, *errors]
            ],
            classes=["s2"] * len(answers) + ["s3"] * len(errors),
            unit="attempts",
        ),
        "buyers": charts.hbars(
            title="Bids per buyer",
            rows=[_bids_bar(row["name"], row) for row in summary["buyers"]],
        ),
        "states": charts.hbars(
            title="Bids per inbound state",
            rows=[_bids_bar(row["state_code"] or "(none)", row) for row in records["states"]],
        ),
        "campaigns": charts.hbars(
            title="Revenue per tag",
            rows=[
                (
                    row[group] or "untagged",
                    float(row["revenue"]),
                    f"{fmt_money(row['revenue'])} from {row['calls']} calls",
                )
                for row in records["campaigns"]
            ],
            unit="dollars",
        ),
        "timeseries": charts.combo_chart(
            title=f"Bids and acceptance per {bucket} ({tz})",
            labels=[bucket_label(row["bucket_start"], bucket) for row in series],
            bars=[row["bids"] for row in series],
            line=[row["acceptance_rate"] for row in series],
            x_unit=f"{bucket} ({tz})",
        ),
    }


def _page_tables(group: str) -> dict[str, ReportTable]:
    """The reports page's tables, in page order: the report tables and the one per ``group``."""
    return {**REPORT_TABLES, "campaigns": tag_table(group)}


def _report_export(
    name: str, args: dict[str, Any], bucket: str, group: str, request: HttpRequest
) -> HttpResponse:
    """One table of the reports page as a CSV download, as the report API writes it."""
    table = _page_tables(group)[name]
    rows = table.rows(_report_records(name, args, bucket, group=group))
    response = HttpResponse(
        table.csv(rows, masked=not can_see_caller_ids(request.user)),
        content_type="text/csv; charset=utf-8",
    )
    stamp = args["until"].strftime("%Y%m%dT%H%M")
    response["Content-Disposition"] = f'attachment; filename="callgrid-{name}-{stamp}.csv"'
    return response


def _is_answer(row: dict[str, Any]) -> bool:
    """Answers (1000-3999: accepted, no bid, ...), apart from errors (4000 and up, and any
    code the catalog does not know)."""
    entry = codes.get(row["code"])
    return entry is not None and not entry.is_error


def _export_links(request: HttpRequest) -> dict[str, str]:
    """The query string of each table's CSV download: this page's, with ``export`` set."""
    query = request.GET.copy()
    links = {}
    for name in PAGE_TABLE_NAMES:
        query["export"] = name
        links[name] = query.urlencode()
    return links


def _reports_context(
    request: HttpRequest, args: dict[str, Any], bucket: str, group: str
) -> dict[str, Any]:
    """What the reports page shows: the summary, each table (rows and cells) and its chart."""
    summary = report_summary(**args)
    page_tables = _page_tables(group)
    records = {name: _report_records(name, args, bucket, summary, group) for name in page_tables}
    tables: dict[str, Table] = {
        name: (table.header(), table.rows(records[name])) for name, table in page_tables.items()
    }
    # A day bucket starts at midnight in TIME_ZONE; shown in UTC, it needs its hour unless
    # that midnight is UTC's.
    time_format = "Y-m-d" if bucket == "day" and settings.TIME_ZONE == "UTC" else "Y-m-d H:i"
    answers = [row for row in records["codes"] if _is_answer(row)]
    errors = [row for row in records["codes"] if not _is_answer(row)]
    code_tables = [
        ("Answers", CODES.rows(answers), "No answers in this range."),
        ("Errors", CODES.rows(errors), "No error codes in this range."),
    ]
    return {
        "summary": summary,
        "tables": tables,
        "group": group,
        "report_tables": REPORT_TABLES,
        "cells": {
            name: table.cells(tables[name][1], time_format=time_format)
            for name, table in page_tables.items()
        },
        "code_tables": code_tables,
        "code_cells": [
            (heading, CODES.cells(rows, time_format=time_format), empty)
            for heading, rows, empty in code_tables
        ],
        "csv": _export_links(request),
        "charts": _report_charts(records, summary, answers, errors, bucket, group),
    }


class ReportsView(RoleRequiredMixin, View):
    """``/reports/``: error codes, buyers, states, time and campaigns over a range, each as a
    CSV too."""

    def get(self, request: HttpRequest) -> HttpResponse:
        form, args = report_args(request)
        export = request.GET.get("export", "")
        if export and export not in PAGE_TABLE_NAMES:
            form.add_error(None, f"export must be one of {', '.join(PAGE_TABLE_NAMES)}.")
            args = None
        if args is None:
            return render(request, "bidlog/reports.html", {"form": form}, status=200)
        bucket, group = form.cleaned_data["bucket"], form.cleaned_data["group"] or "campaign"
        if export:
            return _report_export(export, args, bucket, group, request)
        with serial_reads():
            context = _reports_context(request, args, bucket, group)
        return render(request, "bidlog/reports.html", {"form": form, **context})
