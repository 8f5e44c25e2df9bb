"""Buyers: who we sell calls to and how to reach them over the Bid API."""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from buyers import validators
from buyers.choices import BuyerStatus, CallerIdFormat, Vertical
from callgrid_portal.bidapi.client import BidTarget


def default_endpoint_url() -> str:
    return settings.CALLGRID_DEFAULT_ENDPOINT


class Buyer(models.Model):
    """A CallGrid buyer (one Grid ID) and the rules for sending it bids.

    Field semantics follow SPEC §3. ``clean()`` checks the rules that span fields (the
    duplicate window range of the vertical); single-field rules are validators, so the model,
    the admin form and the API refuse the same input with the same message.
    """

    name = models.CharField(max_length=100, unique=True)
    grid_id = models.CharField(
        "Grid ID", max_length=40, unique=True, validators=[validators.validate_grid_id]
    )
    endpoint_url = models.URLField(
        max_length=300,
        default=default_endpoint_url,
        validators=[validators.validate_endpoint_url],
        help_text="Bid API base URL; the Grid ID is appended.",
    )
    status = models.CharField(
        max_length=10, choices=BuyerStatus.choices, default=BuyerStatus.ACTIVE, db_index=True
    )
    min_bid = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        default=Decimal("0.00"),
        validators=[MinValueValidator(Decimal("0.00"))],
        help_text="USD; a 1000 answer below this is not acceptable.",
    )
    vertical = models.CharField(max_length=20, choices=Vertical.choices, default=Vertical.OTHER)
    duplicate_window_days = models.PositiveSmallIntegerField(
        blank=True,
        help_text="Days a paid-out caller is not sent again; blank takes the vertical's default.",
    )
    timeout_seconds = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    max_concurrency = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(10000)]
    )
    priority = models.PositiveIntegerField(
        default=10, help_text="Waterfall order: lower numbers are asked first."
    )
    accepted_states = models.JSONField(
        default=list,
        blank=True,
        validators=[validators.validate_state_codes],
        help_text="Two-letter state codes; empty accepts every state.",
    )
    caller_id_format = models.CharField(
        max_length=10, choices=CallerIdFormat.choices, default=CallerIdFormat.TEN_DIGIT
    )
    extra_params = models.JSONField(
        default=dict,
        blank=True,
        validators=[validators.validate_extra_params],
        help_text="Static parameters sent with every bid (PublisherId, CampaignType, ...).",
    )
    health_check_minutes = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(1440)], help_text="0 turns health checks off."
    )
    health_check_caller_id = models.CharField(
        max_length=20,
        blank=True,
        validators=[validators.validate_caller_id],
        help_text="A test number, never a live caller.",
    )
    capacity_cooldown_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(86400)],
        help_text="After a 3000 No Capacity, skip this buyer for this long.",
    )
    timezone = models.CharField(
        max_length=64, default="America/New_York", validators=[validators.validate_timezone]
    )
    operating_hours = models.JSONField(
        default=dict,
        blank=True,
        validators=[validators.validate_operating_hours],
        help_text='Per weekday, e.g. {"mon": [["09:00", "17:00"]]}; empty is always open.',
    )
    daily_cap = models.PositiveIntegerField(null=True, blank=True)
    monthly_cap = models.PositiveIntegerField(null=True, blank=True)
    auto_pause = models.BooleanField(
        default=False, help_text="Pause this buyer when an immediate alert opens."
    )
    notes = models.TextField(blank=True)
    # Health-check bookkeeping: the scheduler claims a due check by moving this forward with
    # a compare-and-set update, so two beat ticks never queue the same check twice.
    next_health_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_bid__gte=0), name="%(app_label)s_%(class)s_min_bid_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=10),
                name="%(app_label)s_%(class)s_timeout_1_10",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=BuyerStatus.values),
                name="%(app_label)s_%(class)s_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.grid_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.duplicate_window_days is None:
            self.duplicate_window_days = validators.default_duplicate_window(self.vertical)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        validators.validate_buyer(self)

    @property
    def bid_url(self) -> str:
        """The full Bid API URL for this buyer: endpoint plus Grid ID."""
        return self.endpoint_url.rstrip("/") + "/" + self.grid_id

    def as_bid_target(self) -> BidTarget:
        """What the Bid API client needs to know to send this buyer a bid."""
        return BidTarget(
            grid_id=self.grid_id,
            endpoint_url=self.endpoint_url,
            timeout_seconds=float(self.timeout_seconds),
            caller_id_format=self.caller_id_format,
            min_bid=self.min_bid,
            extra_params=dict(self.extra_params or {}),
            policy=validators.endpoint_policy(),
            user_agent=settings.CALLGRID_USER_AGENT,
        )
