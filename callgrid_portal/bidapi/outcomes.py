"""Outcomes: the portal's reading of one bid attempt, and the class each belongs to.

Classes let reasons compare across platforms, as OpenRTB's seat-non-bid codes do: ``bid``,
``no_bid`` (the buyer said no), ``blocked`` (a rule stopped the bid), ``error`` (it failed).
"""

from django.db import models


class Outcome(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    BELOW_MIN_BID = "below_min_bid", "Below minimum bid"
    DECLINED = "declined", "Declined (2000)"
    NO_CAPACITY = "no_capacity", "No capacity (3000)"
    INVALID_REQUEST = "invalid_request", "Invalid request (4000)"
    SYSTEM_ERROR = "system_error", "System error (5000)"
    DISABLED = "disabled", "Disabled campaign (4001)"
    PAUSED = "paused", "Paused campaign (4002)"
    INVALID_CALLER_ID = "invalid_caller_id", "Invalid caller ID (4003)"
    CAPACITY_CHECK_FAILED = "capacity_check_failed", "Capacity check failed (4004)"
    DUPLICATE = "duplicate", "Duplicate call (4005)"
    NO_NUMBERS = "no_numbers", "No available numbers (4006)"
    RATE_LIMITED = "rate_limited", "Rate limited (5001/429)"
    TIMEOUT = "timeout", "Timeout"
    NETWORK_ERROR = "network_error", "Network error"
    BAD_RESPONSE = "bad_response", "Bad response"
    SKIPPED_DUPLICATE = "skipped_duplicate", "Skipped: duplicate window"
    SKIPPED_RATE_LIMIT = "skipped_rate_limit", "Skipped: rate limit"
    SKIPPED_CONCURRENCY = "skipped_concurrency", "Skipped: concurrency cap"
    SKIPPED_COOLDOWN = "skipped_cooldown", "Skipped: no-capacity cooldown"
    SKIPPED_STATE = "skipped_state", "Skipped: state not accepted"
    SKIPPED_HOURS = "skipped_hours", "Skipped: outside operating hours"
    SKIPPED_CAP = "skipped_cap", "Skipped: daily/monthly cap"
    SKIPPED_STATUS = "skipped_status", "Skipped: buyer paused or disabled"
    SKIPPED_ENDPOINT = "skipped_endpoint", "Skipped: endpoint not allowed"
    PENDING = "pending", "Pending"


class OutcomeClass(models.TextChoices):
    BID = "bid", "Bid"
    NO_BID = "no_bid", "No bid"
    BLOCKED = "blocked", "Blocked"
    ERROR = "error", "Error"
    PENDING = "pending", "Pending"


OUTCOME_CLASS: dict[str, str] = {
    Outcome.ACCEPTED: OutcomeClass.BID,
    Outcome.BELOW_MIN_BID: OutcomeClass.NO_BID,
    Outcome.DECLINED: OutcomeClass.NO_BID,
    Outcome.NO_CAPACITY: OutcomeClass.NO_BID,
    Outcome.INVALID_REQUEST: OutcomeClass.ERROR,
    Outcome.SYSTEM_ERROR: OutcomeClass.ERROR,
    Outcome.DISABLED: OutcomeClass.BLOCKED,
    Outcome.PAUSED: OutcomeClass.BLOCKED,
    Outcome.INVALID_CALLER_ID: OutcomeClass.ERROR,
    Outcome.CAPACITY_CHECK_FAILED: OutcomeClass.BLOCKED,
    Outcome.DUPLICATE: OutcomeClass.BLOCKED,
    Outcome.NO_NUMBERS: OutcomeClass.BLOCKED,
    Outcome.RATE_LIMITED: OutcomeClass.ERROR,
    Outcome.TIMEOUT: OutcomeClass.ERROR,
    Outcome.NETWORK_ERROR: OutcomeClass.ERROR,
    Outcome.BAD_RESPONSE: OutcomeClass.ERROR,
    Outcome.SKIPPED_DUPLICATE: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_RATE_LIMIT: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_CONCURRENCY: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_COOLDOWN: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_STATE: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_HOURS: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_CAP: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_STATUS: OutcomeClass.BLOCKED,
    Outcome.SKIPPED_ENDPOINT: OutcomeClass.BLOCKED,
    Outcome.PENDING: OutcomeClass.PENDING,
}

# Outcomes decided locally: no HTTP request went out.
LOCAL_OUTCOMES = frozenset(o for o in Outcome.values if o.startswith("skipped_")) | {
    Outcome.PENDING
}


def outcome_class(outcome: str) -> str:
    """The class (bid / no_bid / blocked / error / pending) of ``outcome``."""
    return OUTCOME_CLASS[outcome]
