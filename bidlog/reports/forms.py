"""Forms of the bid log pages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from bidlog.choices import Source
from bidlog.filters import IsoDateTimeField
from bidlog.reports.api import MAX_RANGE
from buyers.models import Buyer

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class ReportRangeForm(forms.Form):
    """The time range (a preset, or ``since``/``until``) and the buyer and source shown.

    Cleaned data gains ``since`` and ``until`` as aware datetimes and ``bucket`` (``hour``
    up to three days, ``day`` beyond), so every chart has a sensible number of bars.
    """

    range = forms.ChoiceField(
        choices=[
            ("24h", "Last 24 hours"),
            ("7d", "Last 7 days"),
            ("30d", "Last 30 days"),
            ("custom", "From since to until"),
        ],
        required=False,
    )
    since = IsoDateTimeField(required=False, help_text="ISO 8601, UTC unless it says otherwise.")
    until = IsoDateTimeField(required=False, help_text="Empty: now.")
    buyer = forms.ModelChoiceField(
        queryset=Buyer.objects.order_by("priority", "name"),
        required=False,
        empty_label="Every buyer",
    )
    source = forms.ChoiceField(choices=[("", "Every source"), *Source.choices], required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        preset = data.get("range") or ("custom" if data.get("since") else "24h")
        until: datetime = data.get("until") or timezone.now()
        if preset == "custom":
            since = data.get("since")
            if since is None:
                self.add_error("since", "Give the start of the range, or pick a preset.")
                return data
        else:
            since = until - RANGES[preset]
        if since >= until:
            self.add_error("since", "Must be before until.")
        elif until - since > MAX_RANGE:
            self.add_error("since", f"A report covers at most {MAX_RANGE.days} days.")
        data.update(
            range=preset,
            since=since,
            until=until,
            bucket="hour" if until - since <= timedelta(days=3) else "day",
        )
        return data
