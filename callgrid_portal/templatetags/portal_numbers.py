"""Template filters for numbers: ``{{ n|count }}``, ``{{ amount|money }}``, ``{{ r|percent }}``."""

from __future__ import annotations

from decimal import Decimal

from django import template

from callgrid_portal import numbers

register = template.Library()


@register.filter
def count(value: int | None) -> str:
    return numbers.fmt_count(value)


@register.filter
def money(value: Decimal | None) -> str:
    return numbers.fmt_money(value)


@register.filter
def percent(value: float | None) -> str:
    return numbers.fmt_rate(value)


@register.filter
def ms(value: int | None) -> str:
    return numbers.fmt_ms(value)
