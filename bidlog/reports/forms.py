"""Forms of the bid log pages: the one range control every page with a time range uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.db.models import Model, QuerySet
from django.http import QueryDict
from django.utils import timezone

from bidlog.choices import Source
from bidlog.filters import EARLIEST, LATEST, IsoDateTimeField, TagField
from bidlog.reports.api import MAX_RANGE
from bidlog.reports.campaigns import GROUPS
from bidlog.stale import floor_hour
from buyers.models import Buyer

RowT = TypeVar("RowT", bound=Model)

# The quick ranges, in the order the control shows them.
QUICK_RANGES = {
    "today": "Today",
    "yesterday": "Yesterday",
    "24h": "24 hours",
    "7d": "7 days",
    "30d": "30 days",
}
ROLLING = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Query keys the range control owns: a quick-range link replaces them all.
RANGE_KEYS = ("range", "from_date", "to_date", "since", "until", "before", "export")
DATE_RANGE_MESSAGE = (
    f"Must be between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}."
)


@dataclass(frozen=True)
class QuickRange:
    """A link of the range control: its label, the page's query with it, and if it is on."""

    key: str
    label: str
    query: str
    current: bool


class RangeForm(forms.Form):
    """The time range of a page: a quick range, two days from a date picker, or ``since`` and
    ``until`` in ISO 8601 (links and the API's spelling).

    The days picked run midnight to midnight in ``TIME_ZONE``, ``to_date`` included, and
    never past now. Cleaned data gains ``since`` and ``until`` (aware datetimes), ``bucket``
    (``hour`` up to three days, ``day`` beyond), ``label`` (what the page says it shows) and
    ``period`` (how far back the previous period of the same kind starts: a day for today,
    a week for 7 days, the picked number of days for dates). With ``default=None`` and no
    range asked for, ``since`` is ``None``: the page shows every time. ``iso=False`` leaves
    ``since`` and ``until`` to the page's own filter (the bid and call lists), where exact
    times narrow the range picked here (see :meth:`narrow`).
    """

    range = forms.ChoiceField(
        choices=[*QUICK_RANGES.items(), ("custom", "From since to until")],
        required=False,
        widget=forms.HiddenInput,
    )
    from_date = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    to_date = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    since = IsoDateTimeField(required=False, widget=forms.HiddenInput)
    until = IsoDateTimeField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        data: QueryDict | dict[str, Any] | None = None,
        *,
        default: str | None = "24h",
        iso: bool = True,
        now: datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data if data is not None else {}, **kwargs)
        self.default = default
        self.now = now or timezone.now()
        self.zone = ZoneInfo(settings.TIME_ZONE)
        if not iso:
            del self.fields["since"], self.fields["until"]

    # --- reading the range -----------------------------------------------------------------

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors:
            return data
        if data.get("from_date") or data.get("to_date"):
            found = self._days(data.get("from_date"), data.get("to_date"))
        elif data.get("range") in QUICK_RANGES:
            found = self._quick(data["range"])
        elif "since" in self.fields and (
            data.get("range") == "custom" or data.get("since") or data.get("until")
        ):
            found = self._iso(data.get("since"), data.get("until"))
        elif self.default is not None:
            found = self._quick(self.default)
        else:
            data.update(since=None, until=None, bucket="hour", label="", period=None)
            return data
        if found is None:
            return data
        since, until, label, period, field = found
        self.used = field
        if since >= until:
            self.add_error(
                field, "Must be before until." if field == "since" else "Must not be in the future."
            )
        elif until - since > MAX_RANGE:
            self.add_error(field, f"A report covers at most {MAX_RANGE.days} days.")
        data.update(
            since=since,
            until=until,
            label=label,
            period=period,
            bucket="hour" if until - since <= timedelta(days=3) else "day",
        )
        return data

    def narrow(self, queryset: QuerySet[RowT], field: str = "created_at") -> QuerySet[RowT]:
        """The rows of ``queryset`` inside the range picked; all of them when none is.

        The one place a listing (bids, calls) turns the quick range or the days into times:
        the listing's own ``since`` and ``until`` (a link's or typed exact times) stay its
        filter's, so a row must be inside both. Call it on a valid form.
        """
        since, until = self.cleaned_data["since"], self.cleaned_data["until"]
        if since is None:
            return queryset
        return queryset.filter(**{f"{field}__gte": since, f"{field}__lt": until})

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.zone)

    def _quick(self, key: str) -> tuple[datetime, datetime, str, timedelta, str]:
        label = QUICK_RANGES[key]
        if key in ROLLING:
            length = ROLLING[key]
            # A rolling range starts on the UTC hour: "24 hours" at 14:20 runs from 14:00
            # yesterday (up to an hour more than its name). Every hour it covers is then
            # read from the rollups, where a start inside an hour read up to an hour of raw
            # rows on every request. The previous period of a rolling week or month is the
            # one before it; of the last 24 hours, the same hours yesterday.
            since = floor_hour(self.now - length)
            return since, self.now, f"Last {label.lower()}", length, "range"
        today = self.now.astimezone(self.zone).date()
        if key == "today":
            return self._midnight(today), self.now, label, timedelta(days=1), "range"
        yesterday = today - timedelta(days=1)
        return self._midnight(yesterday), self._midnight(today), label, timedelta(days=1), "range"

    def _days(
        self, first: date | None, last: date | None
    ) -> tuple[datetime, datetime, str, timedelta, str] | None:
        for name, day in (("from_date", first), ("to_date", last)):
            if day is not None and not EARLIEST.date() <= day <= LATEST.date():
                self.add_error(name, DATE_RANGE_MESSAGE)
                return None
        first = first or last  # only "to": that one day
        if first is None:  # neither: the caller asks only when one is given
            return None
        last = last or max(first, self.now.astimezone(self.zone).date())
        if last < first:
            self.add_error("to_date", "Must be on or after the first day.")
            return None
        until = min(self._midnight(last + timedelta(days=1)), self.now)
        days = (last - first).days + 1
        label = first.isoformat() if days == 1 else f"{first.isoformat()} to {last.isoformat()}"
        return self._midnight(first), until, label, timedelta(days=days), "from_date"

    def _iso(
        self, since: datetime | None, until: datetime | None
    ) -> tuple[datetime, datetime, str, timedelta, str] | None:
        if since is None:
            self.add_error("since", "Give the start of the range, or pick a quick range.")
            return None
        until = until or self.now
        label = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
        return since, until, label, until - since, "since"

    # --- showing the control ---------------------------------------------------------------

    # Which input the shown range came from: "range" (a quick range), "from_date" (the date
    # picker) or "since" (ISO 8601 times); "" for none.
    used = ""

    def current_quick(self) -> str:
        """The quick range on screen, if the range shown is one."""
        if not self.is_valid():
            return ""
        chosen = self.cleaned_data.get("range") or ""
        if self.used == "range":
            return chosen if chosen in QUICK_RANGES else (self.default or "")
        return ""

    def carried(self) -> list[tuple[str, str]]:
        """Hidden inputs that keep the range shown when the page's form is sent again."""
        if self.used == "range":
            return [("range", self.current_quick())]
        if self.used == "since" and "since" in self.fields:
            return [(name, self.data.get(name) or "") for name in ("since", "until")]
        return []

    def hidden_errors(self) -> list[str]:
        """Errors of the inputs the control does not show (a link's range, since, until)."""
        return [
            f"{name}: {message}"
            for name in ("range", "since", "until")
            for message in self.errors.get(name, [])
        ]

    def quick_ranges(self) -> list[QuickRange]:
        """The quick-range links, each keeping the page's other filters; "Any time" too on a
        page that shows every time until a range is picked."""
        base = self.data.copy() if isinstance(self.data, QueryDict) else QueryDict(mutable=True)
        if not isinstance(self.data, QueryDict):
            for key, value in self.data.items():
                base[key] = str(value)
        for key in RANGE_KEYS:
            base.pop(key, None)
        asked = self.current_quick()
        links = []
        for key, label in QUICK_RANGES.items():
            query = base.copy()
            query["range"] = key
            links.append(QuickRange(key, label, query.urlencode(), current=key == asked))
        if self.default is None:
            # A listing shows every time until a range is picked: the way back to that.
            exact = any(self.data.get(name) for name in ("since", "until"))
            anytime = self.is_valid() and not self.used and not exact
            links.append(QuickRange("any", "Any time", base.urlencode(), current=anytime))
        return links

    def time_zone(self) -> str:
        return str(self.zone)


def listing_range(params: QueryDict) -> RangeForm:
    """The range control of a listing (bids, calls): every time until a range is picked; the
    listing's exact ``since`` and ``until`` stay its filter's and narrow the range picked."""
    return RangeForm(params, default=None, iso=False)


class ReportRangeForm(RangeForm):
    """The range, and what the overview and the reports show of it: a buyer, a source, a
    campaign or publisher tag, and which tag the campaign table groups by."""

    # Only the columns an option shows (the buyer's str): with 200 buyers, loading whole rows
    # made this list cost 40 ms of the page instead of 24.
    buyer = forms.ModelChoiceField(
        queryset=Buyer.objects.order_by("priority", "name").only("id", "name", "grid_id"),
        required=False,
        empty_label="Every buyer",
    )
    source = forms.ChoiceField(choices=[("", "Every source"), *Source.choices], required=False)
    campaign = TagField(required=False, tag="campaign")
    publisher = TagField(required=False, tag="publisher")
    group = forms.ChoiceField(
        choices=[(name, f"Per {name}") for name in GROUPS],
        required=False,
        label="Group calls",
    )
