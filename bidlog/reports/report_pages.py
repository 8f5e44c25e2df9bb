"""The overview and the reports pages: key figures against earlier periods, charts, tables
and CSV downloads over the range the range control picks (``bidlog.reports.forms``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
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
from bidlog.reports.services import (
    report_states,
    report_summary,
    report_timeseries,
)
from buyers.selectors import buyer_list
from callgrid_portal import charts
from callgrid_portal.bidapi import codes
from callgrid_portal.csvexport import csv_write
from callgrid_portal.numbers import fmt_money
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
            {"buyer": buyer, "health": health[buyer.pk], "figures": by_buyer.get(buyer.pk)}
            for buyer in every_buyer
        ],
    }


def _urgency(priority: str) -> int:
    order = codes.PRIORITY_ORDER
    return order.index(priority) if priority in order else len(order)


# The tables of the reports page, each also a CSV download (?export=<name>).
REPORT_TABLES = ("codes", "buyers", "states", "timeseries", "campaigns")

Table = tuple[list[str], list[list[Any]]]


def _tag_table(args: dict[str, Any], group: str) -> Table:
    """Calls, sales and revenue per campaign or publisher (``group``); untagged calls as ""."""
    columns = ["calls", "routed_calls", "acceptance_rate", "revenue", "revenue_per_call"]
    rows = report_by_tag(group=group, **args)
    return [group, *columns], [[row[group], *(row[name] for name in columns)] for row in rows]


def _report_table(
    name: str,
    args: dict[str, Any],
    bucket: str,
    summary: dict[str, Any] | None = None,
    group: str = "campaign",
) -> Table:
    """One table of the reports page (a header and rows); a CSV download reads only its own."""
    if name == "campaigns":
        return _tag_table(args, group)
    if name == "states":
        return (
            ["state", "attempts", "bids", "accepted", "acceptance_rate"],
            [
                [
                    r["state_code"] or "(none)",
                    r["attempts"],
                    r["bids"],
                    r["accepted"],
                    r["acceptance_rate"],
                ]
                for r in report_states(**args)
            ],
        )
    if name == "timeseries":
        return (
            ["bucket_start", "bids", "accepted", "acceptance_rate", "revenue", "p95_ms"],
            [
                [
                    r["bucket_start"],
                    r["bids"],
                    r["accepted"],
                    r["acceptance_rate"],
                    r["revenue"],
                    r["p95_ms"],
                ]
                for r in report_timeseries(bucket=bucket, tz=settings.TIME_ZONE, **args)
            ],
        )
    summary = summary or report_summary(**args)
    if name == "codes":
        return (
            ["code", "title", "priority", "count"],
            [[r["code"], r["title"], r["priority"], r["count"]] for r in summary["by_code"]],
        )
    return (
        [
            "buyer",
            "grid_id",
            "bids",
            "accepted",
            "acceptance_rate",
            "p95_ms",
            "timeouts",
            "timeout_rate",
            "routed_calls",
            "revenue",
        ],
        [
            [
                r["name"],
                r["grid_id"],
                r["bids"],
                r["accepted"],
                r["acceptance_rate"],
                r["latency_ms"]["p95"],
                r["timeouts"],
                r["timeout_rate"],
                r["routed_calls"],
                r["revenue"],
            ]
            for r in summary["buyers"]
        ],
    )


def _report_charts(
    tables: dict[str, Table], answers: list[list[Any]], errors: list[list[Any]], bucket: str
) -> dict[str, Any]:
    """The chart beside each table of the reports page, drawn from the table's own rows."""

    def share(value: float | None) -> str:
        return charts.fmt_percent(value) if value is not None else "no bids"

    code_rows = [*answers, *errors]
    series_rows = tables["timeseries"][1]
    tz = settings.TIME_ZONE
    return {
        "codes": charts.hbars(
            title="Answers and errors by CallGrid code",
            rows=[(f"{row[0]} {row[1]}", row[3], charts.fmt_count(row[3])) for row in code_rows],
            classes=["s2"] * len(answers) + ["s3"] * len(errors),
            unit="attempts",
        ),
        "buyers": charts.hbars(
            title="Bids per buyer",
            rows=[
                (row[0], row[2], f"{charts.fmt_count(row[2])} bids, {share(row[4])} accepted")
                for row in tables["buyers"][1]
            ],
        ),
        "states": charts.hbars(
            title="Bids per inbound state",
            rows=[
                (row[0], row[2], f"{charts.fmt_count(row[2])} bids, {share(row[4])} accepted")
                for row in tables["states"][1]
            ],
        ),
        "campaigns": charts.hbars(
            title="Revenue per tag",
            rows=[
                (row[0] or "untagged", float(row[4]), f"{fmt_money(row[4])} from {row[1]} calls")
                for row in tables["campaigns"][1]
            ],
            unit="dollars",
        ),
        "timeseries": charts.combo_chart(
            title=f"Bids and acceptance per {bucket} ({tz})",
            labels=[bucket_label(row[0], bucket) for row in series_rows],
            bars=[row[1] for row in series_rows],
            line=[row[3] for row in series_rows],
            x_unit=f"{bucket} ({tz})",
        ),
    }


class ReportsView(RoleRequiredMixin, View):
    """``/reports/``: error codes, buyers, states and time over a range, each as a CSV too."""

    def get(self, request: HttpRequest) -> HttpResponse:
        form, args = report_args(request)
        export = request.GET.get("export", "")
        if export and export not in REPORT_TABLES:
            form.add_error(None, f"export must be one of {', '.join(REPORT_TABLES)}.")
            args = None
        if args is None:
            return render(request, "bidlog/reports.html", {"form": form}, status=200)
        bucket, group = form.cleaned_data["bucket"], form.cleaned_data["group"] or "campaign"
        if export:
            header, rows = _report_table(export, args, bucket, group=group)
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            stamp = args["until"].strftime("%Y%m%dT%H%M")
            response["Content-Disposition"] = (
                f'attachment; filename="callgrid-{export}-{stamp}.csv"'
            )
            # Times as ISO 8601 with their offset, for spreadsheets and scripts alike; text
            # escaped so no cell runs as a formula, and numbers masked for viewers.
            csv_write(response, [header, *rows], masked=not can_see_caller_ids(request.user))
            return response
        summary = report_summary(**args)
        tables = {name: _report_table(name, args, bucket, summary, group) for name in REPORT_TABLES}
        # Answers (1000-3999: accepted, no bid, ...) apart from errors (4000 and up, and any
        # code the catalog does not know).
        answers: list[Any] = []
        errors: list[Any] = []
        for row in tables["codes"][1]:
            entry = codes.get(row[0])
            (answers if entry is not None and not entry.is_error else errors).append(row)
        query = request.GET.copy()
        links = {}
        for name in REPORT_TABLES:
            query["export"] = name
            links[name] = query.urlencode()
        return render(
            request,
            "bidlog/reports.html",
            {
                "form": form,
                "group": group,
                "summary": summary,
                "tables": tables,
                "csv": links,
                "code_tables": [
                    ("Answers", answers, "No answers in this range."),
                    ("Errors", errors, "No error codes in this range."),
                ],
                "charts": _report_charts(tables, answers, errors, bucket),
                # A day bucket starts at midnight in TIME_ZONE; shown in UTC, it needs its hour
                # unless that midnight is UTC's.
                "bucket_format": (
                    "Y-m-d" if bucket == "day" and settings.TIME_ZONE == "UTC" else "Y-m-d H:i"
                ),
            },
        )
