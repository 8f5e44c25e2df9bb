"""The report rollups: the bid log summed per hour and UTC day, read by reports over any range.

Aggregates of the bid log at hour and day grains (bidlog/reports/rollups.py builds them,
bidlog/reports/services.py reads them). They outlive the raw rows (retention), so reports over
old ranges keep working. Day rows are sums of the 24 hour rows of a UTC day. ``bidlog.models``
re-exports every name here, so Django finds the models in the ``bidlog`` app as before.
"""

from django.db import models

from bidlog.choices import Outcome, Source
from bidlog.tags import TAG_MAX_LENGTH
from buyers.models import Buyer


# Lower edges (ms) of the latency histogram buckets; bucket i is [edge i, edge i+1), the last one
# is open-ended. 10 ms steps up to 100 ms, then each edge at most 10% above the one before, so
# the middle of a bucket is within 5 ms or 5% of any value inside it (the stated error of every
# percentile a report gives). Changing the edges needs a migration and a rebuild of all rollups.
def _latency_edges() -> tuple[int, ...]:
    edges = list(range(0, 100, 10))
    edge = 100
    while edge < 12_000:
        edges.append(edge)
        edge = edge * 11 // 10
    edges.append(12_000)
    return tuple(edges)


LATENCY_EDGES_MS: tuple[int, ...] = _latency_edges()
LATENCY_FIELDS: tuple[str, ...] = tuple(f"h{i:02d}" for i in range(len(LATENCY_EDGES_MS)))


class RollupGrain(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day (UTC)"
    # Only the narrow summary rollups, and only for recent hours: the ends of a summary's
    # range (bidlog.reports.fine_rollups).
    FIVE_MINUTES = "5min", "5 minutes"


class RollupBucket(models.Model):
    """Which hour or day buckets have been rolled up, and whether new rows made one stale.

    Reports read rollups only for buckets recorded here as built and fresh; anything else is
    read from raw rows, so a late or missing rollup never makes a report wrong, only slower.
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    built_at = models.DateTimeField(null=True, blank=True)
    stale = models.BooleanField(default=True)
    # Set on the current hour, rolled up while it runs: its rollup rows hold the raw rows
    # created before this moment only. Empty: the rows hold the whole bucket.
    complete_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["grain", "bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["grain", "bucket_start"], name="%(app_label)s_%(class)s_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        state = "stale" if self.stale else "fresh"
        if self.complete_until is not None:
            state += f", until {self.complete_until:%H:%M:%S}"
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} ({state})"


# Buckets whose rollup rows hold every raw row of the bucket: built, not stale, not partial.
WHOLE_BUCKET = models.Q(stale=False, complete_until__isnull=True)


class BidOutcomeRollup(models.Model):
    """Attempts per bucket x buyer x source x outcome x code (code 0: none), skips included."""

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    buyer = models.ForeignKey(Buyer, on_delete=models.CASCADE, related_name="+", db_index=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    code = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(fields=["grain", "bucket_start"], name="bidlog_outroll_ts"),
            models.Index(fields=["buyer", "grain", "bucket_start"], name="bidlog_outroll_buyer_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.buyer_id} {self.outcome}"


class BidPerformanceRollup(models.Model):
    """Bids, acceptances, timeouts and the latency histogram per bucket x buyer x source.

    ``buyer`` is empty on the all-buyers rows of the hour grain, which keep the time series of
    the whole portal to a few thousand rows a month. Latency counts only bids that sent a
    request; ``h00``... are the histogram buckets of ``LATENCY_EDGES_MS``.
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    buyer = models.ForeignKey(
        Buyer, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    bids = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    timeouts = models.PositiveIntegerField(default=0)
    duration_sum = models.BigIntegerField(default=0)
    duration_max = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(fields=["grain", "bucket_start"], name="bidlog_perfroll_ts"),
            models.Index(
                fields=["buyer", "grain", "bucket_start"], name="bidlog_perfroll_buyer_ts"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.buyer_id}: {self.bids} bids"


for _field in LATENCY_FIELDS:
    BidPerformanceRollup.add_to_class(_field, models.PositiveIntegerField(default=0))


class BidStateRollup(models.Model):
    """Attempts, bids and acceptances per bucket x buyer x source x inbound state."""

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    buyer = models.ForeignKey(Buyer, on_delete=models.CASCADE, related_name="+", db_index=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    state_code = models.CharField(max_length=2, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    bids = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(fields=["grain", "bucket_start"], name="bidlog_stateroll_ts"),
            models.Index(
                fields=["buyer", "grain", "bucket_start"], name="bidlog_stateroll_buyer_ts"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.state_code or '--'}"


class CallRollup(models.Model):
    """Calls, routed calls and revenue per bucket x winning buyer (empty: none) x source."""

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    winner = models.ForeignKey(
        Buyer, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    calls = models.PositiveIntegerField(default=0)
    routed_calls = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(fields=["grain", "bucket_start"], name="bidlog_callroll_ts"),
            models.Index(
                fields=["winner", "grain", "bucket_start"], name="bidlog_callroll_winner_ts"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.winner_id}: {self.calls}"


class BidOutcomeTotalRollup(models.Model):
    """Attempts per bucket x source x outcome x code over all buyers: the summary's breakdowns.

    ``BidOutcomeRollup`` without the buyer: a range's outcome and code totals from a few dozen
    rows a day instead of a few dozen per buyer.
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    code = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [models.Index(fields=["grain", "bucket_start"], name="bidlog_totroll_ts")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.outcome}: {self.attempts}"


class BidStateTotalRollup(models.Model):
    """Attempts, bids and acceptances per bucket x source x inbound state over all buyers: the
    state table of a report for every buyer.

    ``BidStateRollup`` without the buyer: a week's state table from a few hundred rows a day
    instead of a few hundred per buyer (with 200 buyers, about 180,000 rows a week).
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    state_code = models.CharField(max_length=2, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    bids = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [models.Index(fields=["grain", "bucket_start"], name="bidlog_statetot_ts")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.state_code or '--'}"


class CallTotalRollup(models.Model):
    """Calls, routed calls and revenue per bucket x source over every winner: the hourly
    series of every buyer.

    ``CallRollup`` without the winner: a month's series reads a few rows an hour instead of
    one per winning buyer (with 200 buyers, about 140,000 rows a month).
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    calls = models.PositiveIntegerField(default=0)
    routed_calls = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [models.Index(fields=["grain", "bucket_start"], name="bidlog_calltot_ts")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M}: {self.calls}"


class SummaryMeasures(models.Model):
    """The measures a summary reads, shared by the summary rollups: attempts by outcome
    class, bids, acceptances, timeouts, durations and the latency histogram (``h00``...),
    and the calls won, routed and their revenue. A subclass's own key fields come first."""

    class_bid = models.PositiveIntegerField(default=0)
    class_no_bid = models.PositiveIntegerField(default=0)
    class_blocked = models.PositiveIntegerField(default=0)
    class_error = models.PositiveIntegerField(default=0)
    class_pending = models.PositiveIntegerField(default=0)
    bids = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    timeouts = models.PositiveIntegerField(default=0)
    duration_sum = models.BigIntegerField(default=0)
    duration_max = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    routed_calls = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        abstract = True


for _field in LATENCY_FIELDS:
    SummaryMeasures.add_to_class(_field, models.PositiveIntegerField(default=0))


class BuyerSummaryRollup(SummaryMeasures):
    """A buyer's summary figures per bucket, every source together: one row per buyer a day.

    Attempts by outcome class, the measures of ``BidPerformanceRollup`` and those of
    ``CallRollup`` (``buyer`` empty: calls no buyer won), so a month's summary reads about a
    row per buyer and day. Built from the other rollups' hour rows, never from raw rows.
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    buyer = models.ForeignKey(
        Buyer, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(fields=["grain", "bucket_start"], name="bidlog_sumroll_ts"),
            models.Index(fields=["buyer", "grain", "bucket_start"], name="bidlog_sumroll_buyer_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {self.buyer_id}: {self.bids} bids"


class SummaryTotalRollup(SummaryMeasures):
    """``BuyerSummaryRollup`` summed over the buyers: every buyer's figures per bucket, one row
    a bucket, for the totals of every buyer and source (the overview's figures and their
    comparisons with earlier periods)."""

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [models.Index(fields=["grain", "bucket_start"], name="bidlog_sumtot_ts")]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M}: {self.bids} bids"


class CallTagRollup(models.Model):
    """Calls, routed calls and revenue per bucket x source x campaign x publisher (empty:
    untagged), for the reports per campaign and publisher.

    A table of its own rather than two more columns of :class:`CallRollup`: crossed with the
    winning buyer, the tags made that table about as long as the calls it sums (829k rows for
    1.25M calls in ``benchmarks/reports.py``) and every revenue figure slower to read.
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    campaign = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    publisher = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    calls = models.PositiveIntegerField(default=0)
    routed_calls = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [models.Index(fields=["grain", "bucket_start"], name="bidlog_calltagroll_ts")]

    def __str__(self) -> str:
        tags = f"{self.campaign or '-'}/{self.publisher or '-'}"
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {tags}: {self.calls}"


class TagSummaryRollup(SummaryMeasures):
    """Per bucket x buyer x source x campaign x publisher: what a summary limited to a tag reads.

    The bid measures of ``BuyerSummaryRollup`` (attempts by outcome class, bids, acceptances,
    timeouts, the latency histogram) with the call's tags (a bid's tags are its call's; a bid
    with no call is untagged), and the calls a buyer won (``buyer`` empty: calls no buyer
    won). Built from raw bids joined to their calls, so a tagged overview never joins them;
    only rows with a campaign or a publisher are kept (a tag filter reads no other).
    """

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    buyer = models.ForeignKey(
        Buyer, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    campaign = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    publisher = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(
                fields=["campaign", "grain", "bucket_start"],
                name="bidlog_tagsum_campaign_ts",
                condition=~models.Q(campaign=""),
            ),
            models.Index(
                fields=["publisher", "grain", "bucket_start"],
                name="bidlog_tagsum_publisher_ts",
                condition=~models.Q(publisher=""),
            ),
            models.Index(fields=["grain", "bucket_start"], name="bidlog_tagsum_ts"),
        ]

    def __str__(self) -> str:
        tags = f"{self.campaign or '-'}/{self.publisher or '-'}"
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {tags} {self.buyer_id}"


class TagOutcomeRollup(models.Model):
    """Attempts per bucket x source x campaign x publisher x outcome x code (code 0: none):
    the outcome and code breakdowns, and the codes chart, of a report limited to a tag."""

    grain = models.CharField(max_length=4, choices=RollupGrain.choices)
    bucket_start = models.DateTimeField()
    source = models.CharField(max_length=10, choices=Source.choices)
    campaign = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    publisher = models.CharField(max_length=TAG_MAX_LENGTH, blank=True, default="")
    outcome = models.CharField(max_length=24, choices=Outcome.choices)
    code = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["grain", "bucket_start"]
        indexes = [
            models.Index(
                fields=["campaign", "grain", "bucket_start"],
                name="bidlog_tagout_campaign_ts",
                condition=~models.Q(campaign=""),
            ),
            models.Index(
                fields=["publisher", "grain", "bucket_start"],
                name="bidlog_tagout_publisher_ts",
                condition=~models.Q(publisher=""),
            ),
            models.Index(fields=["grain", "bucket_start"], name="bidlog_tagout_ts"),
        ]

    def __str__(self) -> str:
        tags = f"{self.campaign or '-'}/{self.publisher or '-'}"
        return f"{self.grain} {self.bucket_start:%Y-%m-%d %H:%M} {tags} {self.outcome}"
