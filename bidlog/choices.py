"""Enumerations of the bid log. Outcomes come from the Bid API package, where they are decided."""

from django.db import models

from callgrid_portal.bidapi.outcomes import OUTCOME_CLASS, Outcome, OutcomeClass, outcome_class

__all__ = [
    "OUTCOME_CLASS",
    "AlertRule",
    "AlertStatus",
    "Outcome",
    "OutcomeClass",
    "RoutingStrategy",
    "Source",
    "outcome_class",
]


class Source(models.TextChoices):
    LIVE = "live", "Live call"
    TEST = "test", "Test bid"
    HEALTH = "health", "Health check"
    IMPORT = "import", "Imported"


class RoutingStrategy(models.TextChoices):
    WATERFALL = "waterfall", "Waterfall (priority order)"
    HIGHEST_BID = "highest_bid", "Highest bid (parallel auction)"


class AlertRule(models.TextChoices):
    """Alert rules taken from the error-code reference's advice on when to act (SPEC §5)."""

    DISABLED = "disabled", "Campaign disabled (repeated 4001)"
    NO_NUMBERS = "no_numbers", "No available numbers (repeated 4006)"
    CAPACITY_CHECK = "capacity_check", "Capacity check failing while active (4004)"
    RATE_LIMITED = "rate_limited", "Rate limited (repeated 5001/429)"
    DECLINES = "declines", "Consistent declines (2000)"
    TIMEOUTS = "timeouts", "Timeout rate too high"
    HEALTH_FAILING = "health_failing", "Health check failing"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
