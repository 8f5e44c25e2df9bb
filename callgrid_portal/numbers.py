"""Numbers as the pages show them: counts with thousands separators, dollars, percents, ms."""

from __future__ import annotations

from decimal import Decimal

NONE_SHOWN = "\u2013"  # an en dash: no value


def fmt_count(value: int | None) -> str:
    """``12345`` → ``12,345``; ``None`` → a dash."""
    return NONE_SHOWN if value is None else f"{value:,}"


def fmt_money(value: Decimal | None) -> str:
    """Dollars with cents and thousands separators: ``$1,234.50``; negative as ``-$3.00``."""
    if value is None:
        return NONE_SHOWN
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def fmt_rate(value: float | None) -> str:
    """A share (0..1) as a percent with at most one decimal: ``0.4525`` → ``45.3%``."""
    if value is None:
        return NONE_SHOWN
    text = f"{value * 100:.1f}".removesuffix(".0")
    return f"{text}%"


def fmt_ms(value: int | None) -> str:
    """Milliseconds with thousands separators: ``1,250 ms``."""
    return NONE_SHOWN if value is None else f"{value:,} ms"
