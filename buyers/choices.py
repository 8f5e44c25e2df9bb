"""Enumerations of the buyers app."""

from django.db import models


class BuyerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    DISABLED = "disabled", "Disabled"


class Vertical(models.TextChoices):
    INSURANCE = "insurance", "Insurance"
    HOME_SERVICES = "home_services", "Home services"
    FINANCIAL = "financial", "Financial"
    SOLAR = "solar", "Solar"
    OTHER = "other", "Other"


class CallerIdFormat(models.TextChoices):
    TEN_DIGIT = "10-digit", "10 digits (3035551234)"
    E164 = "e164", "E.164 (+13035551234)"


# Duplicate windows by industry, from the error-code reference (4005): (default, min, max) days.
DUPLICATE_WINDOW_DAYS: dict[str, tuple[int, int, int]] = {
    Vertical.INSURANCE: (30, 30, 90),
    Vertical.HOME_SERVICES: (7, 7, 14),
    Vertical.FINANCIAL: (90, 90, 180),
    Vertical.SOLAR: (60, 60, 90),
    Vertical.OTHER: (30, 1, 365),
}
