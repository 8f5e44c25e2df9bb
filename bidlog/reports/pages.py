"""The bid log pages (SPEC §6): the overview, the reports, a filtered browser that pages by
cursor, and one bid in full.

Reads need the ``viewer`` role; viewers see caller IDs masked everywhere, as in the API. The
list pages by a cursor on (created_at, id), like the API, so the 50th page of millions of
rows costs what the first does and new bids never shift what someone is reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views import View

from bidlog.choices import AlertStatus, OutcomeClass
from bidlog.filters import BidLogFilter, parse_iso_datetime
from bidlog.models import Alert
from bidlog.monitoring.health import buyers_health
from bidlog.monitoring.support import support_request_text
from bidlog.reports.bid_rows import bid_row
from bidlog.reports.charts import (
    bucket_label,
    codes_chart,
    report_codes_over_time,
    volume_chart,
)
from bidlog.reports.forms import ReportRangeForm
from bidlog.reports.services import (
    report_states,
    report_summary,
    report_timeseries,
)
from bidlog.selectors import bid_get
from buyers.models import Buyer
from buyers.selectors import buyer_list
from callgrid_portal import charts
from callgrid_portal.bidapi import codes, outcome_guidance
from callgrid_portal.csvexport import csv_write
from callgrid_portal.pages import PageFilterMixin, RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids, mask_phones_in
from callgrid_portal.throttles import CALLER_PARAM, caller_search_wait, throttled_message

PAGE_SIZE = 50


def buyer_choice_filter(field_name: str) -> django_filters.ModelChoiceFilter:
    """A page filter that picks a buyer by name, in waterfall order, instead of by id."""
    return django_filters.ModelChoiceFilter(
        queryset=Buyer.objects.order_by("priority", "name"),
        field_name=field_name,
        empty_label="Any buyer",
    )


class BidPageFilter(PageFilterMixin, BidLogFilter):
    """The API's filters, with buyers picked by name instead of typed as ids."""

    buyer = buyer_choice_filter("buyer")

    LABELS = {
        "buyer": "Buyer",
        "grid_id": "Grid ID",
        "outcome": "Outcome (any of)",
        "outcome_class": "Outcome class",
        "code": "CallGrid code",
        "source": "Source",
        "caller_id": "Caller ID",
        "call": "Call ID",
        "since": "Since",
        "until": "Until",
    }
    EMPTY_LABELS = {"outcome_class": "Any class", "source": "Any source"}


def _cursor(value: str) -> tuple[Any, int] | None:
    """``before=<created_at>~<id>``, the last row of the previous page; ``None`` if broken."""
    moment, _, pk = value.rpartition("~")
    if not pk.isdigit() or len(pk) > 18:
        return None
    try:
        return parse_iso_datetime(moment), int(pk)
    except ValueError:
        return None


@dataclass
class CursorPage:
    """One page of a newest-first listing, and the links around it."""

    items: list[Any]
    # The query string of the next, older page; "" on the last page.
    older: str = ""
    # The ``before`` cursor of the request could not be read (the newest page is shown).
    broken_link: bool = False


def cursor_page(queryset: QuerySet[Any], params: QueryDict, before: str) -> CursorPage:
    """The ``PAGE_SIZE`` rows of ``queryset`` (newest first) older than the ``before`` cursor.

    The cursor is the (created_at, id) of the previous page's last row, so the thousandth page
    of millions of rows costs what the first does and new rows never shift what is on screen.
    ``params`` is the page's query without ``before``; the link to the older page adds it.
    """
    rows = queryset.order_by("-created_at", "-id")
    broken = False
    if before:
        cursor = _cursor(before)
        if cursor is None:
            broken = True
        else:
            moment, pk = cursor
            # created_at <= moment is the index range PostgreSQL starts from; the OR alone
            # made it walk the index from the newest row down to the cursor.
            rows = rows.filter(
                Q(created_at__lte=moment),
                Q(created_at__lt=moment) | Q(created_at=moment, id__lt=pk),
            )
    found = list(rows[: PAGE_SIZE + 1])
    page = CursorPage(items=found[:PAGE_SIZE], broken_link=broken)
    if len(found) > PAGE_SIZE:
        last = found[PAGE_SIZE - 1]
        query = params.copy()
        query["before"] = f"{last.created_at.isoformat()}~{last.pk}"
        page.older = query.urlencode()
    return page


class CursorListView(RoleRequiredMixin, View):
    """A newest-first listing of a page filter's rows on cursor pages (see :func:`cursor_page`).

    Subclasses name the filter, the template, the rows to filter and how a row is shown.
    """

    filterset_class: type[django_filters.FilterSet]
    template_name: str

    def get_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def row(self, item: Any, *, masked: bool) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET.copy()
        before = params.pop("before", [""])[-1]
        filterset = self.filterset_class(data=params, queryset=self.get_queryset())
        page = CursorPage(items=[])
        wait = caller_search_wait(request)
        if wait is not None:
            # Viewers' searches by caller are counted, so masked numbers cannot be guessed.
            filterset.is_valid()
            filterset.form.add_error(CALLER_PARAM, throttled_message(wait))
        elif filterset.is_valid():
            page = cursor_page(filterset.qs, params, before)
        masked = not can_see_caller_ids(request.user)
        return render(
            request,
            self.template_name,
            {
                "filter": filterset,
                "rows": [self.row(item, masked=masked) for item in page.items],
                "older": page.older,
                "broken_link": page.broken_link,
                "paged": bool(before),
                "newest": params.urlencode(),
            },
            status=429 if wait is not None else 200,
        )


class BidDetailView(RoleRequiredMixin, View):
    """``/bids/<id>/``: the request and the answer, what the code means, and for a failed
    bid a support request ready to send to CallGrid."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        bid = bid_get(pk)
        if bid is None:
            raise Http404(f"No bid with id {pk}.")
        masked = not can_see_caller_ids(request.user)
        row = bid_row(bid, masked=masked)
        guidance = codes.get(bid.code)
        # A timeout has no code, and a shift needs to know what to do about it all the same.
        outcome_guide = outcome_guidance.get(bid.outcome) if guidance is None else None
        # A support request is for problems: an error code (4000 and up) or a failed bid.
        failed = bid.outcome_class == OutcomeClass.ERROR or bool(guidance and guidance.is_error)
        support = support_request_text(bid) if failed else ""
        if support and masked:
            support = mask_phones_in(support)
        return render(
            request,
            "bidlog/bid_detail.html",
            {
                "bid": row,
                "request_json": json.dumps(row["request"], indent=2, sort_keys=True),
                "guidance": guidance,
                "outcome_guidance": outcome_guide,
                "support": support,
            },
        )


# --- the overview and the reports -------------------------------------------------------------


def _range(request: HttpRequest) -> tuple[ReportRangeForm, dict[str, Any] | None]:
    """The page's range form and, when it is valid, the report's arguments."""
    form = ReportRangeForm(request.GET or {"range": "24h"})
    if not form.is_valid():
        return form, None
    data = form.cleaned_data
    return form, {
        "since": data["since"],
        "until": data["until"],
        "buyer_id": data["buyer"].pk if data["buyer"] else None,
        "source": data["source"] or None,
    }


class OverviewView(RoleRequiredMixin, View):
    """``/``: how bidding goes over a range (default the last 24 hours), what needs attention,
    every buyer with its health, acceptance over time and the outcome breakdown."""

    def get(self, request: HttpRequest) -> HttpResponse:
        form, args = _range(request)
        context: dict[str, Any] = {"form": form, "time_zone": settings.TIME_ZONE}
        if args is not None:
            summary = report_summary(**args)
            bucket = form.cleaned_data["bucket"]
            series = report_timeseries(bucket=bucket, tz=settings.TIME_ZONE, **args)
            over_time = report_codes_over_time(bucket=bucket, tz=settings.TIME_ZONE, **args)
            by_buyer = {row["buyer"]: row for row in summary["buyers"]}
            every_buyer = list(buyer_list())
            health = buyers_health(every_buyer)
            total = sum(summary["by_class"].values()) or 1
            context.update(
                summary=summary,
                volume_chart=volume_chart(series, bucket=bucket, tz=settings.TIME_ZONE),
                codes_chart=codes_chart(over_time, bucket=bucket, tz=settings.TIME_ZONE),
                classes=[
                    {"name": name, "count": count, "share": round(count / total * 100, 1)}
                    for name, count in summary["by_class"].items()
                ],
                buyers=[
                    {
                        "buyer": buyer,
                        "health": health[buyer.pk],
                        "figures": by_buyer.get(buyer.pk),
                    }
                    for buyer in every_buyer
                ],
            )
        context["alerts"] = sorted(
            Alert.objects.filter(status=AlertStatus.OPEN).select_related("buyer"),
            key=lambda alert: (_urgency(alert.priority), -alert.last_seen_at.timestamp()),
        )
        return render(request, "bidlog/overview.html", context)


def _urgency(priority: str) -> int:
    order = codes.PRIORITY_ORDER
    return order.index(priority) if priority in order else len(order)


# The tables of the reports page, each also a CSV download (?export=<name>).
REPORT_TABLES = ("codes", "buyers", "states", "timeseries")

Table = tuple[list[str], list[list[Any]]]


def _report_table(
    name: str, args: dict[str, Any], bucket: str, summary: dict[str, Any] | None = None
) -> Table:
    """One table of the reports page (a header and rows); a CSV download reads only its own."""
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
        form, args = _range(request)
        export = request.GET.get("export", "")
        if export and export not in REPORT_TABLES:
            form.add_error(None, f"export must be one of {', '.join(REPORT_TABLES)}.")
            args = None
        if args is None:
            return render(request, "bidlog/reports.html", {"form": form}, status=200)
        bucket = form.cleaned_data["bucket"]
        if export:
            header, rows = _report_table(export, args, bucket)
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
        tables = {name: _report_table(name, args, bucket, summary) for name in REPORT_TABLES}
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
