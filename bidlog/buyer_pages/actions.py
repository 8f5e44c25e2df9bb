"""The buyer pages' actions: status changes (one buyer or several), clone, and test bids.

Every action needs the ``operator`` role and goes through :mod:`buyers.services`. Pausing and
disabling stop calls, so they ask first: without ``confirm=yes`` the answer is a page that
says what will happen, with the button that does it (this works without JavaScript);
``confirm.js`` asks the same question in a dialog and sends ``confirm=yes`` itself.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.forms import Form
from django.forms.utils import pretty_name
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views import View

from bidlog.buyer_pages.status import (
    CONFIRMED_STATUSES,
    STATUS_ACTIONS,
    status_question,
)
from bidlog.buyer_pages.views import TEST_BID_PREFIX, buyer_page
from bidlog.monitoring import testbids
from buyers import services
from buyers.choices import BuyerStatus
from buyers.forms import BuyerBulkStatusForm, BuyerCloneForm, TestBidForm
from buyers.models import Buyer
from callgrid_portal.pages import RoleRequiredMixin
from callgrid_portal.roles import OPERATOR


def confirmed(request: HttpRequest) -> bool:
    """Whether the person has confirmed (the confirm page's button or the dialog)."""
    return request.POST.get("confirm") == "yes"


class BuyerStatusView(RoleRequiredMixin, View):
    """``POST status=active|paused|disabled``: the buyer page's activate, pause and disable
    buttons, recorded in the buyer's history with the operator as author."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        buyer = get_object_or_404(Buyer, pk=pk)
        status = request.POST.get("status", "")
        if status not in BuyerStatus.values:
            messages.error(request, f"Status: choose {', '.join(BuyerStatus.values)}.")
            return redirect("buyers:detail", pk=buyer.pk)
        if status in CONFIRMED_STATUSES and not confirmed(request):
            return _confirm_page(
                request,
                buyers=[buyer],
                status=status,
                action=reverse("buyers:status", args=[buyer.pk]),
                cancel=reverse("buyers:detail", args=[buyer.pk]),
            )
        try:
            buyer = services.buyer_set_status(buyer=buyer, status=status, actor=request.user)
        except ValidationError as exc:
            # A buyer saved before a rule existed can fail validation; say why, change nothing.
            messages.error(request, f"Not changed: {'; '.join(exc.messages)}")
            return redirect("buyers:detail", pk=buyer.pk)
        messages.success(request, f"{buyer.name} is now {buyer.get_status_display().lower()}.")
        return redirect("buyers:detail", pk=buyer.pk)


class BuyerBulkStatusView(RoleRequiredMixin, View):
    """``POST buyers=<id>&buyers=<id>&status=paused|active``: the buyers list's bulk action."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = BuyerBulkStatusForm(request.POST)
        if not form.is_valid():
            for name, errors in form.errors.items():
                label = form.fields[name].label or name.capitalize()
                messages.error(request, f"{label}: {' '.join(map(str, errors))}")
            return redirect("buyers:list")
        buyers = list(form.cleaned_data["buyers"])
        status = form.cleaned_data["status"]
        if status in CONFIRMED_STATUSES and not confirmed(request):
            return _confirm_page(
                request,
                buyers=buyers,
                status=status,
                action=reverse("buyers:bulk_status"),
                cancel=reverse("buyers:list"),
            )
        changed, refused = services.buyers_set_status(
            buyers=buyers, status=status, actor=request.user
        )
        done = BuyerStatus(status).label.lower()
        if changed:
            names = ", ".join(buyer.name for buyer in changed)
            messages.success(request, f"Now {done}: {names}.")
        else:
            messages.info(request, f"Nothing changed: every buyer chosen was already {done}.")
        for name, reasons in refused.items():
            messages.error(request, f"{name} not changed: {'; '.join(reasons)}")
        return redirect("buyers:list")


def _confirm_page(
    request: HttpRequest, *, buyers: list[Buyer], status: str, action: str, cancel: str
) -> HttpResponse:
    """The page that asks before a change that stops calls, with the button that makes it."""
    return render(
        request,
        "buyers/buyer_status_confirm.html",
        {
            "buyers": buyers,
            "status": status,
            "question": status_question([buyer.name for buyer in buyers], status),
            "button": STATUS_ACTIONS[status],
            "action": action,
            "cancel": cancel,
        },
    )


class BuyerCloneView(RoleRequiredMixin, View):
    """``/buyers/<id>/clone/``: a copy of a buyer under a new name and Grid ID, paused."""

    required_role = OPERATOR

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        source = get_object_or_404(Buyer, pk=pk)
        form = BuyerCloneForm(initial={"name": f"{source.name} (copy)"[:100]})
        return self._page(request, source, form)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        source = get_object_or_404(Buyer, pk=pk)
        form = BuyerCloneForm(request.POST)
        if form.is_valid():
            try:
                buyer = services.buyer_clone(source=source, actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"Created {buyer.name} as a copy of {source.name}. It is paused: check its "
                    "settings, then activate it.",
                )
                return redirect("buyers:detail", pk=buyer.pk)
        return self._page(request, source, form, status=400)

    def _page(
        self, request: HttpRequest, source: Buyer, form: Form, status: int = 200
    ) -> HttpResponse:
        return render(
            request, "buyers/buyer_clone.html", {"source": source, "form": form}, status=status
        )


def _add_errors(form: Form, exc: ValidationError) -> None:
    """Put a service's errors on the form: on their field when the form has it, otherwise
    above the form naming the copied setting (a rule tightened since the source was saved)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        if name in form.fields:
            form.add_error(name, errors)
        else:
            label = pretty_name(name) if name != "__all__" else ""
            for error in errors:
                text = " ".join(error.messages)
                form.add_error(None, f"{label}: {text}" if label else text)


class BuyerTestBidView(RoleRequiredMixin, View):
    """``POST``: queue a test bid, then show the buyer's page, which waits for the answer.

    A worker sends it (:mod:`bidlog.monitoring.testbids`); the page polls the bid's API entry
    and shows the answer once it has arrived. A bad caller or state is shown next to its
    field on the buyer's page, with what was typed kept (status 400).
    """

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        buyer = get_object_or_404(Buyer, pk=pk)
        page = reverse("buyers:detail", args=[buyer.pk])
        form = TestBidForm(request.POST, prefix=TEST_BID_PREFIX)
        if not form.is_valid():
            return buyer_page(request, buyer, test_bid_form=form, status=400)
        try:
            bid = testbids.test_bid_queue(
                buyer=buyer,
                caller_id=form.cleaned_data["caller_id"] or testbids.caller_id_for_test_bids(buyer),
                state_code=form.cleaned_data["state_code"],
                actor=request.user,
            )
        except testbids.BrokerUnavailable as exc:
            messages.error(request, str(exc))
            return redirect(f"{page}#test-bid")
        return redirect(f"{page}?test_bid={bid.pk}#test-bid")
