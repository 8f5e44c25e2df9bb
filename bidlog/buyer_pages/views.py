"""The buyer pages (SPEC §6): list, detail with the eligibility check, create and edit.

Reads need the ``viewer`` role and changes ``operator``. Forms are the admin's
(:class:`~buyers.forms.BuyerForm`) and saves go through :mod:`buyers.services`, so a page
refuses the same input with the same message as the admin and the API, and every change is
recorded with its author.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.forms.utils import pretty_name
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.generic import DetailView, FormView, ListView

from bidlog.buyer_pages.figures import buyer_figures
from bidlog.buyer_pages.status import CONFIRMED_STATUSES, STATUS_ACTIONS, status_question
from bidlog.choices import AlertStatus, Source
from bidlog.filters import MAX_ID
from bidlog.models import BidLog
from bidlog.monitoring.alerts import alert_list
from bidlog.monitoring.health import buyer_health, buyers_health
from bidlog.reports.bid_rows import bid_row
from bidlog.reports.charts import (
    buyers_hourly_bids,
)
from bidlog.reports.reads import serial_reads
from bidlog.routing.blocks import show_utc
from bidlog.routing.eligibility import Eligibility, eligibility_check
from bidlog.selectors import bid_list
from buyers import services
from buyers.choices import BuyerStatus
from buyers.filters import BuyerFilter
from buyers.forms import BULK_STATUSES, BuyerForm, EligibilityForm, TestBidForm
from buyers.hours import hours_summary
from buyers.models import Buyer
from buyers.selectors import buyer_changes, buyer_list
from buyers.validators import timezone_names
from callgrid_portal import charts
from callgrid_portal.pages import PageFilterMixin, RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids
from callgrid_portal.roles import OPERATOR, has_role
from callgrid_portal.text import whole_number_upto
from callgrid_portal.throttles import CALLER_PARAM, caller_search_wait, throttled_message

RECENT_BIDS = 20
ALERT_HISTORY = 10
CHANGE_HISTORY = 10
HEALTH_HISTORY = 10
# The test bid form's field names, apart from the eligibility form's on the same page.
TEST_BID_PREFIX = "test"


class BuyerPageFilter(PageFilterMixin, BuyerFilter):
    """The API's buyer filters the list page offers: search, status and vertical."""

    HIDDEN = ("caller_id_format", "grid_id")
    LABELS = {"q": "Name or Grid ID"}
    EMPTY_LABELS = {"status": "Any status", "vertical": "Any vertical"}


class BuyerListView(RoleRequiredMixin, ListView):
    """Every buyer in waterfall order, with its health badge; search by name or Grid ID and
    narrow by status and vertical."""

    template_name = "buyers/buyer_list.html"
    context_object_name = "buyers"

    def get_queryset(self) -> Any:
        self.filterset = BuyerPageFilter(data=self.request.GET, queryset=buyer_list())
        return self.filterset.qs if self.filterset.is_valid() else Buyer.objects.none()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        buyers = list(context["buyers"])
        health = buyers_health(buyers)
        # Every row's sparkline from one read for the whole page, never one per row.
        hourly = buyers_hourly_bids(buyer_ids=[b.pk for b in buyers], until=timezone.now())
        can_edit = has_role(self.request.user, OPERATOR)
        context["rows"] = []
        for buyer in buyers:
            sparkline = _sparkline(buyer, hourly[buyer.pk])
            html = _buyer_row_html(buyer, health[buyer.pk], sparkline, can_edit=can_edit)
            context["rows"].append((buyer, health[buyer.pk], sparkline, html))
        context["can_edit"] = can_edit
        context["bulk_actions"] = BULK_STATUSES
        context["filter"] = self.filterset
        context["filtered"] = any(self.request.GET.get(name) for name in self.filterset.filters)
        return context


class BuyerDetailView(RoleRequiredMixin, DetailView):
    """One buyer: its settings, its recent bids, and whether a caller could be sent to it now.

    The eligibility form is a GET form, so a check can be bookmarked or pasted to a colleague.
    """

    model = Buyer
    template_name = "buyers/buyer_detail.html"
    context_object_name = "buyer"
    # Set when this request's eligibility check was refused by the caller-search throttle.
    throttled = False

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with serial_reads():
            response = super().get(request, *args, **kwargs)
        if self.throttled:
            response.status_code = 429
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        buyer: Buyer = context["buyer"]
        user = self.request.user
        form = EligibilityForm(self.request.GET if "caller_id" in self.request.GET else None)
        wait = caller_search_wait(self.request) if form.is_bound else None
        if wait is not None:
            # Viewers' checks by caller are counted, so masked numbers cannot be guessed.
            form.is_valid()
            form.add_error(CALLER_PARAM, throttled_message(wait))
            self.throttled = True
        elif form.is_bound and form.is_valid():
            context["eligibility"] = _eligibility_view(
                eligibility_check(
                    buyers=[buyer],
                    caller_id=form.cleaned_data["caller_id"],
                    state_code=form.cleaned_data["state_code"],
                    now=timezone.now(),
                    include_limits=True,
                )[0]
            )
        masked = not can_see_caller_ids(user)
        alerts = sorted(
            alert_list(buyer_id=buyer.pk)[:ALERT_HISTORY],
            key=lambda alert: alert.status != AlertStatus.OPEN,
        )
        context.update(
            eligibility_form=form,
            test_bid_form=kwargs.get("test_bid_form") or TestBidForm(prefix=TEST_BID_PREFIX),
            test_bid=_test_bid(buyer, self.request.GET.get("test_bid", ""), masked=masked),
            bids=_recent_bids(buyer, masked=masked),
            health_checks=[
                bid_row(bid, masked=masked)
                for bid in bid_list(filters={"buyer": buyer.pk, "source": Source.HEALTH})[
                    :HEALTH_HISTORY
                ]
            ],
            health=buyer_health(buyer),
            figures=buyer_figures(buyer, now=timezone.now()),
            # Open first, then those resolved in the last week, newest first in each.
            alerts=alerts,
            open_alerts=[alert for alert in alerts if alert.status == AlertStatus.OPEN],
            operating_hours=hours_summary(buyer.operating_hours),
            changes=[
                {**change, "fields": [_field_change(*field) for field in change["fields"]]}
                for change in buyer_changes(buyer, limit=CHANGE_HISTORY)
            ],
            can_edit=has_role(user, OPERATOR),
            # Each button: its status, its words, and the question it asks first (if any).
            status_changes=[
                (
                    value,
                    STATUS_ACTIONS[value],
                    status_question([buyer.name], value) if value in CONFIRMED_STATUSES else "",
                )
                for value in BuyerStatus.values
                if value != buyer.status
            ],
        )
        return context


def buyer_page(
    request: HttpRequest, buyer: Buyer, *, test_bid_form: TestBidForm, status: int
) -> HttpResponse:
    """The buyer's page with ``test_bid_form`` as it was sent (its errors next to its fields
    and what was typed kept), for an action that answers with the page itself."""
    view = BuyerDetailView()
    view.setup(request, pk=buyer.pk)
    view.object = buyer
    context = view.get_context_data(object=buyer, test_bid_form=test_bid_form)
    return view.render_to_response(context, status=status)


def _buyer_row_html(buyer: Buyer, health: str, sparkline: str, *, can_edit: bool) -> SafeString:
    """One row of the buyers list, ``<tr>...</tr>``, each value written as ``{{ value }}``
    writes it (localized, escaped). Written here rather than in the template: 200 rows of a
    dozen variables, a ``url`` tag and localized numbers were over half the page's time."""
    shown = formats.localize
    pick = (
        format_html(
            '<td><input type="checkbox" name="buyers" value="{}" id="pick-{}" '
            'aria-label="Select {}"></td>',
            shown(buyer.pk),
            shown(buyer.pk),
            buyer.name,
        )
        if can_edit
        else ""
    )
    window = (
        format_html(", {}-day duplicate window", shown(buyer.duplicate_window_days))
        if buyer.duplicate_window_days
        else ""
    )
    return format_html(
        '<tr>{}<td>{}</td><td><a href="{}">{}</a></td><td><code>{}</code></td>'
        '<td><span class="badge {}">{}</span></td><td><span class="badge {}">{}</span></td>'
        "<td>{}</td><td>${}</td><td>{} at once, {}/min{}</td></tr>",
        pick,
        shown(buyer.priority),
        reverse("buyers:detail", args=[buyer.pk]),
        buyer.name,
        buyer.grid_id,
        buyer.status,
        buyer.get_status_display(),
        health,
        health,
        sparkline,
        shown(buyer.min_bid),
        shown(buyer.max_concurrency),
        shown(buyer.rate_limit_per_minute),
        window,
    )


def _sparkline(buyer: Buyer, hourly: list[int]) -> str:
    total = sum(hourly)
    return charts.sparkline(
        hourly,
        label=f"{buyer.name}: {charts.fmt_count(total)} bids in the last {len(hourly)} hours, "
        f"at most {charts.fmt_count(max(hourly, default=0))} in one hour",
    )


def _field_change(name: str, old: Any, new: Any) -> tuple[str, str, str]:
    """A changed field as the page shows it: the form's label, and both values in words."""
    field = Buyer._meta.get_field(name)
    form_field = BuyerForm.base_fields.get(name)
    # As the form's page says it (a declared field without a label is named after itself).
    label = (form_field.label if form_field else None) or pretty_name(name)
    return (str(label), _shown(field, old), _shown(field, new))


def _shown(field: Any, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value in (None, "", [], {}):
        return "always open" if field.name == "operating_hours" else "none"
    if field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if field.name == "operating_hours":
        return hours_summary(value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _recent_bids(buyer: Buyer, *, masked: bool) -> list[dict[str, Any]]:
    return [
        bid_row(bid, masked=masked) for bid in bid_list(filters={"buyer": buyer.pk})[:RECENT_BIDS]
    ]


def _test_bid(buyer: Buyer, wanted: str, *, masked: bool) -> dict[str, Any] | None:
    """The test bid ``?test_bid=`` names, if it is one of this buyer's; anything else is
    ignored (the page is still the buyer's page)."""
    bid_id = whole_number_upto(wanted, MAX_ID)
    if bid_id is None:
        return None
    bid = (
        BidLog.objects.select_related("buyer")
        .filter(pk=bid_id, buyer=buyer, source=Source.TEST)
        .first()
    )
    return bid_row(bid, masked=masked) if bid is not None else None


def _eligibility_view(answer: Eligibility) -> dict[str, Any]:
    """What the page shows of one eligibility answer, times in UTC like the bid log."""
    reasons = [block.reason for block in answer.blocks]
    lifts = [block.until for block in answer.blocks if block.until is not None]
    # When every block lifts by itself, the caller can be sent from the latest of them.
    lifts_alone = bool(lifts) and len(lifts) == len(answer.blocks)
    return {
        "eligible": answer.eligible,
        "reasons": reasons,
        "eligible_from": show_utc(max(lifts)) if lifts_alone else None,
    }


class _BuyerFormView(RoleRequiredMixin, FormView):
    """Create or edit through :class:`BuyerForm`, saving with the user as the author."""

    required_role = OPERATOR
    form_class = BuyerForm
    template_name = "buyers/buyer_form.html"

    def get_buyer(self) -> Buyer | None:
        """The buyer being edited; ``None`` for a new one."""
        return None

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["instance"] = self.get_buyer()
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            buyer=self.get_buyer(), timezones=timezone_names(), **kwargs
        )

    def form_valid(self, form: BuyerForm) -> HttpResponse:
        # The form has run the model's validation; the service saves and records the author.
        try:
            buyer = services.buyer_save(buyer=form.instance, actor=self.request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Saved {buyer.name}.")
        return redirect("buyers:detail", pk=buyer.pk)


class BuyerCreateView(_BuyerFormView):
    """A new buyer (it starts paused unless the person chooses active: see the form)."""


class BuyerUpdateView(_BuyerFormView):
    """Change a buyer's settings."""

    _buyer: Buyer | None = None

    def get_buyer(self) -> Buyer:
        # Looked up once the role is checked, so a visitor learns nothing of which ids exist.
        if self._buyer is None:
            self._buyer = get_object_or_404(Buyer, pk=self.kwargs["pk"])
        return self._buyer
