"""``{% load portal_privacy %}``: ``{{ value|masked_for:user }}`` masks phone-like values for
users who may not read them in full (see :mod:`callgrid_portal.privacy`)."""

from typing import Any

from django import template

from callgrid_portal.privacy import shown_to

register = template.Library()


@register.filter
def masked_for(value: Any, user: Any) -> Any:
    """``value`` with every phone-like run masked unless ``user`` is an operator or admin."""
    return shown_to(user, value)
