"""The portal's form renderer: every field with an error carries the error style, and every
select is written in Python.

Django marks such a field ``aria-invalid="true"`` for screen readers; this adds the
``invalid`` class the style sheet draws a red border from, so people who see the page find
the field as easily. It is set once as ``FORM_RENDERER``, so the buyer forms, the test-bid and
eligibility forms and every list page's filters (django-filter builds Django forms) share it.
See Django's "BoundField.build_widget_attrs" and "Form.bound_field_class" (new in 5.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.forms.boundfield import BoundField
from django.forms.renderers import DjangoTemplates
from django.forms.widgets import Widget
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

INVALID_CLASS = "invalid"


class ErrorStyleBoundField(BoundField):
    """A bound field whose widget gets the ``invalid`` class next to ``aria-invalid``."""

    def build_widget_attrs(self, attrs: dict[str, Any], widget: Widget | None = None) -> Any:
        built = super().build_widget_attrs(attrs, widget)
        if built.get("aria-invalid") == "true":
            # The widget's own classes are kept: extra attrs replace them when rendered.
            own = (widget or self.field.widget).attrs.get("class", "")
            classes = [*str(own).split(), *str(built.get("class", "")).split(), INVALID_CLASS]
            built["class"] = " ".join(dict.fromkeys(classes))
        return built


SELECT_TEMPLATE = "django/forms/widgets/select.html"


class PortalFormRenderer(DjangoTemplates):
    """Django's renderer with :class:`ErrorStyleBoundField` for every form, writing every
    select in Python (:func:`select_html`).

    Django's select template includes a template per option, and even one template looping
    over the options cost the overview 24 ms for its list of 200 buyers (every buyer filter of
    the overview, the reports, bids and calls); written here, 13 ms with the query.
    """

    bound_field_class = ErrorStyleBoundField

    def render(
        self, template_name: str, context: dict[str, Any], request: HttpRequest | None = None
    ) -> str:
        if template_name == SELECT_TEMPLATE:
            return select_html(context["widget"])
        return super().render(template_name, context, request)


def attrs_html(attrs: Mapping[str, Any]) -> SafeString:
    """Django's ``attrs.html``: `` name="value"`` per attribute, the name alone for ``True``,
    nothing for ``False``, in the widget's order (``django.forms.utils.flatatt`` sorts them and
    drops ``None``, so its markup differs from the template's)."""
    return mark_safe(
        "".join(
            format_html(" {}", name) if value is True else format_html(' {}="{}"', name, value)
            for name, value in attrs.items()
            if value is not False
        )
    )


def select_html(widget: Mapping[str, Any]) -> SafeString:
    """The markup of Django's ``select.html`` (with ``select_option.html`` per option) for a
    select widget's context: its option groups, each option's value, attributes and label."""
    parts: list[str] = [
        format_html('<select name="{}"{}>', widget["name"], attrs_html(widget["attrs"]))
    ]
    for group_name, options, _index in widget["optgroups"]:
        if group_name:
            parts.append(format_html('\n  <optgroup label="{}">', group_name))
        parts.extend(
            format_html(
                '\n  <option value="{}"{}>{}</option>',
                option["value"],
                attrs_html(option["attrs"]),
                option["label"],
            )
            for option in options
        )
        if group_name:
            parts.append("\n  </optgroup>")
    parts.append("\n</select>")
    return mark_safe("".join(parts))
