"""The bids list for investigation (issue 20, item 7): filters, the range control every
page with a time range shares (quick ranges and days, :class:`~bidlog.reports.forms.RangeForm`)
with exact times that narrow it, a count, sorted columns, a CSV of the current filter and
filters saved per person.

Fast on millions of rows: newest first pages by cursor on the (created_at, id) index like the
API; any other order sorts one bounded range only (the range picked, at most
:data:`SORT_MAX_DAYS` days, or the last 24 hours), and within it the newest
:data:`SORT_WINDOW` rows at most; the count stops at :data:`COUNT_CAP` and a CSV at
:data:`CSV_MAX_ROWS`, so no request reads the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import F, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from bidlog.models import BidLog
from bidlog.reports.bid_rows import bid_row
from bidlog.reports.forms import RangeForm, listing_range
from bidlog.reports.pages import PAGE_SIZE, BidPageFilter, CursorPage, cursor_page
from bidlog.reports.reads import serial_reads
from bidlog.reports.saved_filters import (
    MAX_NAME,
    MAX_QUERY,
    filter_query,
    saved_filter_delete,
    saved_filter_list,
    saved_filter_save,
)
from bidlog.selectors import with_call_winner
from buyers.models import Buyer
from callgrid_portal import charts
from callgrid_portal.csvexport import csv_write
from callgrid_portal.pages import RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids
from callgrid_portal.text import whole_number_upto
from callgrid_portal.throttles import CALLER_PARAM, caller_search_wait, throttled_message

# The orders people may pick (a whitelist: the value never reaches SQL itself). Newest first
# is the default and the only one paged by cursor.
NEWEST = "-created_at"
SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    NEWEST: ("Newest first", ("-created_at", "-id")),
    "created_at": ("Oldest first", ("created_at", "id")),
    "-duration_ms": ("Slowest first", ("-duration_ms", "-id")),
    "duration_ms": ("Fastest first", ("duration_ms", "id")),
    "-bid_amount": ("Highest bid first", (F("bid_amount").desc(nulls_last=True), "-id")),
    "bid_amount": ("Lowest bid first", (F("bid_amount").asc(nulls_last=True), "id")),
    "buyer": ("Buyer A-Z", ("buyer__name", "-created_at", "-id")),
    "outcome": ("Outcome A-Z", ("outcome", "-created_at", "-id")),
    "code": ("Code", (F("code").asc(nulls_last=True), "-created_at", "-id")),
}
# The columns whose header sorts, and the two orders a click on each switches between.
COLUMN_SORTS = {
    "when": (NEWEST, "created_at"),
    "buyer": ("buyer", "buyer"),
    "outcome": ("outcome", "outcome"),
    "code": ("code", "code"),
    "bid": ("-bid_amount", "bid_amount"),
    "time": ("-duration_ms", "duration_ms"),
}
SORT_MAX_DAYS = 7
SORT_MAX_SPAN = timedelta(days=SORT_MAX_DAYS, hours=1)
SORT_DEFAULT_RANGE = timedelta(hours=24)
SORT_MAX_PAGES = 20
COUNT_CAP = 10_000
# The most rows a sort other than newest first reads (see _sorted).
SORT_WINDOW = 5_000
CSV_MAX_ROWS = 10_000
# The CSV's columns: the page's row keys (``grid_id`` from the buyer).
CSV_COLUMNS = (
    "id",
    "created_at",
    "buyer_name",
    "grid_id",
    "source",
    "caller_id",
    "state_code",
    "outcome",
    "code",
    "http_status",
    "bid_amount",
    "duration_ms",
    "message",
    "error",
    "call_id",
)
# The query parameters that are not filters: a page's place, and the CSV switch.
NOT_FILTERS = ("before", "page", "export")


def legacy_days_query(query: QueryDict) -> str | None:
    """The list's query with the day pickers it had before the range control (``day_from``,
    ``day_to``: UTC days, the last one included) as exact times; ``None`` without them.

    Saved filters and bookmarks still carry them; as ``since`` and ``until`` they keep
    meaning the same bids (a bad day is then named on its exact time).
    """
    if "day_from" not in query and "day_to" not in query:
        return None
    params = query.copy()
    for old, new in (("day_from", "since"), ("day_to", "until")):
        value = params.pop(old, [""])[-1]
        if value and not params.get(new):
            params[new] = _day_after(value) if old == "day_to" else value
    return params.urlencode()


def _day_after(text: str) -> str:
    """``2026-12-01`` -> ``2026-12-02`` (``until`` excludes it); other text as it is."""
    try:
        return (date.fromisoformat(text) + timedelta(days=1)).isoformat()
    except (ValueError, OverflowError):
        return text


class BidListFilter(BidPageFilter):
    """The API's bid filters with buyers by name, plus the order (the page's range control
    picks the days)."""

    sort = django_filters.ChoiceFilter(
        choices=[(key, label) for key, (label, _order) in SORTS.items()],
        method="filter_sort",
        label="Order",
        empty_label="Newest first",
    )

    def filter_sort(self, queryset: QuerySet[BidLog], name: str, value: str) -> Any:
        return queryset  # the view orders the rows; the filter only checks the value

    def has_times(self) -> bool:
        data = self.form.cleaned_data
        return any(data.get(name) for name in ("since", "until"))


def sort_fits_range(filterset: BidListFilter, range_form: RangeForm) -> bool:
    """Whether the order fits the range picked; if not, the error is on the order's field.

    Any order but newest first sorts every bid of the range, so the range control's range
    may span :data:`SORT_MAX_DAYS` days at most (an hour more for a week over a change of
    the clocks). Call it with both forms valid.
    """
    sort = filterset.form.cleaned_data.get("sort") or NEWEST
    since, until = range_form.cleaned_data["since"], range_form.cleaned_data["until"]
    if sort == NEWEST or since is None or until - since <= SORT_MAX_SPAN:
        return True
    filterset.form.add_error(
        "sort",
        f"{SORTS[sort][0]} sorts every bid of the range: pick at most {SORT_MAX_DAYS} days, "
        "or sort newest first.",
    )
    return False


@dataclass
class Listing:
    """What the page shows of one valid filter: its rows, the count and the links."""

    page: CursorPage
    count: int
    sort: str
    note: str = ""
    page_number: int = 1
    more_pages: bool = False


# Of a row's buyer the list shows the name, and the CSV the grid ID too; its other columns
# (three of them JSON) were read and converted for every row of a 10,000-row CSV.
_BUYER_SHOWN = ("id", "name", "grid_id")
_BUYER_HIDDEN = tuple(
    f"buyer__{field.name}"
    for field in Buyer._meta.get_fields()
    if field.concrete and field.name not in _BUYER_SHOWN
)


def _rows(queryset: QuerySet[BidLog], *, export: bool = False) -> QuerySet[BidLog]:
    """The bids as rows show them. A page joins each row's buyer; an export of thousands of
    rows reads each buyer once (a prefetch), not one buyer object per row."""
    if export:
        buyers = Buyer.objects.only(*_BUYER_SHOWN)
        return with_call_winner(queryset.prefetch_related(Prefetch("buyer", queryset=buyers)))
    return with_call_winner(queryset.select_related("buyer").defer(*_BUYER_HIDDEN))


def _count(queryset: QuerySet[BidLog]) -> int:
    """Matching rows, counted up to ``COUNT_CAP + 1`` (a LIMIT in a subquery)."""
    return queryset.order_by()[: COUNT_CAP + 1].count()


def _page_number(text: str) -> int | None:
    number = whole_number_upto(text, SORT_MAX_PAGES)
    return number if number else None  # pages count from 1


def _sorted(queryset: QuerySet[BidLog], sort: str, *, export: bool = False) -> QuerySet[BidLog]:
    """The newest ``SORT_WINDOW`` rows of ``queryset`` in the order ``sort``.

    Sorting a whole day of a busy log by response time read every row of the day: 477 ms
    p50 for 167,000 rows of 5 million, and 3.4 s for 7 days (benchmarks/reports.py). The
    newest rows come off the (created_at, id) or (buyer, created_at, id) index, so the sort
    only ever sees ``SORT_WINDOW`` of them, and the page says so when there were more. Each
    one is a heap read (one buyer's rows lie apart), which is what bounds the window.
    """
    window = queryset.order_by("-created_at", "-id").values("id")[:SORT_WINDOW]
    return _rows(BidLog.objects.filter(id__in=window), export=export).order_by(*SORTS[sort][1])


@dataclass(frozen=True)
class Matching:
    """The bids a valid filter and range match, and the order asked for them."""

    queryset: QuerySet[BidLog]
    sort: str
    note: str = ""


def bids_matching(filterset: BidListFilter, range_form: RangeForm) -> Matching:
    """The bids of a valid ``filterset`` inside the range picked; an order other than newest
    first without any range sorts the last 24 hours only, and says so."""
    sort = filterset.form.cleaned_data.get("sort") or NEWEST
    picked = range_form.cleaned_data
    queryset = filterset.calls_bounded(
        range_form.narrow(filterset.qs), picked["since"], picked["until"]
    )
    ranged = picked["since"] is not None or filterset.has_times()
    if sort == NEWEST or ranged:
        return Matching(queryset, sort)
    return Matching(
        queryset.filter(created_at__gte=timezone.now() - SORT_DEFAULT_RANGE),
        sort,
        f"{SORTS[sort][0]}: the last 24 hours. Pick a range to sort another.",
    )


def bid_listing(matching: Matching, params: QueryDict, before: str, page: int) -> Listing:
    """The rows, count and paging of the bids matched (see the module's docstring)."""
    queryset, sort, note = matching.queryset, matching.sort, matching.note
    count = _count(queryset)
    if sort == NEWEST:
        return Listing(page=cursor_page(_rows(queryset), params, before), count=count, sort=sort)
    if count > SORT_WINDOW:
        note = (
            f"{note} Sorted among the newest {charts.fmt_count(SORT_WINDOW)} of them; narrow the "
            "filters or the days to sort every one."
        ).strip()
    offset = (page - 1) * PAGE_SIZE
    found = list(_sorted(queryset, sort)[offset : offset + PAGE_SIZE + 1])
    return Listing(
        page=CursorPage(items=found[:PAGE_SIZE]),
        count=count,
        sort=sort,
        note=note,
        page_number=page,
        more_pages=len(found) > PAGE_SIZE and page < SORT_MAX_PAGES,
    )


def _csv(matching: Matching, *, masked: bool) -> HttpResponse:
    """The current filter's bids as CSV, in the page's order, at most ``CSV_MAX_ROWS``."""
    if matching.sort == NEWEST:
        bids = _rows(matching.queryset, export=True).order_by(*SORTS[NEWEST][1])[:CSV_MAX_ROWS]
    else:
        bids = _sorted(matching.queryset, matching.sort, export=True)
    rows = (
        [bid.buyer.grid_id if key == "grid_id" else row[key] for key in CSV_COLUMNS]
        for bid in bids.iterator(chunk_size=2000)
        for row in [bid_row(bid, masked=masked)]
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%dT%H%M")
    response["Content-Disposition"] = f'attachment; filename="callgrid-bids-{stamp}.csv"'
    csv_write(response, [list(CSV_COLUMNS), *rows], masked=masked)
    return response


def _sort_links(params: QueryDict, sort: str) -> dict[str, dict[str, str]]:
    """Each sortable column's link (the other order when it is the current one) and its
    ``aria-sort`` value."""
    links = {}
    for column, (first, second) in COLUMN_SORTS.items():
        current = sort in (first, second)
        wanted = second if sort == first and first != second else first
        query = params.copy()
        for name in NOT_FILTERS:
            query.pop(name, None)
        query["sort"] = wanted
        direction = "descending" if sort.startswith("-") else "ascending"
        links[column] = {
            "query": query.urlencode(),
            "aria_sort": direction if current else "",
        }
    return links


class BidListView(RoleRequiredMixin, View):
    """``/bids/``: every bid the filters match, with a count, sortable columns, a CSV and
    the person's saved filters."""

    def get(self, request: HttpRequest) -> HttpResponse:
        legacy = legacy_days_query(request.GET)
        if legacy is not None:
            return redirect(f"{reverse('bids:list')}?{legacy}")
        params = request.GET.copy()
        before = params.pop("before", [""])[-1]
        page_text = params.pop("page", ["1"])[-1]
        export = params.pop("export", [""])[-1]
        range_form = listing_range(params)
        filterset = BidListFilter(data=params, queryset=BidLog.objects.all())
        masked = not can_see_caller_ids(request.user)
        wait = caller_search_wait(request)
        listing = None
        if wait is not None:
            # Viewers' searches by caller are counted, so masked numbers cannot be guessed.
            filterset.is_valid()
            filterset.form.add_error(CALLER_PARAM, throttled_message(wait))
        elif (
            range_form.is_valid()
            and filterset.is_valid()
            and sort_fits_range(filterset, range_form)
        ):
            matching = bids_matching(filterset, range_form)
            page = _page_number(page_text)
            if page is None:
                filterset.form.add_error(None, f"page: choose a page from 1 to {SORT_MAX_PAGES}.")
            elif export not in ("", "csv"):
                filterset.form.add_error(None, "export: the only export is csv.")
            elif export == "csv":
                return _csv(matching, masked=masked)
            else:
                with serial_reads():
                    listing = bid_listing(matching, params, before, page)
        context = _context(request, filterset, params, listing, masked=masked)
        return render(
            request,
            "bidlog/bid_list.html",
            {**context, "range_form": range_form},
            status=429 if wait is not None else 200,
        )


def _context(
    request: HttpRequest,
    filterset: BidListFilter,
    params: QueryDict,
    listing: Listing | None,
    *,
    masked: bool,
) -> dict[str, Any]:
    sort = listing.sort if listing else NEWEST
    query = params.urlencode()
    csv_query = params.copy()
    csv_query["export"] = "csv"
    pages: dict[str, str] = {}
    if listing is not None and listing.sort != NEWEST:
        wanted = {"previous": listing.page_number - 1 if listing.page_number > 1 else 0}
        wanted["next"] = listing.page_number + 1 if listing.more_pages else 0
        for name, number in wanted.items():
            if number:
                link = params.copy()
                link["page"] = str(number)
                pages[name] = link.urlencode()
    count = listing.count if listing else None
    return {
        "filter": filterset,
        "rows": [bid_row(item, masked=masked) for item in listing.page.items] if listing else [],
        "listing": listing,
        "count_text": (
            None
            if count is None
            else f"more than {charts.fmt_count(COUNT_CAP)}"
            if count > COUNT_CAP
            else charts.fmt_count(count)
        ),
        "count": count,
        "older": listing.page.older if listing else "",
        "broken_link": listing.page.broken_link if listing else False,
        "paged": bool(request.GET.get("before")),
        "newest": query,
        "query": query,
        "csv_query": csv_query.urlencode(),
        "csv_max_rows": charts.fmt_count(CSV_MAX_ROWS),
        "sort_links": _sort_links(params, sort),
        "sort_label": SORTS[sort][0],
        "pages": pages,
        "saved_filters": saved_filter_list(user=request.user),
        "save_form": SavedFilterForm(initial={"query": query}),
    }


class SavedFilterForm(forms.Form):
    """Save the list's current filter under a name."""

    name = forms.CharField(
        label="Save these filters as",
        max_length=MAX_NAME,
        error_messages={"required": "Give the filter a name."},
    )
    query = forms.CharField(required=False, max_length=MAX_QUERY * 2, widget=forms.HiddenInput)


class SavedFilterSaveView(RoleRequiredMixin, View):
    """``POST name=...&query=...``: save the bids list's filter for the person."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SavedFilterForm(request.POST)
        query = request.POST.get("query", "")[: MAX_QUERY * 2]
        if form.is_valid():
            try:
                saved = saved_filter_save(
                    user=request.user, name=form.cleaned_data["name"], query=query
                )
            except ValidationError as exc:
                messages.error(request, f"Not saved: {' '.join(exc.messages)}")
            else:
                messages.success(request, f"Saved the filters as “{saved.name}”.")
                return redirect(f"{reverse('bids:list')}?{saved.query}")
        else:
            for name, errors in form.errors.items():
                messages.error(request, f"{form.fields[name].label}: {' '.join(map(str, errors))}")
        return redirect(f"{reverse('bids:list')}?{filter_query(query)}")


class SavedFilterDeleteView(RoleRequiredMixin, View):
    """``POST``: delete one of the person's saved filters."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        if saved_filter_delete(user=request.user, saved_id=pk):
            messages.success(request, "Deleted the saved filter.")
        else:
            messages.error(request, "No such saved filter of yours.")
        return redirect("bids:list")
