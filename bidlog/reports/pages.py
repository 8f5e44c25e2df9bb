"""The bid log pages (SPEC §6): a filtered browser that pages by cursor, with the range
control, and one bid in full (the overview and the reports are in ``report_pages``).

Reads need the ``viewer`` role; viewers see caller IDs masked everywhere, as in the API. The
list pages by a cursor on (created_at, id), like the API, so the 50th page of millions of
rows costs what the first does and new bids never shift what someone is reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views import View

from bidlog.choices import OutcomeClass
from bidlog.filters import MAX_ID, BidLogFilter, parse_iso_datetime
from bidlog.monitoring.support import support_request_text
from bidlog.reports.bid_rows import bid_row
from bidlog.reports.forms import listing_range
from bidlog.reports.reads import serial_reads
from bidlog.selectors import bid_get
from buyers.models import Buyer
from callgrid_portal.bidapi import codes, outcome_guidance
from callgrid_portal.pages import PageFilterMixin, RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids, mask_phones_in
from callgrid_portal.text import whole_number_upto
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
        "outcome": "Outcome (any of)",
        "outcome_class": "Outcome class",
        "code": "CallGrid code",
        "call": "Call ID",
        "campaign": "Campaign",
        "publisher": "Publisher",
    }
    EMPTY_LABELS = {"outcome_class": "Any class"}


def _cursor(value: str) -> tuple[Any, int] | None:
    """``before=<created_at>~<id>``, the last row of the previous page; ``None`` if broken."""
    moment, _, pk_text = value.rpartition("~")
    pk = whole_number_upto(pk_text, MAX_ID)
    if pk is None:
        return None
    try:
        return parse_iso_datetime(moment), pk
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
        # The range control picks days or a quick range; a link's exact times narrow it.
        range_form = listing_range(params)
        ranged = range_form.is_valid()
        filterset = self.filterset_class(data=params, queryset=self.get_queryset())
        page = CursorPage(items=[])
        wait = caller_search_wait(request)
        if wait is not None:
            # Viewers' searches by caller are counted, so masked numbers cannot be guessed.
            filterset.is_valid()
            filterset.form.add_error(CALLER_PARAM, throttled_message(wait))
        elif filterset.is_valid() and ranged:
            with serial_reads():
                page = cursor_page(range_form.narrow(filterset.qs), params, before)
        masked = not can_see_caller_ids(request.user)
        return render(
            request,
            self.template_name,
            {
                "filter": filterset,
                "range_form": range_form,
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
