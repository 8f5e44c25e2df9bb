"""A buyer's answers written one second apart, and the alert rules run over them."""

from datetime import timedelta

from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.monitoring import alerts
from tests.factories import BidLogFactory

CODES: dict[str, int | None] = {
    Outcome.DISABLED: 4001,
    Outcome.NO_NUMBERS: 4006,
    Outcome.CAPACITY_CHECK_FAILED: 4004,
    Outcome.RATE_LIMITED: 5001,
    Outcome.DECLINED: 2000,
    Outcome.ACCEPTED: 1000,
    Outcome.TIMEOUT: None,
}


class Clock:
    """Writes answers for one buyer, each a second after the one before."""

    def __init__(self, buyer) -> None:
        self.buyer = buyer
        self.now = timezone.now() - timedelta(hours=1)

    def answer(self, *outcomes: str, source: str = Source.LIVE) -> None:
        for outcome in outcomes:
            self.now += timedelta(seconds=1)
            BidLogFactory(
                buyer=self.buyer,
                outcome=outcome,
                code=CODES.get(outcome),
                source=source,
                created_at=self.now,
            )

    def evaluate(self) -> list[alerts.AlertChange]:
        return alerts.alerts_evaluate(buyer=self.buyer, now=self.now + timedelta(seconds=1))
