"""Why a buyer cannot take a call now: the :class:`Block`, and one wording per reason that
routes, the eligibility check and test bids all give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from bidlog.choices import Outcome
from buyers.models import Buyer


@dataclass(frozen=True)
class Block:
    """One reason a buyer cannot take the call now."""

    outcome: str  # a skipped_* outcome
    reason: str  # plain words, shown in the log and the API
    until: datetime | None = None  # when it lifts (aware UTC); None: not by itself

    def as_dict(self) -> dict[str, str | None]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
        }


def show_utc(moment: datetime) -> str:
    """``2026-12-21 14:03 UTC``: how reasons name an instant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def cooldown_block(until: datetime) -> Block:
    """The ``skipped_cooldown`` block of a grid cooling down after a 3000 No Capacity."""
    return Block(
        Outcome.SKIPPED_COOLDOWN,
        f"answered 3000 No Capacity; cooling down until {show_utc(until)}",
        until,
    )


def concurrency_block(buyer: Buyer) -> Block:
    """The ``skipped_concurrency`` block of a grid whose every slot is held."""
    return Block(
        Outcome.SKIPPED_CONCURRENCY,
        f"all {buyer.max_concurrency} simultaneous requests to this grid are in flight",
    )


def rate_limit_block(
    buyer: Buyer, *, retry_after: float, tokens: float = 0.0, headroom: float = 0.0
) -> Block:
    """The ``skipped_rate_limit`` block of a grid out of tokens.

    With ``headroom`` (health checks keep that many tokens for live calls) the grid is only
    near its limit, and the reason says so.
    """
    per_minute = buyer.rate_limit_per_minute
    if headroom:
        reason = (
            f"near the rate limit of {per_minute}/min "
            f"({tokens:.0f} requests left, {headroom:.0f} kept for live calls)"
        )
    else:
        reason = f"rate limit of {per_minute}/min reached; next slot in {retry_after:.1f} s"
    return Block(
        Outcome.SKIPPED_RATE_LIMIT, reason, timezone.now() + timedelta(seconds=retry_after)
    )


def in_flight_duplicate_block() -> Block:
    """The ``skipped_duplicate`` block of a caller another route is selling to this buyer now."""
    return Block(
        Outcome.SKIPPED_DUPLICATE,
        "another route for this caller is being sold to this buyer right now",
    )
