"""Test bids: queue one for a worker, and let the worker send it and fill its row in.

An operator's test bid becomes a ``pending`` BidLog row first (so the API can answer at once
with its id), then a ``send_test_bid`` task. The task claims the row with a compare-and-set
update on ``claimed_at``, as healthchecks' ``sendalerts`` claims its checks, so a message
delivered twice sends one bid. A row claimed by a worker that died (no answer within
``TEST_BID_STALE_SECONDS``) may be claimed again, and :func:`test_bids_stranded` finds such rows
for the recovery sweep: no row stays ``pending`` for ever. Such a second send is never silent:
the row's trace keeps the lost send and its ``error`` says the bid was sent again.

One test bid is one row: the answer of its final attempt, with every attempt in ``trace``.

Test bids are sent the one way every bid is (:func:`bidlog.routing.send.bid_send`): the same
client and shared limits as routing (concurrency slot and rate token of the grid). They
deliberately ignore the buyer's status, hours, caps and no-capacity cooldown: an operator
sends one precisely to see what CallGrid answers right now.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError

from bidlog.choices import Outcome, Source
from bidlog.enqueue import SEND_TEST_BID, task_enqueue
from bidlog.models import BidLog
from bidlog.monitoring.alerts import alerts_evaluate
from bidlog.routing.blocks import Block
from bidlog.routing.record import bid_result_values, bid_sends_lost, bid_trace_lost_send
from bidlog.routing.send import bid_send
from buyers.models import Buyer
from callgrid_portal.bidapi.client import RESERVED_KEYS, BidResult, build_request
from callgrid_portal.bidapi.phone import normalize_caller_id

logger = logging.getLogger(__name__)

# The Bid API guide's sample number, for a test bid to a buyer with no test caller ID of its own.
DEFAULT_TEST_CALLER_ID = "3035551234"
# Errors kombu and the socket layer raise when a message cannot be published.
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError)


class BrokerUnavailable(Exception):
    """The task queue could not take the test bid; nothing was queued and no row was kept."""


def caller_id_for_test_bids(buyer: Buyer) -> str:
    """The number a test bid uses when none is given: the buyer's test caller ID, or a sample."""
    return buyer.health_check_caller_id or DEFAULT_TEST_CALLER_ID


def test_bid_queue(
    *,
    buyer: Buyer,
    caller_id: str,
    state_code: str = "",
    params: dict[str, Any] | None = None,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> BidLog:
    """Record a ``pending`` test bid for ``buyer`` and queue a worker to send it.

    The row holds the exact request that will go out, so the bid log shows it while it waits.
    The task is published once the row is committed; if the broker refuses it, the row is
    deleted again and :class:`BrokerUnavailable` raised, so no orphan ``pending`` row is left.
    Raises ``InvalidCallerId`` for a caller ID that is not a NANP number (nothing is written).
    """
    number = normalize_caller_id(caller_id)
    state = (state_code or "").strip().upper()
    extra = {key: value for key, value in (params or {}).items() if key not in RESERVED_KEYS}
    target = buyer.as_bid_target()
    with transaction.atomic():
        bid = BidLog.objects.create(
            buyer=buyer,
            source=Source.TEST,
            caller_id=number.ten_digit,
            state_code=state,
            request=build_request(target, number.formatted(target.caller_id_format), state, extra),
            outcome=Outcome.PENDING,
        )
    logger.info(
        "test bid %s queued for buyer %s by %s", bid.pk, buyer.pk, getattr(actor, "pk", None)
    )
    transaction.on_commit(lambda: _publish(bid.pk))
    return bid


def _publish(bid_id: int) -> None:
    try:
        task_enqueue(SEND_TEST_BID, bid_id)
    except PUBLISH_ERRORS as exc:
        BidLog.objects.filter(pk=bid_id, outcome=Outcome.PENDING, claimed_at__isnull=True).delete()
        logger.warning("test bid %s not queued, broker unavailable: %s", bid_id, exc)
        raise BrokerUnavailable(
            "The task queue is not reachable, so the test bid was not queued. "
            "Try again in a moment; if it persists, check the Celery broker "
            "(CELERY_BROKER_URL) and GET /api/v1/health/."
        ) from exc


def test_bid_run(*, bid_id: int) -> BidLog | None:
    """Send the queued test bid ``bid_id`` and fill its row in; safe to run more than once.

    Returns the row as it stands afterwards (``None`` when it no longer exists). A row that is
    finished, or claimed by a live worker, is returned untouched without sending anything.
    The row ends up holding the final attempt's answer, and its trace every attempt (a retry
    after a 5000 or 5001 is an entry there, not a row of its own).

    A row claimed by a worker that was lost (its claim went stale) is sent again, and the
    lost send is kept in the trace and named in ``error``: the buyer may have received the
    bid twice, and the log says so.
    """
    claimed_at = timezone.now()
    stale_before = claimed_at - timedelta(seconds=settings.TEST_BID_STALE_SECONDS)
    bid = BidLog.objects.select_related("buyer").filter(pk=bid_id).first()
    if (
        bid is None
        or bid.outcome != Outcome.PENDING
        or (bid.claimed_at is not None and bid.claimed_at >= stale_before)
    ):
        return bid
    trace = list(bid.trace or [])
    if bid.claimed_at is not None:
        trace.append(bid_trace_lost_send(send=bid_sends_lost(trace) + 1, claimed_at=bid.claimed_at))
    # Compare-and-set on the claim we read: of two workers reading the same row, one wins.
    claimed = BidLog.objects.filter(
        pk=bid_id, outcome=Outcome.PENDING, claimed_at=bid.claimed_at
    ).update(claimed_at=claimed_at, trace=trace)
    if not claimed:
        return BidLog.objects.filter(pk=bid_id).first()
    if bid.claimed_at is not None:
        logger.warning(
            "test bid %s: its worker was lost mid-send (claimed %s); sending it again",
            bid_id,
            bid.claimed_at.isoformat(),
        )
    buyer = bid.buyer
    params = {k: v for k, v in (bid.request or {}).items() if k not in RESERVED_KEYS}
    sent = bid_send(buyer=buyer, caller_id=bid.caller_id, state_code=bid.state_code, params=params)
    if not _fill(bid_id=bid_id, claimed_at=claimed_at, trace=trace, sent=sent):
        logger.warning("test bid %s was taken over by another worker; its answer stands", bid_id)
    alerts_evaluate(buyer=buyer)
    return BidLog.objects.filter(pk=bid_id).first()


def _fill(
    *, bid_id: int, claimed_at: Any, trace: list[dict[str, Any]], sent: BidResult | Block
) -> bool:
    """Write the answer into the pending row we claimed; False when someone else took it."""
    mine = BidLog.objects.filter(pk=bid_id, outcome=Outcome.PENDING, claimed_at=claimed_at)
    if isinstance(sent, Block):
        reason = sent.reason
        if bid_sends_lost(trace):
            reason += "; an earlier send was lost with its worker (see the trace)"
        return bool(mine.update(outcome=sent.outcome, error=reason))
    return bool(mine.update(**bid_result_values(result=sent, earlier=trace)))


def test_bids_stranded(*, now: Any = None) -> list[int]:
    """Ids of pending test bids no live worker is on: never claimed, or claimed and gone stale.

    An unclaimed row counts only once it has waited ``TEST_BID_STALE_SECONDS``: until then
    its message is most likely still in the queue.
    """
    moment = now or timezone.now()
    stale_before = moment - timedelta(seconds=settings.TEST_BID_STALE_SECONDS)
    return list(
        BidLog.objects.filter(outcome=Outcome.PENDING, source=Source.TEST)
        .filter(
            Q(claimed_at__isnull=True, created_at__lt=stale_before) | Q(claimed_at__lt=stale_before)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
