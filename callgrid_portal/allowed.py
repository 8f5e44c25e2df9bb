"""One wording for a value outside its choices, in filters, forms and serializers alike.

An unknown filter value (``?routed=maybe``, ``?outcome=nope``) is refused with a 400 that
lists what the parameter takes, instead of being ignored (which silently shows everything).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import django_filters
from django import forms


def allowed_values(choices: Iterable[Any]) -> list[str]:
    """The values of ``choices``, given as ``(value, label)`` pairs or as plain values."""
    return [str(item[0] if isinstance(item, list | tuple) else item) for item in choices]


def not_one_of(value: Any, choices: Iterable[Any]) -> str:
    """``'maybe' is not one of: true, false.``"""
    return f"{str(value)!r} is not one of: {', '.join(allowed_values(choices))}."


def django_invalid_choice(choices: Iterable[Any]) -> str:
    """:func:`not_one_of` as a Django form error message (``%(value)s`` filled in by Django)."""
    return "%(value)r is not one of: " + ", ".join(allowed_values(choices)).replace("%", "%%") + "."


def drf_invalid_choice(choices: Iterable[Any]) -> str:
    """:func:`not_one_of` as a DRF field error message (``{input}`` filled in by DRF)."""
    listed = ", ".join(allowed_values(choices)).replace("{", "{{").replace("}", "}}")
    return "{input!r} is not one of: " + listed + "."


class ChoiceFilter(django_filters.ChoiceFilter):
    """A choice filter whose error lists the allowed values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "error_messages", {"invalid_choice": django_invalid_choice(kwargs["choices"])}
        )
        super().__init__(*args, **kwargs)


class MultipleChoiceFilter(django_filters.MultipleChoiceFilter):
    """A several-values choice filter whose error lists the allowed values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "error_messages", {"invalid_choice": django_invalid_choice(kwargs["choices"])}
        )
        super().__init__(*args, **kwargs)


BOOLEAN_CHOICES = [("", "Any"), ("true", "Yes"), ("false", "No")]
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class StrictBooleanField(forms.NullBooleanField):
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, any case) or empty for "any".

    Django's ``NullBooleanField`` reads anything else as "any", so ``?routed=maybe`` used to
    list every call; here it is an error listing the values taken.
    """

    widget = forms.Select(choices=BOOLEAN_CHOICES)

    # The stubs type BooleanField.to_python as bool; a NullBooleanField's is bool | None.
    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]
        if value is True or value is False:
            return value
        if value in self.empty_values:
            return None
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        # The words quote the value: given as a parameter, a "%" in it is never read as a format.
        raise forms.ValidationError(
            "%(problem)s",
            code="invalid_choice",
            params={"problem": not_one_of(value, ["true", "false"])},
        )

    def validate(self, value: Any) -> None:
        return


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField
