"""Forms for editing buyers (the Django admin and the buyer pages use the same one)."""

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from buyers.choices import BuyerStatus
from buyers.hours import HoursSyntaxError, hours_text, parse_hours_text
from buyers.models import Buyer
from buyers.validators import US_STATE_CODES, caller_id_clean
from callgrid_portal.jsondepth import TOO_DEEP_MESSAGE, too_deep

_STATE_SEPARATORS = re.compile(r"[\s,;]+")


class StateListField(forms.CharField):
    """Accepted states typed as ``CO, TX`` (or a JSON list), cleaned to ``["CO", "TX"]``.

    People type state lists, they do not write JSON, so the form takes codes separated by
    commas, spaces or semicolons in any case and upper-cases them. A value starting with
    ``[`` is read as a JSON list, so a pasted API payload works too. Whether each code is a
    real state, and appears once, is left to the model's validator, so the form and the API
    give the same message. (The API itself stays strict: it takes a JSON list of upper-case
    codes, as stored.)
    """

    default_error_messages = {
        "invalid": 'Enter state codes separated by commas, like "CO, TX", or a JSON list '
        'like ["CO", "TX"].',
    }

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(code) for code in value)
        return value

    # Django's to_python may return any Python type (here the list the model field stores);
    # the CharField stub narrows it to str.
    def to_python(self, value: Any) -> list[Any]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value)
        if not text:
            return []
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
            if not isinstance(items, list):
                raise ValidationError(self.error_messages["invalid"], code="invalid")
        else:
            items = _STATE_SEPARATORS.split(text)
        return [
            item.strip().upper() if isinstance(item, str) else item
            for item in items
            if not (isinstance(item, str) and not item.strip())
        ]


class JSONObjectField(forms.JSONField):
    """A JSON field whose message shows an example, and whose empty value is ``{}``.

    Django's own message ("Enter a valid JSON.") does not say what shape is wanted; an empty
    box must store an empty object, not null, because the column is not nullable.
    """

    def __init__(self, *, example: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 60}))
        super().__init__(**kwargs)
        self.error_messages["invalid"] = f"Enter valid JSON, for example {example}."

    def prepare_value(self, value: Any) -> Any:
        # An empty object shows as an empty box (which saves as {} again), not as "{}", and a
        # new buyer's box is not "null".
        if value is None or value == {}:
            return ""
        return super().prepare_value(value)

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return {}
        try:
            parsed = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(TOO_DEEP_MESSAGE, code="too_deep") from None
        if too_deep(parsed):
            raise forms.ValidationError(TOO_DEEP_MESSAGE, code="too_deep")
        return parsed


class _TextOrJSONField(forms.CharField):
    """A JSON object the form shows and takes in a text people write more easily.

    A value starting with ``{`` is read as the API's JSON object, so a pasted payload works
    too; an empty box is ``{}``. Whether the object is valid is the model validator's call, so
    the form and the API give the same message. Subclasses say how text and object map.
    """

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})
    json_example = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.as_text(value)
        return "" if value is None else value

    def to_python(self, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        text = super().to_python(value)
        if not text:
            return {}
        if text.startswith("{"):
            return JSONObjectField(example=self.json_example).to_python(text)
        return self.from_text(text)

    def as_text(self, value: dict[str, Any]) -> str:
        raise NotImplementedError

    def from_text(self, text: str) -> dict[str, Any]:
        raise NotImplementedError


class ParamsField(_TextOrJSONField):
    """Extra parameters as ``Name=value`` lines, cleaned to ``{"Name": "value"}``.

    Stored parameters that lines cannot show exactly (a name with ``=``, a value with a line
    break or a non-string value the API refused) are shown as JSON.
    """

    json_example = '{"PublisherId": "pub-123", "CampaignType": "auto"}'

    def as_text(self, value: dict[str, Any]) -> str:
        if all(isinstance(v, str) and _line_safe(str(k), v) for k, v in value.items()):
            return "\n".join(f"{k}={v}" for k, v in value.items())
        return json.dumps(value, ensure_ascii=False)

    def from_text(self, text: str) -> dict[str, Any]:
        params: dict[str, str] = {}
        problems: list[ValidationError] = []
        for line in filter(None, (line.strip() for line in text.splitlines())):
            name, sep, item = line.partition("=")
            name = name.strip()
            if not sep or not name:
                problems.append(
                    ValidationError(
                        f'"{line}": write each parameter as Name=value, one per line.',
                        code="invalid",
                    )
                )
            elif name in params:
                problems.append(ValidationError(f"{name} is given twice.", code="invalid"))
            else:
                params[name] = item.strip()
        if problems:
            # Every bad line, not only the first.
            raise ValidationError(problems)
        return params


def _line_safe(name: str, value: str) -> bool:
    """Whether ``name=value`` on one line reads back as exactly this pair."""
    return (
        bool(name)
        and name == name.strip()
        and value == value.strip()
        and "=" not in name
        and not name.startswith("{")
        and not any(c in name + value for c in "\r\n")
    )


class OperatingHoursField(_TextOrJSONField):
    """Operating hours as ``mon-fri 08:00-20:00`` lines (see :mod:`buyers.hours`), shown in the
    same words whatever wrote the stored JSON."""

    json_example = '{"mon": [["09:00", "17:00"]], "sat": [["10:00", "14:00"]]}'

    def as_text(self, value: dict[str, Any]) -> str:
        return hours_text(value)

    def from_text(self, text: str) -> dict[str, Any]:
        try:
            return parse_hours_text(text)
        except HoursSyntaxError as exc:
            # One message per bad line, so the page lists every line to fix.
            raise ValidationError(
                [ValidationError(problem, code="invalid") for problem in exc.problems]
            ) from None


# The buyer form's fields under their section titles: the pages show them so and the admin's
# fieldsets are made from them (buyers.admin.BuyerAdmin), so both group fields alike.
BUYER_FORM_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Buyer", ("name", "grid_id", "status", "priority", "vertical", "notes")),
    (
        "Bids",
        (
            "endpoint_url",
            "min_bid",
            "caller_id_format",
            "accepted_states",
            "extra_params",
            "duplicate_window_days",
        ),
    ),
    (
        "Limits",
        (
            "timeout_seconds",
            "max_concurrency",
            "rate_limit_per_minute",
            "capacity_cooldown_seconds",
            "daily_cap",
            "monthly_cap",
        ),
    ),
    ("Schedule", ("timezone", "operating_hours")),
    (
        "Health checks and alerts",
        ("health_check_minutes", "health_check_caller_id", "auto_pause"),
    ),
)


class BuyerForm(forms.ModelForm):
    """Create or edit a buyer; every rule is the model's, so messages match the API's."""

    endpoint_url = forms.URLField(
        label="Endpoint URL",
        max_length=300,
        # Bid endpoints are https; a scheme-less entry must not quietly become plain http.
        assume_scheme="https",
        help_text=Buyer._meta.get_field("endpoint_url").help_text,
    )
    accepted_states = StateListField(
        required=False,
        help_text='Two-letter codes separated by commas, like "CO, TX" (any case); '
        "empty accepts every state.",
    )
    extra_params = ParamsField(
        label="Extra parameters",
        help_text="Sent with every bid, one Name=value per line, like PublisherId=pub-123. "
        "CallerId and InboundStateCode are set per call.",
    )
    operating_hours = OperatingHoursField(
        help_text="In the buyer's time zone, one line per set of days, like "
        '"mon-fri 08:00-20:00" or "sat 10:00-14:00, 16:00-18:00" (24:00 is midnight). '
        "A day no line names is closed; empty is always open.",
    )

    class Meta:
        model = Buyer
        fields = [name for _title, names in BUYER_FORM_SECTIONS for name in names]
        widgets = {
            "notes": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            "timezone": forms.TextInput(attrs={"list": "timezones", "autocomplete": "off"}),
        }
        labels = {
            "caller_id_format": "Caller ID format",
            "min_bid": "Minimum bid",
            "duplicate_window_days": "Duplicate window (days)",
            "timeout_seconds": "Timeout (seconds)",
            "max_concurrency": "Simultaneous requests",
            "rate_limit_per_minute": "Rate limit (per minute)",
            "capacity_cooldown_seconds": "No Capacity cooldown (seconds)",
            "daily_cap": "Daily cap (routed calls)",
            "monthly_cap": "Monthly cap (routed calls)",
            "timezone": "Time zone",
            "health_check_minutes": "Health check every (minutes)",
            "health_check_caller_id": "Health-check caller ID",
            "auto_pause": "Pause on immediate alerts",
        }

    SECTIONS = BUYER_FORM_SECTIONS
    NEW_BUYER_STATUS_HELP = (
        "A new buyer starts paused; choose Active to offer it calls as soon as it is saved."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None and "status" not in (kwargs.get("initial") or {}):
            # A new buyer starts paused, so no call goes to it before someone has checked its
            # endpoint and caps; the person chooses Active to go live at once (the pages and
            # the admin alike; the API keeps its documented default).
            self.initial["status"] = BuyerStatus.PAUSED
            self.fields["status"].help_text = self.NEW_BUYER_STATUS_HELP

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The bound fields under their section titles, in :attr:`SECTIONS` order."""
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]


def _caller_id(value: str) -> str:
    """A typed caller ID as its 10 digits, or a field error that says what is wrong."""
    return caller_id_clean(value).ten_digit


def _state_code(value: str) -> str:
    state = value.strip().upper()
    if state and state not in US_STATE_CODES:
        raise ValidationError(
            f"{state!r} is not a US state code; use two letters like CO.", code="invalid"
        )
    return state


def _state_field() -> forms.CharField:
    return forms.CharField(
        label="Caller's state",
        max_length=2,
        required=False,
        help_text="Two letters, like CO; empty when unknown.",
    )


class EligibilityForm(forms.Form):
    """A caller ID (and the call's state) to check against one buyer's rules and limits."""

    caller_id = forms.CharField(
        label="Caller ID",
        max_length=40,
        help_text="10 digits, or 11 starting with 1; spaces, dashes and brackets are fine.",
    )
    state_code = _state_field()

    def clean_caller_id(self) -> str:
        return _caller_id(self.cleaned_data["caller_id"])

    def clean_state_code(self) -> str:
        return _state_code(self.cleaned_data["state_code"])


class TestBidForm(forms.Form):
    """The caller a test bid pretends to be; empty uses the buyer's test caller ID."""

    caller_id = forms.CharField(
        label="Test caller ID",
        max_length=40,
        required=False,
        help_text="Empty: the buyer's health-check caller ID, or the Bid API guide's sample.",
    )
    state_code = _state_field()

    def clean_caller_id(self) -> str:
        value = self.cleaned_data["caller_id"]
        return _caller_id(value) if value.strip() else ""

    def clean_state_code(self) -> str:
        return _state_code(self.cleaned_data["state_code"])


class BuyerCloneForm(forms.Form):
    """The name and Grid ID of a copy of a buyer; every other setting is copied."""

    name = Buyer._meta.get_field("name").formfield()
    grid_id = Buyer._meta.get_field("grid_id").formfield(label="Grid ID")


# What the buyers list's bulk action may set. Disabling stays one buyer at a time, from its
# page: it stops a buyer for good, which several at once should not do by a slip.
BULK_STATUSES = (("paused", "Pause"), ("active", "Activate"))
# The most buyers one bulk action takes (a list page shows them all; this bounds the POST).
BULK_MAX = 500


class BuyerBulkStatusForm(forms.Form):
    """The buyers ticked on the list, and whether to pause or activate them."""

    buyers = forms.ModelMultipleChoiceField(
        queryset=Buyer.objects.all(),
        error_messages={"required": "Tick at least one buyer."},
    )
    status = forms.ChoiceField(choices=BULK_STATUSES)

    def clean_buyers(self) -> Any:
        chosen = self.cleaned_data["buyers"]
        if len(chosen) > BULK_MAX:
            raise ValidationError(f"Choose at most {BULK_MAX} buyers at once.", code="too_many")
        return chosen
