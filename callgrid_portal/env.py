"""Reading the environment for the settings: typed helpers that name a bad variable.

Each raises ``ImproperlyConfigured`` on a value it cannot read, so a typo stops the process at
start with the variable's name instead of surfacing later as a strange default.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from callgrid_portal.text import ascii_digits

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """Return the variable ``name`` stripped, or ``default`` when it is unset."""
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    """Parse a boolean variable; an unknown spelling is a configuration error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Parse an integer variable; a non-integer or one below ``minimum`` is an error."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """Parse a number variable; a non-number or one below ``minimum`` is an error."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    """Parse a comma-separated variable into a list of non-empty items."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


_RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")


def env_rate(name: str, default: str) -> str:
    """Parse a DRF throttle rate (``30/hour``); anything else is a configuration error."""
    value = env_str(name, default)
    count, _, period = value.partition("/")
    if not (ascii_digits(count) and int(count) > 0 and period in _RATE_PERIODS):
        raise ImproperlyConfigured(f"{name} must look like 30/hour (a count and s, m, h or d)")
    return value
