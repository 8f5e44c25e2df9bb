"""One bid as the pages show it: its outcome in words, masked for viewers.

An accepted bid whose call went to another buyer reads "Outbid" (it lost the auction and did
not sell), and an outcome's name drops the code it carries when the row shows the code, so
the answer names the code once.
"""

from __future__ import annotations

import re
from typing import Any

from bidlog.api.serializers import mask_bid_data
from bidlog.choices import Outcome, OutcomeClass, Source
from bidlog.models import BidLog

# Labels by value, looked up once: a model's get_FOO_display() rebuilds its choices' dict on
# every call, which was a quarter of a 10,000-row CSV's time.
_OUTCOME_LABELS = {value: str(label) for value, label in Outcome.choices}
_SOURCE_LABELS = {value: str(label) for value, label in Source.choices}


def _outcome_label(outcome: str) -> str:
    """An outcome as the pages name it ("System error"); anything unknown as it is."""
    return _OUTCOME_LABELS.get(outcome, outcome)


# An accepted bid whose call went to another buyer (the auction's loser): it did not sell.
OUTBID = "Outbid"
# The code an outcome's name carries, "Declined (2000)", "Rate limited (5001/429)".
_CODE_IN_NAME = re.compile(r"\s*\(\d{4}(?:/\d{3})?\)$")


def _without_code(label: str, code: int | None) -> str:
    """An outcome's name without the code it carries when the row shows its code anyway, so
    the answer reads "Declined, code 2000" and not "Declined (2000) (code 2000)"."""
    return _CODE_IN_NAME.sub("", label) if code is not None else label


def bid_row(bid: BidLog, *, masked: bool) -> dict[str, Any]:
    """One bid as the pages show it; ``masked`` hides every copy of the caller's number, in
    the fields, the request and the texts, exactly as the API does for viewers."""
    winner = getattr(bid, "call_winner_id", None)
    outbid = bid.outcome == Outcome.ACCEPTED and winner is not None and winner != bid.buyer_id
    row = {
        "id": bid.pk,
        "created_at": bid.created_at,
        "buyer_id": bid.buyer_id,
        "buyer_name": bid.buyer.name,
        "source": _SOURCE_LABELS.get(bid.source, bid.source),
        "caller_id": bid.caller_id,
        "state_code": bid.state_code,
        "response_caller_id": bid.response_caller_id,
        "request": bid.request,
        "outcome": OUTBID if outbid else _without_code(_outcome_label(bid.outcome), bid.code),
        "outbid": outbid,
        "outcome_class": OutcomeClass.NO_BID if outbid else bid.outcome_class,
        "pending": bid.outcome == Outcome.PENDING,
        "code": bid.code,
        "http_status": bid.http_status,
        "attempt": bid.attempt,
        "bid_amount": bid.bid_amount,
        "destination": bid.destination,
        "duration_ms": bid.duration_ms,
        "message": bid.message,
        "error": bid.error,
        "raw_response": bid.raw_response,
        "call_id": bid.call_id,
        "trace": [
            {
                **entry,
                "outcome_label": _without_code(
                    _outcome_label(entry.get("outcome") or ""), entry.get("code")
                ),
            }
            for entry in bid.trace or []
        ],
    }
    return mask_bid_data(row) if masked else row
