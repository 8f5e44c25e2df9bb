"""The bid log: every routing decision (Call) and every attempt (BidLog), nothing lost."""

from django.db import models
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus, Outcome, RoutingStrategy, Source, outcome_class
from buyers.models import Buyer


class Call(models.Model):
    """One routing decision: which buyer got an inbound call, and for how much.

    A routed call counts as paid out for its buyer's duplicate window unless an API client
    marks ``paid_out`` false.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    caller_id = models.CharField(max_length=20)
    state_code = models.CharField(max_length=2, blank=True)
    params = models.JSONField(default=dict, blank=True)
    strategy = models.CharField(max_length=20, choices=RoutingStrategy.choices)
    winner = models.ForeignKey(
        Buyer, null=True, blank=True, on_delete=models.SET_NULL, related_name="won_calls"
    )
    bid_amount = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    destination = models.CharField(max_length=32, blank=True)
    routed = models.BooleanField(default=False)
    paid_out = models.BooleanField(default=True)
    duration_ms = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.LIVE)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Duplicate window and caps: routed calls of one buyer (and caller) by time.
            models.Index(
                fields=["winner", "caller_id", "created_at"],
                name="bidlog_call_winner_caller_ts",
                condition=models.Q(routed=True),
            ),
            models.Index(fields=["caller_id", "created_at"], name="bidlog_call_caller_ts"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(routed=False) | models.Q(winner__isnull=False),
                name="%(app_label)s_%(class)s_routed_has_winner",
            ),
        ]

    def __str__(self) -> str:
        verdict = f"routed to {self.winner_id}" if self.routed else "not routed"
        return f"Call {self.pk} from {self.caller_id}: {verdict}"


class BidLog(models.Model):
    """One bid attempt for one buyer: a request sent, or a local decision not to send one.

    ``request`` is the exact JSON sent; ``raw_response`` keeps a truncated body when the answer
    was not JSON. Skips (``skipped_*``) have no HTTP status. A ``pending`` row is a queued test
    bid that a worker will fill in.
    """

    # Indexed through the composite (buyer, created_at) indexes below.
    buyer = models.ForeignKey(Buyer, on_delete=models.PROTECT, related_name="bids", db_index=False)
    call = models.ForeignKey(
        Call, null=True, blank=True, on_delete=models.SET_NULL, related_name="bids"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.LIVE)
    created_at = models.DateTimeField(default=timezone.now)
    caller_id = models.CharField(max_length=20, blank=True)
    state_code = models.CharField(max_length=2, blank=True)
    request = models.JSONField(default=dict, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    code = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    bid_amount = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    destination = models.CharField(max_length=32, blank=True)
    response_caller_id = models.CharField(max_length=32, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    error = models.TextField(blank=True)
    raw_response = models.TextField(blank=True)
    external_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="bidlog_bid_ts"),
            models.Index(fields=["buyer", "-created_at", "-id"], name="bidlog_bid_buyer_ts"),
            models.Index(fields=["outcome", "-created_at", "-id"], name="bidlog_bid_outcome_ts"),
            models.Index(fields=["code", "-created_at", "-id"], name="bidlog_bid_code_ts"),
            models.Index(fields=["source", "-created_at", "-id"], name="bidlog_bid_source_ts"),
            models.Index(fields=["caller_id", "-created_at", "-id"], name="bidlog_bid_caller_ts"),
            models.Index(
                fields=["buyer", "outcome", "-created_at", "-id"],
                name="bidlog_bid_buyer_outcome_ts",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=Outcome.values),
                name="%(app_label)s_%(class)s_outcome_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(bid_amount__isnull=True) | models.Q(bid_amount__gte=0),
                name="%(app_label)s_%(class)s_bid_amount_gte_0",
            ),
        ]

    def __str__(self) -> str:
        return f"Bid {self.pk} to {self.buyer_id}: {self.outcome}"

    @property
    def outcome_class(self) -> str:
        return outcome_class(self.outcome)


class Alert(models.Model):
    """A problem with one buyer, opened once per buyer and rule, resolved when it recovers.

    Repeats of an open alert raise ``occurrences`` and ``last_seen_at`` instead of opening a
    new one; the partial unique constraint keeps one open alert per buyer and rule.
    """

    buyer = models.ForeignKey(Buyer, on_delete=models.CASCADE, related_name="alerts")
    rule = models.CharField(max_length=20, choices=AlertRule.choices)
    code = models.PositiveSmallIntegerField(null=True, blank=True)
    priority = models.CharField(max_length=12)
    status = models.CharField(max_length=10, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "-opened_at"], name="bidlog_alert_status_ts")]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "rule"],
                condition=models.Q(status="open"),
                name="%(app_label)s_%(class)s_one_open_per_rule",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_rule_display()} on {self.buyer_id} ({self.status})"
