"""factory_boy factories for the portal's models."""

from datetime import datetime, timedelta
from decimal import Decimal

import factory
from django.contrib.auth.models import Group, User

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog, Call
from buyers.models import Buyer


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def role(user: User, create: bool, extracted: str | None, **kwargs: object) -> None:
        if create and extracted:
            user.groups.add(Group.objects.get(name=extracted))


def _grid_id(n: int) -> str:
    # The "f" keeps them apart from the grid ids tests write out (cm97s8hmv000555ijt06r4dj):
    # a factory's sequence number reaching 555 in the same test would otherwise take that one.
    return f"cm97s8hmvf{n:06d}ijt06r4dj"


class BuyerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Buyer

    name = factory.Sequence(lambda n: f"Buyer {n}")
    grid_id = factory.Sequence(_grid_id)
    endpoint_url = "https://bid.callgrid.com/api/bid/"
    min_bid = Decimal("10.00")
    vertical = "insurance"
    priority = factory.Sequence(lambda n: n + 1)


class CallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Call

    caller_id = "3035551234"
    state_code = "CO"
    strategy = "waterfall"


class BidLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BidLog

    buyer = factory.SubFactory(BuyerFactory)
    source = Source.LIVE
    caller_id = "3035551234"
    state_code = "CO"
    request = factory.LazyAttribute(lambda b: {"CallerId": b.caller_id, "InboundStateCode": "CO"})
    http_status = 200
    code = 1000
    message = "Bid accepted"
    bid_amount = Decimal("25.50")
    destination = "13035551234"
    duration_ms = 120
    outcome = Outcome.ACCEPTED


# --- A generated bid log for report tests (reports, rollups, retention) -----------------------

# (outcome, code, http_status, weight): a plausible ops-day mix, skips and local refusals included.
_DATASET_OUTCOMES = [
    (Outcome.ACCEPTED, 1000, 200, 30),
    (Outcome.BELOW_MIN_BID, 1000, 200, 4),
    (Outcome.DECLINED, 2000, 200, 25),
    (Outcome.NO_CAPACITY, 3000, 200, 10),
    (Outcome.INVALID_REQUEST, 4000, 400, 1),
    (Outcome.SYSTEM_ERROR, 5000, 500, 2),
    (Outcome.DISABLED, 4001, 403, 1),
    (Outcome.INVALID_CALLER_ID, 4003, 400, 1),
    (Outcome.INVALID_CALLER_ID, 4003, None, 1),  # refused locally: nothing sent
    (Outcome.DUPLICATE, 4005, 409, 3),
    (Outcome.RATE_LIMITED, 5001, 429, 2),
    (Outcome.TIMEOUT, None, None, 4),
    (Outcome.NETWORK_ERROR, None, None, 1),
    (Outcome.BAD_RESPONSE, 7777, 200, 1),
    (Outcome.SKIPPED_DUPLICATE, None, None, 3),
    (Outcome.SKIPPED_CAP, None, None, 2),
]
_DATASET_STATES = ["CO", "TX", "FL", "NY", "CA", ""]


def bid_log_dataset(
    *, buyers: list[Buyer], start: datetime, end: datetime, count: int, seed: int = 7
) -> list[BidLog]:
    """Write ``count`` varied bid-log rows (and calls for about a third) in ``[start, end)``.

    Times are spread to the microsecond, so every hour boundary has rows on both sides;
    latencies follow a long-tailed distribution up to the buyer's timeout.
    """
    import random

    rng = random.Random(seed)
    span = (end - start).total_seconds()
    weights = [entry[3] for entry in _DATASET_OUTCOMES]
    sources = [Source.LIVE] * 8 + [Source.HEALTH, Source.TEST]
    calls, bids = [], []
    for _ in range(count):
        created = start + timedelta(seconds=rng.random() * span)
        buyer = rng.choice(buyers)
        outcome, code, http_status, _weight = rng.choices(_DATASET_OUTCOMES, weights)[0]
        sent = http_status is not None or outcome in (Outcome.TIMEOUT, Outcome.NETWORK_ERROR)
        if outcome == Outcome.TIMEOUT:
            duration = buyer.timeout_seconds * 1000 + rng.randint(0, 40)
        elif sent:
            duration = min(int(rng.lognormvariate(5.5, 0.8)), 9_000)
        else:
            duration = 0
        amount = Decimal(rng.randint(500, 6000)) / 100 if code == 1000 else None
        call = None
        if rng.random() < 0.35:
            routed = outcome == Outcome.ACCEPTED
            call = Call(
                created_at=created,
                caller_id="3035551234",
                state_code="CO",
                strategy="waterfall",
                winner=buyer if routed else None,
                bid_amount=amount if routed else None,
                routed=routed,
                source=Source.LIVE,
            )
            calls.append(call)
        bids.append(
            BidLog(
                buyer=buyer,
                call=call,
                source=rng.choice(sources),
                created_at=created,
                caller_id="3035551234",
                state_code=rng.choice(_DATASET_STATES),
                http_status=http_status,
                code=code,
                bid_amount=amount,
                duration_ms=duration,
                outcome=outcome,
            )
        )
    Call.objects.bulk_create(calls)
    for bid in bids:
        bid.call_id = bid.call.pk if bid.call else None
    return BidLog.objects.bulk_create(bids)
