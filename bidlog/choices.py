"""Enumerations of the bid log. Outcomes come from the Bid API package, where they are decided."""

from django.db import models

from callgrid_portal.bidapi.outcomes import OUTCOME_CLASS, Outcome, OutcomeClass, outcome_class

__all__ = ["OUTCOME_CLASS", "Outcome", "OutcomeClass", "RoutingStrategy", "Source", "outcome_class"]


class Source(models.TextChoices):
    LIVE = "live", "Live call"
    TEST = "test", "Test bid"
    HEALTH = "health", "Health check"
    IMPORT = "import", "Imported"


class RoutingStrategy(models.TextChoices):
    WATERFALL = "waterfall", "Waterfall (priority order)"
    HIGHEST_BID = "highest_bid", "Highest bid (parallel auction)"
