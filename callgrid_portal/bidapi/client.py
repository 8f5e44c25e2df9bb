"""The Bid API client: send one bid for one buyer and read the answer into typed results.

INTERFACE CONTRACT (implemented by the bidapi work; other code relies on exactly this):

- ``BidTarget``: what the client needs to know about a buyer (no Django model here).
- ``send_bid(target, caller_id, state_code=None, params=None, *, deadline=None) -> BidResult``
  sends one bid with up to 2 retries (5000; 429/5001 honouring Retry-After), never raises,
  and returns every attempt made. An invalid caller ID sends nothing and returns one attempt
  with ``code=4003``, ``outcome=invalid_caller_id``, ``http_status=None`` and the reason in
  ``error``. ``deadline`` is an absolute ``time.monotonic()`` value: no attempt, retry or
  backoff runs past it (routing passes the call's deadline).
- ``get_session()`` returns this process's pooled ``requests.Session``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from callgrid_portal.bidapi.outcomes import Outcome

MAX_RETRIES = 2
MAX_BODY_BYTES = 64 * 1024
RAW_RESPONSE_KEEP = 2000  # characters of a non-JSON body kept for the log


@dataclass(frozen=True)
class BidTarget:
    """A buyer as the client sees it."""

    grid_id: str
    endpoint_url: str
    timeout_seconds: float = 10.0
    caller_id_format: str = "10-digit"
    min_bid: Decimal = Decimal("0.00")
    extra_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def bid_url(self) -> str:
        return self.endpoint_url.rstrip("/") + "/" + self.grid_id


@dataclass
class BidAttempt:
    """One HTTP attempt (or the local refusal to make one) and how it ended."""

    attempt: int
    outcome: Outcome
    started_at: datetime
    request: dict[str, Any] = field(default_factory=dict)
    caller_id: str = ""  # normalized, 10 digits; empty when the caller ID was invalid
    state_code: str = ""
    http_status: int | None = None
    code: int | None = None
    message: str = ""
    bid_amount: Decimal | None = None
    destination: str = ""
    response_caller_id: str = ""
    duration_ms: int = 0
    error: str = ""
    raw_response: str = ""

    @property
    def acceptable(self) -> bool:
        """Code 1000, at or above the buyer's minimum, with somewhere to send the call."""
        return self.outcome == Outcome.ACCEPTED


@dataclass
class BidResult:
    """Every attempt for one bid, the last one deciding."""

    attempts: list[BidAttempt]

    @property
    def final(self) -> BidAttempt:
        return self.attempts[-1]

    @property
    def outcome(self) -> Outcome:
        return self.final.outcome

    @property
    def acceptable(self) -> bool:
        return self.final.acceptable
