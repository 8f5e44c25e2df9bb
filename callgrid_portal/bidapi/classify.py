"""The outcome a CallGrid answer stands for, from its code, amount and destination.

Built on the live client's :data:`~callgrid_portal.bidapi.client.CODE_OUTCOMES`, with the
checks the client makes of an acceptance (an amount, somewhere to send the call, at least the
buyer's minimum), so a bid read from an import is classified exactly as one answered live.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from callgrid_portal.bidapi.client import CODE_OUTCOMES
from callgrid_portal.bidapi.outcomes import Outcome

# Outcomes only an answer with code 1000 gives.
ACCEPT_OUTCOMES = frozenset({Outcome.ACCEPTED, Outcome.BELOW_MIN_BID})


@dataclass(frozen=True)
class Classified:
    """An outcome and, when the answer was not taken at its word, why (the bid's ``error``)."""

    outcome: Outcome
    reason: str = ""


def outcome_for(
    code: int,
    amount: Decimal | None,
    destination: str,
    min_bid: Decimal,
    *,
    http_status: int | None = None,
) -> Classified:
    """The outcome of an answer with CallGrid ``code``, as the live client reads it.

    HTTP 429 is a rate limit whatever the code; an unknown code is a bad response; code 1000
    is accepted only with an amount, a printable destination and an amount at or above
    ``min_bid`` (else a bad response, or below the minimum bid).
    """
    if http_status == 429:
        return Classified(Outcome.RATE_LIMITED, "HTTP 429")
    outcome = CODE_OUTCOMES.get(code)
    if outcome is None:
        return Classified(Outcome.BAD_RESPONSE, f"unknown code {code}")
    if outcome != Outcome.ACCEPTED:
        return Classified(outcome)
    if amount is None:
        return Classified(Outcome.BAD_RESPONSE, "accepted without a bid amount")
    place = destination.strip()
    if not place:
        return Classified(Outcome.BAD_RESPONSE, "accepted without a destination")
    if not place.isprintable():
        return Classified(Outcome.BAD_RESPONSE, "destination contains control characters")
    if amount < min_bid:
        return Classified(Outcome.BELOW_MIN_BID, f"bid {amount} is below the minimum {min_bid}")
    return Classified(Outcome.ACCEPTED)
