"""The bid log: every routing decision (Call) and every attempt (BidLog), nothing lost."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus, Outcome, RoutingStrategy, Source, outcome_class
from bidlog.rollup_models import LATENCY_EDGES_MS as LATENCY_EDGES_MS
from bidlog.rollup_models import LATENCY_FIELDS as LATENCY_FIELDS
from bidlog.rollup_models import WHOLE_BUCKET as WHOLE_BUCKET
from bidlog.rollup_models import BidOutcomeRollup as BidOutcomeRollup
from bidlog.rollup_models import BidOutcomeTotalRollup as BidOutcomeTotalRollup
from bidlog.rollup_models import BidPerformanceRollup as BidPerformanceRollup
from bidlog.rollup_models import BidStateRollup as BidStateRollup
from bidlog.rollup_models import BidStateTotalRollup as BidStateTotalRollup
from bidlog.rollup_models import BuyerSummaryRollup as BuyerSummaryRollup
from bidlog.rollup_models import CallRollup as CallRollup
from bidlog.rollup_models import CallTagRollup as CallTagRollup
from bidlog.rollup_models import CallTotalRollup as CallTotalRollup
from bidlog.rollup_models import RollupBucket as RollupBucket
from bidlog.rollup_models import RollupGrain as RollupGrain
from bidlog.rollup_models import SummaryMeasures as SummaryMeasures
from bidlog.rollup_models import SummaryTotalRollup as SummaryTotalRollup
from bidlog.rollup_models import TagOutcomeRollup as TagOutcomeRollup
from bidlog.rollup_models import TagSummaryRollup as TagSummaryRollup
from bidlog.tags import TAG_MAX_LENGTH
from buyers.models import Buyer


class Call(models.Model):
    """One routing decision: which buyer got an inbound call, and for how much.

    A routed call counts as paid out for its buyer's duplicate window unless an API client
    marks ``paid_out`` false.

    On PostgreSQL this table and the bid log are partitioned by month of ``created_at``
    (``bidlog.partitions``, migration 0008). The primary key in the database is then
    ``(id, created_at)``, as PostgreSQL requires of a partitioned table, while Django keeps
    ``id`` alone as the model's pk: one sequence gives every id, so ``id`` is unique in
    practice, and Django needs a single pk column.
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
    # Set by the router on every call it decides, before the first write: a retried write or
    # a spool replay of the same decision finds it taken and is not written twice.
    route_key = models.UUIDField(null=True, blank=True, editable=False)
    # Tags from the route request (bidlog.tags): the campaign the call belongs to and the
    # traffic source that sent it; empty when not given.
    campaign = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    publisher = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The calls list and the bids list filtered by a campaign or publisher, newest
            # first; partial, so untagged calls cost nothing.
            models.Index(
                fields=["campaign", "created_at"],
                name="bidlog_call_campaign_ts",
                condition=~models.Q(campaign=""),
            ),
            models.Index(
                fields=["publisher", "created_at"],
                name="bidlog_call_publisher_ts",
                condition=~models.Q(publisher=""),
            ),
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
            # Partial: calls from elsewhere (imports, older rows) have none and cost nothing.
            # With created_at because PostgreSQL partitions the table by it (a unique index
            # of a partitioned table must hold the partition key). Still exact for what it
            # guards: a retried write re-inserts the same decision, created_at and all, and
            # the spool replay looks the key up alone before writing (bidlog.routing.spool).
            models.UniqueConstraint(
                fields=["route_key", "created_at"],
                condition=models.Q(route_key__isnull=False),
                name="%(app_label)s_%(class)s_route_key_unique",
            ),
        ]

    def __str__(self) -> str:
        verdict = f"routed to {self.winner_id}" if self.routed else "not routed"
        return f"Call {self.pk} from {self.caller_id}: {verdict}"


# A route writes its call with the moment it started and each bid with the moment its attempt
# began, within the call's deadline: seconds later. An hour either side is far more than
# enough, and saying so lets PostgreSQL read the bid log or the calls of one or two months
# instead of every month's partition.
CALL_BIDS_WINDOW = timedelta(hours=1)


def bid_calls_q(spans: Iterable[tuple[datetime | None, datetime | None]]) -> Q:
    """Bids whose call was made when bids of ``spans`` (``[start, end)``, either end open:
    ``None``) can have been made (:data:`CALL_BIDS_WINDOW`). A filter on a call's tags adds it,
    so PostgreSQL reads those months' tagged calls through their ``(campaign, created_at)`` or
    ``(publisher, created_at)`` index instead of looking each bid's call up in every month.
    An empty ``spans`` bounds nothing."""
    query = Q()
    for start, end in spans:
        span = Q()
        if start is not None:
            span &= Q(call__created_at__gte=start - CALL_BIDS_WINDOW)
        if end is not None:
            span &= Q(call__created_at__lt=end + CALL_BIDS_WINDOW)
        if not span:
            return Q()  # a span open at both ends: any call
        query |= span
    return query


class BidLog(models.Model):
    """One bid to one buyer: a request sent, or a local decision not to send one.

    A live routing attempt is one row each (a retry is a row of its own, linked by its call).
    A test bid or a health check is one row whatever its retries: its answer fields are its
    final attempt's and ``trace`` lists every attempt, with any send a lost worker made.
    ``request`` is the exact JSON sent; ``raw_response`` keeps a truncated body when the answer
    was not JSON. Skips (``skipped_*``) have no HTTP status. A ``pending`` row is a queued test
    bid that a worker will fill in.
    """

    # Indexed through the composite (buyer, created_at) indexes below.
    buyer = models.ForeignKey(Buyer, on_delete=models.PROTECT, related_name="bids", db_index=False)
    # No foreign key in the database: on PostgreSQL the calls are partitioned, and a key can
    # only reference a unique (id, created_at). Django still applies SET_NULL when a call is
    # deleted; the router writes a call and its bids in one statement.
    call = models.ForeignKey(
        Call,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bids",
        db_constraint=False,
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
    # Set only on imported records, and unique among them (see Meta.constraints). NULL, not
    # "", is "none": the partial unique index leaves NULLs out.
    external_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Every attempt of a test bid or health check, oldest first (see
    # bidlog.routing.record.bid_trace);
    # the row's own answer fields are its final attempt's. Live rows, one per attempt, leave
    # it empty.
    trace = models.JSONField(default=list, blank=True)

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
            # A partial index: the bids the portal makes itself (nearly all of them) have no
            # external_id, and so cost no entry here, nor in the pattern index PostgreSQL
            # got for unique=True, which nothing searched. With created_at because the table
            # is partitioned by it on PostgreSQL; the import skips a known external_id
            # whatever its time (bidlog.ingest.imports), so the key alone stays unique.
            models.UniqueConstraint(
                fields=["external_id", "created_at"],
                condition=models.Q(external_id__isnull=False),
                name="%(app_label)s_%(class)s_external_id_unique",
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
    # Someone has seen it and is on it: who and when (kept after the alert resolves).
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="acknowledged_alerts",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-opened_at"], name="bidlog_alert_status_ts"),
            # The header's count of open immediate alerts on every page.
            models.Index(
                fields=["priority"],
                name="bidlog_alert_open_priority",
                condition=models.Q(status="open"),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "rule"],
                condition=models.Q(status="open"),
                name="%(app_label)s_%(class)s_one_open_per_rule",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_rule_display()} on {self.buyer_id} ({self.status})"


class AlertMute(models.Model):
    """A buyer's alerts silenced until a time: they still open and show, but send no notice.

    One row per buyer; muting again moves ``until``; unmuting deletes the row. A row whose
    ``until`` has passed is no mute at all.
    """

    buyer = models.OneToOneField(Buyer, on_delete=models.CASCADE, related_name="alert_mute")
    until = models.DateTimeField()
    muted_at = models.DateTimeField(default=timezone.now)
    muted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alert_mutes",
    )

    class Meta:
        ordering = ["until", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(until__gt=models.F("muted_at")),
                name="%(app_label)s_%(class)s_until_after_muted_at",
            ),
        ]

    def __str__(self) -> str:
        return f"Alerts of {self.buyer_id} muted until {self.until:%Y-%m-%d %H:%M %Z}"


class SavedBidFilter(models.Model):
    """A bids-list filter a person saved under a name, to open again after logging out.

    ``query`` is the list page's query string as it was (filters and sort; never a page
    cursor). It is checked again by the page's filters whenever it is opened, so a filter
    saved before a rule changed shows the field to fix rather than every bid.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_bid_filters"
    )
    name = models.CharField(max_length=60)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"], name="%(app_label)s_%(class)s_unique_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}: ?{self.query}"
