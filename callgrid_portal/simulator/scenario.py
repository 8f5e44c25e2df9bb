"""The simulator's scenarios: what a grid may be told to answer, checked before it runs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

RESPONSES = frozenset(
    {
        "accept",
        "decline",
        "no_capacity",
        "invalid_request",
        "system_error",
        "disabled",
        "paused",
        "invalid_caller_id",
        "capacity_check_failed",
        "duplicate",
        "no_numbers",
        "rate_limit",
        "fail_then_accept",
        "dribble",
        "dribble_headers",
        "malformed",
        "html_error",
        "oversized",
        "unknown_code",
        "wrong_shape",
    }
)

DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "respond": "accept",
    "bid_amount": "25.50",  # a decimal literal, written into the JSON as a number
    "destination": "13035551234",  # None leaves it out
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "rate_limit_per_minute": None,  # None: no limit
    "retry_after": 1,  # seconds, sent with every 429
    "fail_times": 1,  # fail_then_accept: how many 5000s come first
    "dribble_interval": 0.5,  # seconds between bytes of a dribbled body
    "message": None,  # overrides CallGrid's message for the code
    "http_status": None,  # overrides the HTTP status of a coded answer
}

# Code, HTTP status and CallGrid's message for each plain coded answer (seed documents).
CODED_ANSWERS: dict[str, tuple[int, int, str]] = {
    "accept": (1000, 200, "Bid accepted"),
    "decline": (2000, 200, "Bid declined - call type not accepted"),
    "no_capacity": (3000, 200, "No capacity available"),
    "invalid_request": (4000, 200, "Invalid request - missing required CallerId parameter"),
    "system_error": (5000, 200, "System error - please try again"),
    "disabled": (4001, 200, "Disabled"),
    "paused": (4002, 200, "Campaign is Paused"),
    "invalid_caller_id": (4003, 200, "Invalid caller ID"),
    "capacity_check_failed": (4004, 200, "Capacity check failed"),
    "duplicate": (4005, 200, "Duplicate. CallerId already paid out."),
    "no_numbers": (4006, 200, "No phone numbers available for PSTN."),
    "rate_limit": (5001, 429, "Rate limit exceeded"),
    "unknown_code": (7777, 200, "Something CallGrid never documented"),
}

HTML_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
)
OVERSIZED_BYTES = 70 * 1024  # past the client's 64 KiB cap
BID_PREFIX = "/api/bid/"
AMOUNT_PLACEHOLDER = "__callgrid_simulator_bid_amount__"


class ScenarioError(ValueError):
    """A scenario or behaviour the simulator cannot follow; the message says what is wrong."""


def validate_behaviour(behaviour: Mapping[str, Any]) -> dict[str, Any]:
    """Check a behaviour's keys and values and return a plain copy.

    Unknown keys are refused so a typo (``"latency"`` for ``"latency_ms"``) fails loudly
    instead of silently doing nothing.
    """
    if not isinstance(behaviour, Mapping):
        raise ScenarioError("a behaviour must be a JSON object")
    unknown = set(behaviour) - set(DEFAULT_BEHAVIOUR)
    if unknown:
        raise ScenarioError(f"unknown behaviour keys: {', '.join(sorted(unknown))}")
    clean = dict(behaviour)
    respond = clean.get("respond", "accept")
    if not isinstance(respond, str) or respond not in RESPONSES:
        raise ScenarioError(f"respond must be one of {', '.join(sorted(RESPONSES))}")
    amount = clean.get("bid_amount")
    if amount is not None:
        try:
            Decimal(str(amount))
        except InvalidOperation:
            raise ScenarioError(f"bid_amount {amount!r} is not a decimal number") from None
        clean["bid_amount"] = str(amount)
    for key, most in _MOST.items():
        if key in clean and not (non_negative(clean[key]) and clean[key] <= most):
            raise ScenarioError(f"{key} must be a number from 0 to {most:,}")
    limit = clean.get("rate_limit_per_minute")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ScenarioError("rate_limit_per_minute must be a positive integer or null")
    status = clean.get("http_status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ScenarioError("http_status must be an HTTP status code or null")
    return clean


def validate_scenario(scenario: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a scenario ``{"default": {...}, "grids": {...}}`` and return a plain copy."""
    if scenario is None:
        return {"default": {}, "grids": {}}
    if not isinstance(scenario, Mapping):
        raise ScenarioError("a scenario must be a JSON object")
    unknown = set(scenario) - {"default", "grids"}
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
    grids = scenario.get("grids")
    grids = {} if grids is None else grids
    if not isinstance(grids, Mapping):
        raise ScenarioError("grids must map grid IDs to behaviours")
    default = scenario.get("default")
    return {
        "default": validate_behaviour({} if default is None else default),
        "grids": {str(grid): validate_behaviour(b) for grid, b in grids.items()},
    }


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read and validate a scenario file (JSON, or YAML when PyYAML is installed)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ScenarioError("YAML scenarios need PyYAML; use JSON instead") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{path}: not valid JSON ({exc})") from None
    return validate_scenario(data)


# The largest value of each numeric behaviour: a wait longer than an hour tests nothing, and
# past what time.sleep can take the handler itself would crash.
_MOST: dict[str, int] = {
    "latency_ms": 3_600_000,
    "latency_jitter_ms": 3_600_000,
    "retry_after": 86_400,
    "fail_times": 1_000_000,
    "dribble_interval": 3_600,
}


def non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
