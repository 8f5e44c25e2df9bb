"""The Bid API client: send bids to buyers and read the answers into typed results.

:func:`send_bid` posts ``{"CallerId": ..., "InboundStateCode": ..., ...}`` to
``{endpoint}/{grid_id}`` and returns a :class:`BidResult` holding every attempt it made;
:func:`send_bids` does the same for several buyers at once, as an auction does, in one event
loop with one deadline. Neither raises: timeouts, refused connections, HTML error pages and
hostile JSON all come back as attempts with an outcome and a readable ``error``, so the caller
can log each one.

- Every request goes through :mod:`~callgrid_portal.bidapi.transport` (libcurl): a total
  budget per attempt of ``target.timeout_seconds``, capped by ``deadline`` (an absolute
  ``time.monotonic()`` value), caps on headers and body, kept-alive connections.
- Every answer is read by :mod:`~callgrid_portal.bidapi.answers`.
- The endpoint guard (:mod:`~callgrid_portal.bidapi.endpoints`) runs at every send when the
  target carries a policy: a bid to an endpoint that no longer passes is not sent, and comes
  back ``skipped_endpoint`` with the reason naming the setting.

Retries (Bid API guide "Implement Retry Logic", error-code reference 5001): a 5000 or HTTP 5xx
is retried at most :data:`MAX_RETRIES` times with exponential backoff; a 429/5001 likewise,
waiting for ``Retry-After`` when the buyer sends one. Nothing else is retried: a 1000-4006 is a
real answer, and a timeout or network error has already spent the time a live call has. No
backoff or attempt runs past ``deadline``: when the next wait would cross it we stop and return
what we have.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from callgrid_portal.bidapi import answers
from callgrid_portal.bidapi.endpoints import EndpointPolicy
from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.bidapi.transport import (
    Failure,
    Request,
    Response,
    Transport,
    default_transport,
)
from callgrid_portal.text import NUL_MESSAGE, contains_nul

logger = logging.getLogger(__name__)

MAX_RETRIES = 2
BACKOFF_BASE = 0.25  # seconds; retry n waits BACKOFF_BASE * 2**(n-1): 0.25 s, then 0.5 s
# A buyer asking us to wait longer than this is not coming back within any bid's budget
# (timeout_seconds is at most 10), so we stop instead of retrying early against its wishes.
MAX_RETRY_AFTER_SECONDS = 10.0
DEFAULT_USER_AGENT = "CallGridPortal/0.1"
# The keys of a bid request set per call: never a buyer's static parameter, never forwarded
# from a caller's own parameters (the one definition; buyers, routes and test bids use it).
RESERVED_KEYS = frozenset({"CallerId", "InboundStateCode"})
RETRIED_OUTCOMES = frozenset({Outcome.SYSTEM_ERROR, Outcome.RATE_LIMITED})
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True)
class BidTarget:
    """A buyer as the client sees it; ``policy`` is the endpoint guard checked at every send."""

    grid_id: str
    endpoint_url: str
    timeout_seconds: float = 10.0
    caller_id_format: str = "10-digit"
    min_bid: Decimal = Decimal("0.00")
    extra_params: Mapping[str, str] = field(default_factory=dict)
    policy: EndpointPolicy | None = None
    user_agent: str = DEFAULT_USER_AGENT

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
    # Seconds the server asked us to wait (Retry-After on a 429/5001); not logged, used to
    # pace the next retry.
    retry_after: float | None = None

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


@dataclass
class Bid:
    """One buyer's bid in a batch: its target and the body it is sent (see :func:`prepare`)."""

    key: Hashable
    target: BidTarget
    body: dict[str, Any]
    caller_id: str  # the normalized ten digits, for the log
    state_code: str
    attempts: list[BidAttempt] = field(default_factory=list)
    # The attempt whose request is out: filled in place when its answer comes, so a row
    # begun from it while the buyer thinks (see ``send_bids``' on_sent) sees the answer.
    current: BidAttempt | None = None


OnResult = Callable[[Hashable, BidResult], None]
Pace = Callable[[float], float]


# --- sending --------------------------------------------------------------------------------


def send_bid(
    target: BidTarget,
    caller_id: str,
    state_code: str | None = None,
    params: Mapping[str, Any] | None = None,
    *,
    deadline: float | None = None,
    transport: Transport | None = None,
    backoff_base: float = BACKOFF_BASE,
    pace: Pace | None = None,
) -> BidResult:
    """Send one bid to ``target`` and return every attempt; never raises.

    ``deadline`` is an absolute ``time.monotonic()`` value; no attempt, retry or backoff runs
    past it. An invalid caller ID sends nothing and answers a local 4003 attempt.
    """
    state = (state_code or "").strip().upper()
    try:
        number = normalize_caller_id(caller_id)
    except InvalidCallerId as exc:
        return BidResult([_local_attempt(Outcome.INVALID_CALLER_ID, state, exc.reason, 4003)])
    try:
        bid = prepare(0, target, number.ten_digit, state, params)
    except Exception as exc:  # a bug upstream (a target without a URL) costs one bid
        logger.exception("preparing a bid to grid %s failed", target.grid_id)
        error = f"unexpected error: {exc!r}"[: answers.MAX_MESSAGE_CHARS]
        return BidResult([_local_attempt(Outcome.NETWORK_ERROR, state, error, None)])
    (result,) = send_bids(
        [bid], deadline=deadline, transport=transport, backoff_base=backoff_base, pace=pace
    )
    return result


def prepare(
    key: Hashable,
    target: BidTarget,
    caller_ten_digit: str,
    state_code: str,
    params: Mapping[str, Any] | None,
) -> Bid:
    """A :class:`Bid` for a caller already normalized (ten digits) and an upper-case state."""
    number = normalize_caller_id(caller_ten_digit)
    body = build_request(target, number.formatted(target.caller_id_format), state_code, params)
    return Bid(key, target, body, number.ten_digit, state_code)


def send_bids(
    bids: Sequence[Bid],
    *,
    deadline: float | None = None,
    transport: Transport | None = None,
    backoff_base: float = BACKOFF_BASE,
    pace: Pace | None = None,
    on_sent: Callable[[list[Bid]], None] | None = None,
    on_result: OnResult | None = None,
) -> list[BidResult]:
    """Send every bid at once, retrying as the codes ask, and return their results in order.

    ``on_result`` is called with each bid's key and final result as soon as it is known, while
    the others are still out; ``on_sent`` once, with the bids whose first request is out,
    while the buyers think. Either may do database work: both run on the calling thread.
    Nothing a single buyer sends can raise out of here; an exception raised by a callback
    propagates. ``pace`` maps each planned backoff (seconds) to the wait actually made, so
    tests can watch the plan without waiting for it.
    """
    http = transport or default_transport()
    results: dict[Hashable, BidResult] = {}
    by_key = {bid.key: bid for bid in bids}

    def finish(bid: Bid) -> None:
        result = BidResult(bid.attempts)
        results[bid.key] = result
        if on_result is not None:
            on_result(bid.key, result)

    def on_response(response: Response) -> Request | None:
        bid = by_key[response.request.key]
        try:
            attempt = _read_attempt(bid, response)
        except Exception as exc:  # one buyer's answer must never break a call
            logger.exception("reading an answer from grid %s failed", bid.target.grid_id)
            attempt = _failed_attempt(bid, response, f"unexpected error: {exc!r}")
        bid.attempts.append(attempt)
        follow = _retry_request(bid, attempt, deadline, backoff_base, pace)
        if follow is None:
            finish(bid)
        return follow

    first: list[Request] = []
    for bid in bids:
        request = _first_request(bid, deadline)
        if request is None:
            finish(bid)  # refused by the endpoint guard, or not sendable: nothing sent
        else:
            first.append(request)
    sent = None if on_sent is None else (lambda: on_sent([by_key[r.key] for r in first]))
    if first:
        http.exchange(first, on_response, on_sent=sent)
    return [results[bid.key] for bid in bids]


def _first_request(bid: Bid, deadline: float | None) -> Request | None:
    """The first request of ``bid``, or ``None`` (with its attempt) when it may not go."""
    try:
        return _checked_first_request(bid, deadline)
    except Exception as exc:  # a bug upstream (a target without a URL) costs one bid
        logger.exception("preparing a bid to grid %s failed", bid.target.grid_id)
        unsent = Response(Request(bid.key, "", b"", (), 0))
        bid.attempts.append(_failed_attempt(bid, unsent, f"unexpected error: {exc!r}"))
        return None


def _checked_first_request(bid: Bid, deadline: float | None) -> Request | None:
    target = bid.target
    if target.policy is not None:
        problem = target.policy.url_problem(target.bid_url)
        if problem is not None:
            bid.attempts.append(_skipped_endpoint(bid, problem))
            return None
    return _request(bid, start_at=time.monotonic(), deadline=deadline)


def _new_attempt(bid: Bid) -> BidAttempt:
    """The bid's next attempt, starting now; a timeout until an answer says otherwise."""
    return BidAttempt(
        attempt=len(bid.attempts) + 1,
        outcome=Outcome.TIMEOUT,
        started_at=datetime.now(UTC),
        request=bid.body,
        caller_id=bid.caller_id,
        state_code=bid.state_code,
    )


def _request(bid: Bid, *, start_at: float, deadline: float | None) -> Request:
    bid.current = _new_attempt(bid)
    budget_end = start_at + float(bid.target.timeout_seconds)
    if deadline is not None:
        budget_end = min(budget_end, deadline)
    data = encode_body(bid.body)
    policy = bid.target.policy
    return Request(
        key=bid.key,
        url=bid.target.bid_url,
        body=data,
        headers=request_headers(bid.target.user_agent),
        budget_end=budget_end,
        start_at=start_at,
        check_address=None if policy is None else policy.text_address_problem,
    )


def _retry_request(
    bid: Bid, attempt: BidAttempt, deadline: float | None, backoff_base: float, pace: Pace | None
) -> Request | None:
    """The next attempt's request when ``attempt`` calls for a retry that fits, else ``None``."""
    number = len(bid.attempts)
    if attempt.outcome not in RETRIED_OUTCOMES or number > MAX_RETRIES:
        return None
    wait = _retry_wait(attempt, number, backoff_base)
    if wait is None:
        return None
    now = time.monotonic()
    if deadline is not None and now + wait >= deadline:
        # The retry could not finish inside the call's deadline: give the caller the answer
        # we have now rather than a timeout later.
        return None
    return _request(bid, start_at=now + (wait if pace is None else pace(wait)), deadline=deadline)


def _retry_wait(attempt: BidAttempt, attempt_no: int, backoff_base: float) -> float | None:
    """Seconds to wait before the next attempt, or None when we should not retry."""
    if attempt.outcome == Outcome.RATE_LIMITED and attempt.retry_after is not None:
        if attempt.retry_after > MAX_RETRY_AFTER_SECONDS:
            attempt.error = _join(
                attempt.error, f"Retry-After {attempt.retry_after:g} s is too long to wait"
            )
            return None
        return attempt.retry_after
    return backoff_base * 2 ** (attempt_no - 1)


# --- reading an ending ----------------------------------------------------------------------


def _read_attempt(bid: Bid, response: Response) -> BidAttempt:
    """The attempt a transport ending stands for: an answer read, or a failure described."""
    attempt = _attempt_shell(bid, response)
    failure = response.failure
    if failure is None and response.status is not None:
        answers.parse_response(
            attempt, response.status, response.headers, response.body, bid.target.min_bid
        )
        return attempt
    budget = max(response.request.budget_end - response.started, 0.0)
    host = target_host(bid.target)
    if failure == Failure.REFUSED_ADDRESS:
        return _skipped_endpoint(bid, response.detail, attempt)
    if failure == Failure.TIMEOUT and response.detail.startswith("the deadline passed"):
        attempt.error = response.detail
    elif failure == Failure.CONNECT_TIMEOUT:
        attempt.error = f"could not connect to {host} within {budget:.1f} s"
    elif failure == Failure.TIMEOUT:
        received = len(response.body)
        what = "no answer" if response.status is None else "no complete answer"
        attempt.error = f"{what} from {host} within {budget:.1f} s ({received} bytes received)"
    elif failure in (Failure.OVERSIZED, Failure.HEADERS, Failure.NOT_HTTP):
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = response.detail
        attempt.raw_response = answers.raw_text(response.body)
    else:
        attempt.outcome = Outcome.NETWORK_ERROR
        attempt.error = response.detail
    return attempt


def _attempt_shell(bid: Bid, response: Response) -> BidAttempt:
    """The bid's current attempt with what is known of any ending: when, and how long."""
    attempt = bid.current or _new_attempt(bid)
    bid.current = None
    elapsed = max(time.monotonic() - response.started, 0.0)
    attempt.started_at = datetime.now(UTC) - timedelta(seconds=elapsed)
    attempt.http_status = response.status
    attempt.duration_ms = max(int(response.duration * 1000), 0)
    return attempt


def _failed_attempt(bid: Bid, response: Response, error: str) -> BidAttempt:
    attempt = _attempt_shell(bid, response)
    attempt.outcome = Outcome.NETWORK_ERROR if response.status is None else Outcome.BAD_RESPONSE
    attempt.error = error[: answers.MAX_MESSAGE_CHARS]
    return attempt


def _skipped_endpoint(bid: Bid, problem: str, attempt: BidAttempt | None = None) -> BidAttempt:
    skipped = attempt or _new_attempt(bid)
    skipped.outcome = Outcome.SKIPPED_ENDPOINT
    skipped.http_status = None
    skipped.error = f"not sent: {problem}"
    return skipped


# --- the request ----------------------------------------------------------------------------


def param_problem(key: object, value: object) -> str | None:
    """Why a call parameter cannot be forwarded to buyers, or ``None`` when it can.

    A bid's parameters are flat: strings, numbers, booleans or null; and no text may hold the
    NUL character, which the bid log (PostgreSQL) cannot store. Routing and test bids check
    the parameters they are given with this, each answering in its own error shape.
    """
    if value is not None and not isinstance(value, str | int | float | bool):
        return f"Parameter {key!r} must be a string or a number, not a nested value."
    if contains_nul(key) or contains_nul(value):
        return f"Parameter {key!r} {NUL_MESSAGE}."
    return None


def build_request(
    target: BidTarget, caller_id: str, state_code: str, params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The JSON body of a bid: CallerId and state from the call, then static and call params.

    Per-call ``params`` override the buyer's static ``extra_params``; neither may replace the
    caller ID or state, which always come from the call itself.
    """
    body: dict[str, Any] = {"CallerId": caller_id}
    if state_code:
        body["InboundStateCode"] = state_code
    for key, value in {**target.extra_params, **(params or {})}.items():
        if key not in RESERVED_KEYS:
            body[key] = value
    return body


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A bid's JSON body as sent."""
    return json.dumps(body, default=str).encode()


@functools.lru_cache(maxsize=16)
def request_headers(user_agent: str = DEFAULT_USER_AGENT) -> tuple[str, ...]:
    """The headers of every bid (libcurl adds the host and the body's length).

    ``Accept-Encoding: identity`` asks for the body uncompressed: nothing is decompressed, so
    a compressed answer cannot grow past the body cap. An empty ``Expect`` stops libcurl from
    waiting for a ``100 Continue`` on a larger body. A User-Agent that is not visible ASCII
    (a CR or LF would start a header of its own) is replaced by the default.
    """
    if not _VISIBLE_ASCII.fullmatch(user_agent):
        user_agent = DEFAULT_USER_AGENT
    return (
        "Content-Type: application/json",
        "Accept: application/json",
        "Accept-Encoding: identity",
        f"User-Agent: {user_agent}",
        "Expect:",
    )


def target_host(target: BidTarget) -> str:
    return urlsplit(target.bid_url).netloc or target.bid_url


def _local_attempt(outcome: Outcome, state: str, error: str, code: int | None) -> BidAttempt:
    return BidAttempt(
        attempt=1,
        outcome=outcome,
        started_at=datetime.now(UTC),
        state_code=state,
        code=code,
        error=error,
    )


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second
