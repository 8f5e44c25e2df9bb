"""Filters of the bid log, shared by the API and the pages (NetBox keeps one FilterSet per model).

Every bad value is a form error on its own field, so the API answers 400 naming the field
(``since``, ``caller_id``, ...) instead of silently returning everything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from bidlog.choices import OUTCOME_CLASS, Outcome, OutcomeClass, Source
from bidlog.models import BidLog, bid_calls_q
from bidlog.tags import TAG_FIELDS, tag_problem
from buyers.models import Buyer
from buyers.validators import caller_id_clean
from callgrid_portal.allowed import ChoiceFilter, MultipleChoiceFilter

# Dates from outside are read within these bounds: every report, filter and import can add
# a year or step a bucket on either side without leaving what Python's datetime holds.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
DATETIME_INVALID_MESSAGE = "Enter an ISO 8601 date-time such as 2025-05-01T12:00:00Z."
DATETIME_RANGE_MESSAGE = "Must be between 1970-01-01 and 2999-12-31 (UTC)."
# The longest ISO 8601 spelling fromisoformat reads (date, time to microseconds, offset with
# seconds) is under 40 characters; anything much longer is not a date.
MAX_DATETIME_CHARS = 64


def parse_iso_datetime(value: str) -> datetime:
    """Parse an ISO 8601 date or date-time into an aware UTC datetime; naive means UTC.

    The one reader of a date from outside (query parameters, forms, imports, page cursors).
    Raises ``ValueError`` with a message to show as is: :data:`DATETIME_INVALID_MESSAGE`
    when it is not a date, :data:`DATETIME_RANGE_MESSAGE` when it lies outside
    :data:`EARLIEST`..:data:`LATEST` (year 1 and year 9999 are valid ISO 8601, but their
    offsets and any arithmetic on them overflow).

    A ``+`` in an offset often arrives as a space when a client forgets to URL-encode it
    (``...T12:00:00 02:00``); that spelling is read as the ``+`` it was meant to be.
    """
    text = value.strip()
    if len(text) > MAX_DATETIME_CHARS:
        raise ValueError(DATETIME_INVALID_MESSAGE)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        if not ("T" in text and " " in text):
            raise ValueError(DATETIME_INVALID_MESSAGE) from None
        try:
            parsed = datetime.fromisoformat(text.replace(" ", "+"))
        except ValueError:
            raise ValueError(DATETIME_INVALID_MESSAGE) from None
    try:
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        # Year 1 east of UTC or year 9999 west of it: UTC falls outside datetime's years.
        raise ValueError(DATETIME_RANGE_MESSAGE) from None
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(DATETIME_RANGE_MESSAGE)
    return moment


class IsoDateTimeField(forms.Field):
    """A date-time in ISO 8601 (``2025-05-01T12:00:00Z``, ``2025-05-01``), naive read as UTC,
    between 1970 and 2999 (see :func:`parse_iso_datetime`)."""

    default_error_messages = {
        "invalid": DATETIME_INVALID_MESSAGE,
        "out_of_range": DATETIME_RANGE_MESSAGE,
    }

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return parse_iso_datetime(str(value))
        except ValueError as exc:
            code = "out_of_range" if str(exc) == DATETIME_RANGE_MESSAGE else "invalid"
            raise forms.ValidationError(self.error_messages[code], code=code) from None


class CallerIdField(forms.CharField):
    """A caller ID in any common spelling, cleaned to the 10 digits the log stores."""

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        if not text:
            return ""
        return caller_id_clean(text).digits


class CommaSeparatedSelectMultiple(forms.SelectMultiple):
    """Accept ``?outcome=a,b`` as well as ``?outcome=a&outcome=b``."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str] | None:
        getter = getattr(data, "getlist", None)
        if getter is not None:
            raw = getter(name)
        else:
            single = data.get(name)
            raw = single if isinstance(single, list | tuple) else [single]
        values = [part.strip() for item in raw if item for part in str(item).split(",")]
        return [value for value in values if value] or None


# The largest id a bigint column holds; beyond it SQLite cannot even compare (OverflowError).
MAX_ID = 2**63 - 1


class IdField(forms.IntegerField):
    """A row id: a whole number from 1 to :data:`MAX_ID`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class TagField(forms.CharField):
    """A campaign or publisher tag, checked by the rule every tag follows (``bidlog.tags``)."""

    def __init__(self, *, tag: str = "tag", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag

    def to_python(self, value: Any) -> str:
        text = super().to_python(value) or ""
        problem = tag_problem(self.tag, text)
        if problem is not None:
            # A parameter, not the message: a "%" in the value must not be read as a format.
            raise forms.ValidationError(
                "%(problem)s", code="invalid_tag", params={"problem": problem}
            )
        return text


class IdFilter(django_filters.NumberFilter):
    field_class = IdField


class IsoDateTimeFilter(django_filters.Filter):
    field_class = IsoDateTimeField


class CallerIdFilter(django_filters.CharFilter):
    field_class = CallerIdField


class TagFilter(django_filters.CharFilter):
    """An exact campaign or publisher tag (``tag``), named so in its errors."""

    field_class = TagField


class BidLogFilter(django_filters.FilterSet):
    """Filter bids by buyer, outcome, code, source, caller, call and time.

    ``since`` is inclusive and ``until`` exclusive, so consecutive ranges never count a bid
    twice. ``outcome`` takes several values; ``outcome_class`` selects every outcome of a class.
    """

    buyer = IdFilter(field_name="buyer_id")
    grid_id = django_filters.CharFilter(method="filter_grid_id")
    # distinct=False: a bid has one outcome, and SELECT DISTINCT would make PostgreSQL sort
    # every matching row before it can return the first page.
    outcome = MultipleChoiceFilter(
        choices=Outcome.choices, widget=CommaSeparatedSelectMultiple, distinct=False
    )
    outcome_class = ChoiceFilter(choices=OutcomeClass.choices, method="filter_outcome_class")
    code = django_filters.NumberFilter()
    source = ChoiceFilter(choices=Source.choices)
    caller_id = CallerIdFilter()
    call = IdFilter(field_name="call_id")
    # The tags of the call a bid was made for (bids outside a call have none).
    campaign = TagFilter(field_name="call__campaign", tag="campaign")
    publisher = TagFilter(field_name="call__publisher", tag="publisher")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = BidLog
        fields: list[str] = []

    def filter_outcome_class(
        self, queryset: QuerySet[BidLog], name: str, value: str
    ) -> QuerySet[BidLog]:
        outcomes = [outcome for outcome, klass in OUTCOME_CLASS.items() if klass == value]
        return queryset.filter(outcome__in=outcomes)

    def filter_grid_id(self, queryset: QuerySet[BidLog], name: str, value: str) -> QuerySet[BidLog]:
        """The bids of the buyer with grid id ``value``, by that buyer's id.

        The id is looked up first, so the bids are read as ``buyer_id = id`` from the buyer's
        own index in its time order. Joined to the buyers instead, the planner picks its index
        by how many buyers it believes there are, and with a few it reads every bid newest
        first and keeps the buyer's.
        """
        buyer_ids = list(Buyer.objects.filter(grid_id=value).values_list("pk", flat=True)[:1])
        return queryset.filter(buyer_id=buyer_ids[0]) if buyer_ids else queryset.none()

    def filter_queryset(self, queryset: QuerySet[BidLog]) -> QuerySet[BidLog]:
        data = self.form.cleaned_data
        queryset = super().filter_queryset(queryset)
        return self.calls_bounded(queryset, data.get("since"), data.get("until"))

    def calls_bounded(
        self, queryset: QuerySet[BidLog], since: datetime | None, until: datetime | None
    ) -> QuerySet[BidLog]:
        """``queryset`` limited to bids of ``[since, until)`` filtered by a tag: their calls'
        moments bounded too (:func:`bidlog.models.bid_calls_q`); without a tag, unchanged."""
        data = self.form.cleaned_data
        if not any(data.get(name) for name in TAG_FIELDS):
            return queryset
        return queryset.filter(bid_calls_q([(since, until)]))
