"""The call pages: every routing decision, the bids behind it, and its paid-out mark.

``/calls/`` lists decisions newest first with the API's filters (``GET /api/v1/calls/``);
``/calls/<id>/`` shows one with every attempt and skip in the order the router made them.
Operators may mark a routed call not paid out (or paid out again), which frees the caller for
that buyer's duplicate window exactly as ``PATCH /api/v1/calls/{id}/`` does.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from bidlog.models import Call
from bidlog.reports.bid_rows import bid_row
from bidlog.reports.pages import CursorListView, buyer_choice_filter
from bidlog.routing.errors import RouteError
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.serializers import CallFilter
from bidlog.selectors import call_bids, call_list
from callgrid_portal.pages import PageFilterMixin, RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids, mask_phone, mask_phones_in
from callgrid_portal.roles import OPERATOR, has_role

_YES_NO = [("", "Any"), ("true", "Yes"), ("false", "No")]


class CallPageFilter(PageFilterMixin, CallFilter):
    """The API's call filters, with the winner picked by name instead of typed as an id."""

    winner = buyer_choice_filter("winner")

    LABELS = {
        "routed": "Routed",
        "paid_out": "Paid out",
        "winner": "Winner",
        "grid_id": "Winner's Grid ID",
        "strategy": "Strategy",
        "campaign": "Campaign",
        "publisher": "Publisher",
    }
    EMPTY_LABELS = {"strategy": "Any strategy"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("routed", "paid_out"):
            self.filters[name].extra["widget"] = forms.Select(choices=_YES_NO)


def call_row(call: Call, *, masked: bool) -> dict[str, Any]:
    """One call as the pages show it; ``masked`` hides every phone-like value: the caller's
    number, the destination and any number in the extra parameters, whatever their key."""
    shown = mask_phones_in(call.params) if masked else call.params
    params = ", ".join(f"{key}={value}" for key, value in sorted(shown.items()))
    return {
        "id": call.pk,
        "created_at": call.created_at,
        "caller_id": mask_phone(call.caller_id) if masked else call.caller_id,
        "state_code": call.state_code,
        "strategy": call.get_strategy_display(),
        "source": call.get_source_display(),
        "routed": call.routed,
        "winner_id": call.winner_id,
        "winner_name": call.winner.name if call.winner else "",
        "bid_amount": call.bid_amount,
        "destination": mask_phone(call.destination) if masked else call.destination,
        "duration_ms": call.duration_ms,
        # Only a sale can be paid out: an unrouted call has no paid-out mark to show.
        "paid_out": call.paid_out if call.routed else None,
        "params": params,
        "campaign": call.campaign,
        "publisher": call.publisher,
    }


class CallListView(CursorListView):
    """``/calls/``: routing decisions, filtered like the API's, newest first."""

    filterset_class = CallPageFilter
    template_name = "bidlog/call_list.html"

    def get_queryset(self) -> QuerySet[Call]:
        return call_list()

    def row(self, item: Call, *, masked: bool) -> dict[str, Any]:
        return call_row(item, masked=masked)


class CallDetailView(RoleRequiredMixin, View):
    """``/calls/<id>/``: the decision and every bid behind it, in the order they were made."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        call = call_list().filter(pk=pk).first()
        if call is None:
            raise Http404(f"No call with id {pk}.")
        masked = not can_see_caller_ids(request.user)
        bids = call_bids(call)
        return render(
            request,
            "bidlog/call_detail.html",
            {
                "call": call_row(call, masked=masked),
                "bids": [bid_row(bid, masked=masked) for bid in bids],
                "can_edit": has_role(request.user, OPERATOR),
            },
        )


class CallPaidOutView(RoleRequiredMixin, View):
    """``POST paid_out=true|false``: mark a routed call paid out, or not (frees the caller)."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        call = get_object_or_404(Call, pk=pk)
        wanted = request.POST.get("paid_out", "")
        if wanted not in ("true", "false"):
            messages.error(request, "Paid out: choose true or false.")
            return redirect("calls:detail", pk=call.pk)
        try:
            call = call_paid_out_set(call=call, paid_out=wanted == "true")
        except RouteError as exc:
            messages.error(request, f"Paid out: {exc.message}")
            return redirect("calls:detail", pk=call.pk)
        if call.paid_out:
            messages.success(request, f"Call {call.pk} is paid out again.")
        else:
            messages.success(
                request,
                f"Call {call.pk} is marked not paid out: its caller may be sent to this buyer "
                "again.",
            )
        return redirect("calls:detail", pk=call.pk)
