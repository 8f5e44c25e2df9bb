"""Buyers for the tests: valid fields as the model, the admin form and the pages take them,
and the changes each rule of SPEC §3 and §8 must refuse."""

import json
from decimal import Decimal
from typing import Any

from django.http import HttpResponseBase
from django.test import Client
from django.urls import reverse

from buyers.models import Buyer

GRID_ID = "cm97s8hmv000ijt06r4djmije"


def valid_fields(**overrides: Any) -> dict[str, Any]:
    """A buyer that passes every rule, as Python values."""
    fields: dict[str, Any] = {
        "name": "Acme Insurance",
        "grid_id": GRID_ID,
        "endpoint_url": "https://bid.callgrid.com/api/bid/",
        "min_bid": Decimal("12.50"),
        "vertical": "insurance",
        "accepted_states": ["CO", "TX"],
        "extra_params": {"PublisherId": "pub-1"},
        "operating_hours": {"mon": [["09:00", "17:00"]]},
    }
    fields.update(overrides)
    return fields


# (case id, overrides, field at fault). Values are valid JSON too, so the API can send them.
REFUSED = [
    ("grid_id_too_short", {"grid_id": "cm97s8hmv000ijt06r4"}, "grid_id"),
    ("grid_id_uppercase", {"grid_id": "CM97S8HMV000IJT06R4DJMIJE"}, "grid_id"),
    ("grid_id_symbols", {"grid_id": "cm97s8hmv000-jt06r4djmije"}, "grid_id"),
    ("grid_id_41_chars", {"grid_id": "a" * 41}, "grid_id"),
    ("min_bid_negative", {"min_bid": "-1.00"}, "min_bid"),
    ("min_bid_three_places", {"min_bid": "1.005"}, "min_bid"),
    ("timeout_zero", {"timeout_seconds": 0}, "timeout_seconds"),
    ("timeout_eleven", {"timeout_seconds": 11}, "timeout_seconds"),
    (
        "insurance_window_below_30",
        {"vertical": "insurance", "duplicate_window_days": 29},
        "duplicate_window_days",
    ),
    (
        "insurance_window_above_90",
        {"vertical": "insurance", "duplicate_window_days": 91},
        "duplicate_window_days",
    ),
    (
        "home_services_window_above_14",
        {"vertical": "home_services", "duplicate_window_days": 15},
        "duplicate_window_days",
    ),
    (
        "home_services_window_below_7",
        {"vertical": "home_services", "duplicate_window_days": 6},
        "duplicate_window_days",
    ),
    (
        "financial_window_below_90",
        {"vertical": "financial", "duplicate_window_days": 60},
        "duplicate_window_days",
    ),
    (
        "financial_window_above_180",
        {"vertical": "financial", "duplicate_window_days": 181},
        "duplicate_window_days",
    ),
    (
        "solar_window_below_60",
        {"vertical": "solar", "duplicate_window_days": 30},
        "duplicate_window_days",
    ),
    (
        "solar_window_above_90",
        {"vertical": "solar", "duplicate_window_days": 91},
        "duplicate_window_days",
    ),
    ("states_bad_code", {"accepted_states": ["CO", "XX"]}, "accepted_states"),
    ("states_duplicates", {"accepted_states": ["CO", "CO"]}, "accepted_states"),
    ("extra_params_nested", {"extra_params": {"a": {"b": "c"}}}, "extra_params"),
    ("extra_params_number", {"extra_params": {"PublisherId": 5}}, "extra_params"),
    ("extra_params_caller_id", {"extra_params": {"CallerId": "3035551234"}}, "extra_params"),
    ("extra_params_not_object", {"extra_params": ["PublisherId"]}, "extra_params"),
    ("hours_bad_weekday", {"operating_hours": {"monday": [["09:00", "17:00"]]}}, "operating_hours"),
    (
        "hours_close_before_open",
        {"operating_hours": {"mon": [["17:00", "09:00"]]}},
        "operating_hours",
    ),
    ("hours_bad_time", {"operating_hours": {"mon": [["9am", "17:00"]]}}, "operating_hours"),
    ("hours_not_object", {"operating_hours": [["09:00", "17:00"]]}, "operating_hours"),
    ("timezone_unknown", {"timezone": "Mars/Olympus"}, "timezone"),
    ("health_check_without_caller_id", {"health_check_minutes": 5}, "health_check_caller_id"),
    ("health_check_bad_caller_id", {"health_check_caller_id": "123"}, "health_check_caller_id"),
    ("daily_cap_above_monthly", {"daily_cap": 50, "monthly_cap": 10}, "daily_cap"),
    ("endpoint_private_ip", {"endpoint_url": "http://10.0.0.1/"}, "endpoint_url"),
    ("endpoint_metadata", {"endpoint_url": "http://169.254.169.254/"}, "endpoint_url"),
    ("endpoint_not_allowlisted", {"endpoint_url": "https://evil.example.com/bid/"}, "endpoint_url"),
    ("endpoint_plain_http", {"endpoint_url": "http://bid.callgrid.com/api/bid/"}, "endpoint_url"),
    ("endpoint_credentials", {"endpoint_url": "https://u:p@bid.callgrid.com/"}, "endpoint_url"),
    ("status_unknown", {"status": "deleted"}, "status"),
]


def form_data(**overrides: Any) -> dict[str, Any]:
    """What a browser posts for a valid buyer: strings, and JSON typed into text boxes.

    A list of state codes is typed as "CO, TX" (as a person would); anything else in the
    JSON fields is typed as JSON.
    """
    data: dict[str, Any] = {
        "status": "active",
        "priority": "10",
        "caller_id_format": "10-digit",
        "timeout_seconds": "10",
        "max_concurrency": "100",
        "rate_limit_per_minute": "100",
        "capacity_cooldown_seconds": "60",
        "health_check_minutes": "0",
        "timezone": "America/New_York",
    }
    for name, value in valid_fields(**overrides).items():
        if name == "accepted_states" and isinstance(value, list):
            data[name] = ", ".join(value)
        elif name in ("accepted_states", "extra_params", "operating_hours"):
            data[name] = json.dumps(value)
        else:
            data[name] = "" if value is None else str(value)
    return data


def page_fields(**overrides: Any) -> dict[str, Any]:
    """What a person types into the new-buyer page for a valid buyer."""
    fields = {
        "name": "Acme Auto",
        "grid_id": "cm97s8hmv000777ijt06r4dj",
        "status": "active",
        "priority": "3",
        "vertical": "insurance",
        "notes": "",
        "endpoint_url": "https://bid.callgrid.com/api/bid/",
        "min_bid": "12.50",
        "caller_id_format": "10-digit",
        "accepted_states": "co, tx",
        "extra_params": "",
        "duplicate_window_days": "30",
        "timeout_seconds": "5",
        "max_concurrency": "10",
        "rate_limit_per_minute": "120",
        "capacity_cooldown_seconds": "60",
        "daily_cap": "",
        "monthly_cap": "",
        "timezone": "America/Denver",
        "operating_hours": "",
        "health_check_minutes": "0",
        "health_check_caller_id": "",
    }
    fields.update(overrides)
    return fields


def page_create(client: Client, **overrides: Any) -> tuple[HttpResponseBase, Buyer | None]:
    """Post the new-buyer form; the answer, and the buyer it made (None when refused)."""
    response = client.post(reverse("buyers:create"), page_fields(**overrides))
    return response, Buyer.objects.filter(name="Acme Auto").first()
