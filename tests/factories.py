"""factory_boy factories for the portal's models."""

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

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))


def _grid_id(n: int) -> str:
    return f"cm97s8hmv{n:06d}ijt06r4dj"


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
