"""The alert centre (``/alerts/``): open and resolved alerts, acknowledge, mute; the header count.

Everyone with a role reads it; acknowledging and muting need the ``operator`` role, as in the
API. Forms post with CSRF and redirect back; a bad choice or an unknown alert is said in a
message naming the field, never a 500.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View

from bidlog.choices import AlertStatus
from bidlog.filters import parse_iso_datetime
from bidlog.models import Alert
from bidlog.monitoring import triage
from bidlog.monitoring.alerts import alert_list
from buyers.models import Buyer
from callgrid_portal.bidapi.codes import Priority
from callgrid_portal.pages import RoleRequiredMixin
from callgrid_portal.roles import OPERATOR, VIEWER, has_role

# The bids behind an alert: its rule reads up to the latest 20 answers, which came before it
# opened; an hour before is enough for any rule at the rates that open one.
EVIDENCE_BEFORE = timedelta(hours=1)
DURATION_CHOICES = [
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("24h", "24 hours"),
    ("custom", "Until a time (below)"),
]
TABS = (("open", "Open"), ("resolved", "Resolved"))


def bids_behind(alert: Alert) -> str:
    """The bids list filtered to the alert's buyer, from before it opened to its last sighting
    (or its resolution)."""
    end = alert.resolved_at or alert.last_seen_at
    query = {
        "buyer": alert.buyer_id,
        "since": (alert.opened_at - EVIDENCE_BEFORE).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # "until" is exclusive: a minute on takes in the answer seen last.
        "until": (end + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return f"{reverse('bids:list')}?{urlencode(query)}"


def alert_row(alert: Alert, *, now: datetime) -> dict[str, Any]:
    """One alert as the page shows it: severity word and class, who took it, its mute."""
    mute = getattr(alert.buyer, "alert_mute", None)
    priority = alert.priority if alert.priority in Priority.values else Priority.INFO
    return {
        "alert": alert,
        "severity": priority,
        "severity_label": Priority(priority).label,
        "acknowledged_by": (
            alert.acknowledged_by.get_username() if alert.acknowledged_by else "a removed user"
        ),
        "muted_until": mute.until if mute is not None and mute.until > now else None,
        "bids_url": bids_behind(alert),
    }


class AlertCentreView(RoleRequiredMixin, View):
    """``/alerts/?status=open|resolved``: the alerts of one tab, newest first."""

    def get(self, request: HttpRequest) -> HttpResponse:
        wanted = request.GET.get("status") or AlertStatus.OPEN
        error = ""
        if wanted not in AlertStatus.values:
            error = f"Status: choose open or resolved, not {wanted[:40]!r}."
            wanted = AlertStatus.OPEN
        now = timezone.now()
        alerts = alert_list(status_filter=wanted)
        return render(
            request,
            "bidlog/alert_list.html",
            {
                "tab": wanted,
                "tabs": TABS,
                "status_error": error,
                "rows": [alert_row(alert, now=now) for alert in alerts],
                "mutes": triage.mutes_active(now=now),
                "buyers": Buyer.objects.order_by("name").only("id", "name"),
                "durations": DURATION_CHOICES,
                "can_act": has_role(request.user, OPERATOR),
            },
        )


class AlertAcknowledgeView(RoleRequiredMixin, View):
    """``POST``: take one open alert (records who and when)."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        alert = get_object_or_404(Alert, pk=pk)
        try:
            triage.alert_acknowledge(alert=alert, user=request.user)
        except triage.TriageError as exc:
            messages.error(request, f"Acknowledge: {exc.message}")
        else:
            messages.success(request, f"Alert {alert.pk} acknowledged: {alert.title}.")
        return redirect("alerts:list")


class AlertMuteForm(forms.Form):
    """Which buyer, and for how long: one of the choices, or until a time (UTC)."""

    buyer = forms.ModelChoiceField(queryset=Buyer.objects.all())
    duration = forms.ChoiceField(choices=DURATION_CHOICES)
    until = forms.CharField(required=False, max_length=64)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        duration = cleaned.get("duration")
        if duration is None:
            return cleaned
        try:
            if duration == "custom":
                text = cleaned.get("until") or ""
                if not text:
                    raise triage.TriageError("give the time the mute ends.", field="until")
                cleaned["span"] = triage.mute_span(until=_until(text))
            else:
                cleaned["span"] = triage.mute_span(minutes=triage.MUTE_CHOICES[duration])
        except triage.TriageError as exc:
            self.add_error("until" if exc.field == "until" else "duration", exc.message)
        return cleaned


def _until(text: str) -> datetime:
    try:
        return parse_iso_datetime(text)
    except ValueError as exc:
        raise triage.TriageError(str(exc), field="until") from None


FIELD_NAMES = {"buyer": "Buyer", "duration": "Mute for", "until": "Mute until"}


class AlertMuteView(RoleRequiredMixin, View):
    """``POST buyer, duration[, until]``: mute a buyer's alert notices for a while."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        form = AlertMuteForm(request.POST)
        if not form.is_valid():
            for field, errors in form.errors.items():
                name = FIELD_NAMES.get(field, "Mute")
                messages.error(request, f"{name}: {' '.join(str(error) for error in errors)}")
            return redirect("alerts:list")
        buyer = form.cleaned_data["buyer"]
        mute = triage.alert_mute_set(buyer=buyer, span=form.cleaned_data["span"], user=request.user)
        messages.success(
            request,
            f"{buyer.name}'s alerts are muted until {mute.until:%Y-%m-%d %H:%M} UTC: "
            "they still show here, but send no email or webhook.",
        )
        return redirect("alerts:list")


class AlertUnmuteView(RoleRequiredMixin, View):
    """``POST``: end a buyer's mute now."""

    required_role = OPERATOR
    http_method_names = ["post"]

    def post(self, request: HttpRequest, buyer_id: int) -> HttpResponse:
        buyer = get_object_or_404(Buyer, pk=buyer_id)
        if triage.alert_mute_clear(buyer=buyer):
            messages.success(request, f"{buyer.name}'s alerts notify again.")
        else:
            messages.error(request, f"Buyer: {buyer.name} was not muted.")
        return redirect("alerts:list")


def alert_badge(request: HttpRequest) -> dict[str, Any]:
    """Context processor: ``alert_badge`` (``{"count": n}``) for the header, for users with a
    role; ``None`` for anyone else (a template rendered without it shows no badge either)."""
    user = getattr(request, "user", None)
    if user is None or not has_role(user, VIEWER):
        return {"alert_badge": None}
    return {"alert_badge": {"count": triage.open_immediate_count()}}
