"""Guidance for outcomes that carry no CallGrid code: what a timeout means and what to do.

The catalog in :mod:`callgrid_portal.bidapi.codes` explains every code a buyer can answer
with. A timeout has no answer and so no code, yet it is the failure a shift meets most; the
bid page shows this guidance in the same panel as a code's, in the same words everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from callgrid_portal.bidapi.codes import Priority
from callgrid_portal.bidapi.outcomes import Outcome


@dataclass(frozen=True)
class OutcomeGuidance:
    """What an outcome without a code means, its likely causes and what to do."""

    outcome: str
    title: str
    meaning: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]
    priority: str
    contact_support: str

    @property
    def priority_label(self) -> str:
        return str(Priority(self.priority).label)


_GUIDANCE: dict[str, OutcomeGuidance] = {
    Outcome.TIMEOUT: OutcomeGuidance(
        outcome=Outcome.TIMEOUT,
        title="Timeout: no answer within the buyer's timeout",
        meaning=(
            "The buyer's endpoint did not answer before the timeout set on the buyer, so the "
            "portal stopped waiting and moved on (the next buyer of a waterfall, or the "
            "auction's deadline). The call could not be sold to this buyer."
        ),
        causes=(
            "The buyer's endpoint is slow or overloaded right now.",
            "The timeout is shorter than the buyer's usual response time (compare its p95 on "
            "the buyer page with its timeout).",
            "A network problem between the portal and CallGrid (DNS, TLS, a firewall).",
        ),
        fixes=(
            "Open the buyer's page: if its p95 response time is near the timeout, raise the "
            "timeout (the reports suggest one from the measured p99) or accept the loss.",
            "Send a test bid: an answer in time means the slowness has passed.",
            "If many buyers time out together, look at the portal's network before the buyers.",
            "Watch the buyer's timeout-rate alert; repeated timeouts pause it when it is set "
            "to pause on immediate alerts.",
        ),
        priority=Priority.REVIEW,
        contact_support=(
            "When every buyer on CallGrid times out at once, or a test bid times out while "
            "the buyer says its endpoint is healthy; send the bid's time and Grid ID."
        ),
    ),
}


def get(outcome: str) -> OutcomeGuidance | None:
    """The guidance for ``outcome``, or ``None`` when it has a code's or needs none."""
    return _GUIDANCE.get(outcome)
