"""The Bid API client: send one bid for one buyer and read the answer into typed results.

``send_bid()`` posts ``{"CallerId": ..., "InboundStateCode": ..., ...}`` to
``{endpoint}/{grid_id}`` and returns a :class:`BidResult` holding every attempt it made. It
never raises: timeouts, refused connections, HTML error pages and JSON of the wrong shape all
come back as attempts with an outcome and a readable ``error``, so the caller can log each one.

Transport, in the manner of healthchecks' ``hc.lib.curl``:

- One pooled ``requests.Session`` per process (:func:`get_session`), created lazily under a
  lock. Proxy variables from the environment are ignored (``trust_env`` off) so nothing outside
  the buyer's configuration decides where a bid goes; redirects are not followed for the same
  reason (the endpoint allow-list is checked on the URL we were given, not on a ``Location``).
  Cookies are never kept: one buyer's ``Set-Cookie`` must not travel to the next.
- A *total* budget per attempt of ``target.timeout_seconds``, further capped by ``deadline``
  (an absolute ``time.monotonic()`` value). The body is read with ``read1`` in small pieces and
  the socket timeout is shrunk to the time left before each piece, so a server that dribbles
  one byte every half second still ends at the deadline. While the status line and headers
  are read, a watchdog thread shuts the socket down when the budget runs out, so a server
  that dribbles its headers is cut off at the deadline too.
- Bodies are capped at :data:`MAX_BODY_BYTES`; a larger answer is cut off and the connection
  closed.

Parsing decisions (Bid API guide "Response Format"):

- JSON is parsed with ``parse_float=Decimal`` so ``25.50`` never passes through a float.
- ``code`` may be an integer, an integral number (``1000.0``) or a string of digits
  (``"1000"``: the guide's own reference table writes the type as a string); anything else is a
  ``bad_response``.
- ``bid_amount`` is compared with ``min_bid`` at full precision, then truncated to cents
  (``25.505`` is recorded as ``25.50``): we never record more than the buyer offered, and a
  recorded amount is at or above ``min_bid`` exactly when the offer was.
- 1000 is acceptable only with ``bid_amount >= min_bid`` and a destination; 1000 without a
  destination is a ``bad_response`` ("accepted without a destination").

Retries (Bid API guide "Implement Retry Logic", error-code reference 5001): a 5000 or HTTP 5xx
is retried at most :data:`MAX_RETRIES` times with exponential backoff; a 429/5001 likewise,
waiting for ``Retry-After`` when the buyer sends one. Nothing else is retried: a 1000-4006 is a
real answer, and a timeout or network error has already spent the time a live call has. No
backoff or attempt runs past ``deadline``: when the next wait would cross it we stop and return
what we have.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import http.cookiejar
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry
from urllib3.util import Timeout as Urllib3Timeout

from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.text import NUL_MESSAGE, contains_nul, nul_replaced

logger = logging.getLogger(__name__)

MAX_RETRIES = 2
MAX_BODY_BYTES = 64 * 1024
RAW_RESPONSE_KEEP = 2000  # characters of a non-JSON body kept for the log

BACKOFF_BASE = 0.25  # seconds; retry n waits BACKOFF_BASE * 2**(n-1): 0.25 s, then 0.5 s
# A buyer asking us to wait longer than this is not coming back within any bid's budget
# (timeout_seconds is at most 10), so we stop instead of retrying early against its wishes.
MAX_RETRY_AFTER_SECONDS = 10.0
DEFAULT_USER_AGENT = "CallGridPortal/0.1"
# Buyers may allow up to 1000 simultaneous requests (Buyer.max_concurrency); the pool must not
# be the bottleneck, and urllib3 only opens connections when they are needed.
POOL_MAXSIZE = 1000
POOL_CONNECTIONS = 100  # distinct hosts kept; most buyers share bid.callgrid.com
READ_CHUNK_BYTES = 8192
MAX_BID_AMOUNT = Decimal("99999999.99")  # what BidLog.bid_amount (10 digits, 2 dp) can hold
MAX_STORED_CODE = 32767  # BidLog.code is a small integer column
MAX_FIELD_CHARS = 32  # BidLog.destination / response_caller_id
MAX_MESSAGE_CHARS = 500

CENT = Decimal("0.01")

# The answer each CallGrid code stands for (1000 needs the checks in _read_accept).
CODE_OUTCOMES: dict[int, Outcome] = {
    1000: Outcome.ACCEPTED,
    2000: Outcome.DECLINED,
    3000: Outcome.NO_CAPACITY,
    4000: Outcome.INVALID_REQUEST,
    5000: Outcome.SYSTEM_ERROR,
    4001: Outcome.DISABLED,
    4002: Outcome.PAUSED,
    4003: Outcome.INVALID_CALLER_ID,
    4004: Outcome.CAPACITY_CHECK_FAILED,
    4005: Outcome.DUPLICATE,
    4006: Outcome.NO_NUMBERS,
    5001: Outcome.RATE_LIMITED,
}
RETRIED_OUTCOMES = frozenset({Outcome.SYSTEM_ERROR, Outcome.RATE_LIMITED})

Sleep = Callable[[float], None]


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


# --- the deadline watchdog ----------------------------------------------------------------

# The end of the running attempt's budget, per thread, read by the connections below.
_budget = threading.local()


class _Watchdog:
    """One thread that shuts down sockets whose attempt has run out of time.

    Socket timeouts bound each ``recv``, not the whole answer: a server sending its status line
    one byte at a time would hold a bid for ever. Entries are disarmed lazily (the socket slot
    is cleared) so arming and disarming cost a heap push and an assignment.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []
        self._order = itertools.count()
        self._pid = 0

    def arm(self, sock: socket.socket, when: float) -> list[Any]:
        entry: list[Any] = [when, next(self._order), sock]
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child without the thread
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="bid-deadline", daemon=True).start()
            heapq.heappush(self._heap, entry)
            # Wake the thread only when this entry is due first; otherwise it already waits
            # for an earlier moment and looks again then. Waking it for every bid of an
            # auction costs each one a thread switch.
            if self._heap[0] is entry:
                self._cond.notify()
        return entry

    @staticmethod
    def disarm(entry: list[Any]) -> None:
        entry[2] = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][2] is None:
                    if self._heap:
                        heapq.heappop(self._heap)
                    else:
                        self._cond.wait()
                when, _order, sock = self._heap[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


class _DeadlineMixin:
    """Arm the watchdog while the status line and headers of an answer are read."""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        end = getattr(_budget, "end", None)
        if end is None or self.sock is None:
            return super().getresponse()  # type: ignore[misc]
        entry = _WATCHDOG.arm(self.sock, end)
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            _WATCHDOG.disarm(entry)


class _DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections honour the attempt's total budget."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }


# --- the session -------------------------------------------------------------------------

_session: requests.Session | None = None
_session_pid = 0
_session_lock = threading.Lock()


def new_session() -> requests.Session:
    """A session set up for bids: no proxies from the environment, no cookies, no retries.

    Each process has one (:func:`get_session`); tests make their own, e.g. to trust a CA.
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # max_retries=0: urllib3 must not resend a bid on its own; retries are decided here, per
    # CallGrid code, and each one is logged.
    adapter = _DeadlineAdapter(
        pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def get_session() -> requests.Session:
    """Return this process's pooled session, creating it on first use.

    Keep-alive connections are shared by every thread of the process. A forked child (Celery
    prefork workers) gets a session of its own: sockets inherited from the parent would be
    read by two processes at once.
    """
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _session_lock:
            if _session is None or _session_pid != pid:
                _session = new_session()
                _session_pid = pid
    return _session


def user_agent() -> str:
    """``settings.CALLGRID_USER_AGENT`` when Django is configured, else a built-in name."""
    try:
        from django.conf import settings

        return str(getattr(settings, "CALLGRID_USER_AGENT", DEFAULT_USER_AGENT))
    except Exception:
        # No Django, or no settings module: the client also runs in plain scripts.
        return DEFAULT_USER_AGENT


# --- sending -------------------------------------------------------------------------------


def send_bid(
    target: BidTarget,
    caller_id: str,
    state_code: str | None = None,
    params: Mapping[str, str] | None = None,
    *,
    deadline: float | None = None,
    session: requests.Session | None = None,
    sleep: Sleep = time.sleep,
    backoff_base: float = BACKOFF_BASE,
    earlier: BidAttempt | None = None,
) -> BidResult:
    """Send one bid to ``target`` and return every attempt; never raises.

    ``deadline`` is an absolute ``time.monotonic()`` value (routing passes the call's); no
    attempt, retry or backoff runs past it. ``sleep`` and ``backoff_base`` exist so tests can
    watch the pacing without waiting for it. ``earlier`` is a first attempt already made
    elsewhere (an auction's :class:`~.fanout.FanOut`): the bid carries on from it, retrying
    it if its answer calls for that.
    """
    attempts: list[BidAttempt] = [] if earlier is None else [earlier]
    state = (state_code or "").strip().upper()
    try:
        try:
            number = normalize_caller_id(caller_id)
        except InvalidCallerId as exc:
            return BidResult([_local_attempt(Outcome.INVALID_CALLER_ID, state, exc.reason, 4003)])
        body = build_request(target, number.formatted(target.caller_id_format), state, params)
        http = session or get_session()
        while not attempts or _retry(attempts[-1], len(attempts), deadline, sleep, backoff_base):
            attempt = _send_once(http, target, body, deadline, len(attempts) + 1)
            attempt.caller_id = number.ten_digit
            attempt.state_code = state
            attempts.append(attempt)
    except Exception as exc:
        # Last resort: a bug here must cost one bid, never the whole routing decision.
        logger.exception("send_bid failed unexpectedly for grid %s", target.grid_id)
        failed = _local_attempt(Outcome.NETWORK_ERROR, state, f"unexpected error: {exc!r}", None)
        failed.attempt = len(attempts) + 1
        attempts.append(failed)
    return BidResult(attempts)


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
    target: BidTarget, caller_id: str, state_code: str, params: Mapping[str, str] | None
) -> dict[str, Any]:
    """The JSON body of a bid: CallerId and state from the call, then static and call params.

    Per-call ``params`` override the buyer's static ``extra_params``; neither may replace the
    caller ID or state, which always come from the call itself.
    """
    body: dict[str, Any] = {"CallerId": caller_id}
    if state_code:
        body["InboundStateCode"] = state_code
    for key, value in {**target.extra_params, **(params or {})}.items():
        if key not in ("CallerId", "InboundStateCode"):
            body[key] = value
    return body


def _local_attempt(outcome: Outcome, state: str, error: str, code: int | None) -> BidAttempt:
    return BidAttempt(
        attempt=1,
        outcome=outcome,
        started_at=datetime.now(UTC),
        state_code=state,
        code=code,
        error=error,
    )


def _retry(
    attempt: BidAttempt, attempt_no: int, deadline: float | None, sleep: Sleep, backoff_base: float
) -> bool:
    """Whether to try again after ``attempt``; when so, the wait before it has been slept."""
    if attempt.outcome not in RETRIED_OUTCOMES or attempt_no > MAX_RETRIES:
        return False
    wait = _retry_wait(attempt, attempt_no, backoff_base)
    if wait is None:
        return False
    if deadline is not None and time.monotonic() + wait >= deadline:
        # The retry could not finish inside the call's deadline: give the caller the answer
        # we have now rather than a timeout later.
        return False
    sleep(wait)
    return True


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


def _send_once(
    http: requests.Session,
    target: BidTarget,
    body: dict[str, Any],
    deadline: float | None,
    attempt_no: int,
) -> BidAttempt:
    """Make one HTTP attempt inside its budget and read the answer."""
    started_at = datetime.now(UTC)
    start = time.monotonic()
    budget_end = start + float(target.timeout_seconds)
    if deadline is not None:
        budget_end = min(budget_end, deadline)
    attempt = BidAttempt(
        attempt=attempt_no, outcome=Outcome.TIMEOUT, started_at=started_at, request=body
    )

    def finish() -> BidAttempt:
        attempt.duration_ms = int((time.monotonic() - start) * 1000)
        return attempt

    remaining = budget_end - start
    if remaining <= 0:
        attempt.error = "the deadline passed before the bid could be sent"
        return finish()

    _budget.end = budget_end
    try:
        data = encode_body(body)
        response = _post(http, target.bid_url, data, (remaining, remaining))
    except requests.exceptions.Timeout as exc:
        attempt.error = _describe_timeout(exc, target, budget_end - start)
        return finish()
    except (requests.exceptions.RequestException, Urllib3HTTPError, OSError) as exc:
        if time.monotonic() >= budget_end:
            # The watchdog shut the socket at the deadline: the server was too slow.
            attempt.error = _describe_timeout(exc, target, budget_end - start)
            return finish()
        attempt.outcome = Outcome.NETWORK_ERROR
        attempt.error = describe_network_error(exc)
        return finish()
    finally:
        _budget.end = None

    try:
        attempt.http_status = response.status
        raw, why = _read_body(response, budget_end)
    finally:
        # A complete answer has already given its connection back to the pool; one cut off
        # (deadline, size cap, broken) is closed rather than reused.
        response.close()
        response.release_conn()
    if why == "timeout":
        attempt.outcome = Outcome.TIMEOUT
        attempt.error = (
            f"no complete answer within {budget_end - start:.1f} s ({len(raw)} bytes received)"
        )
        return finish()
    if why == "network":
        attempt.outcome = Outcome.NETWORK_ERROR
        attempt.error = "the connection broke while the answer was being read"
        return finish()
    if why == "oversized":
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"answer larger than the {MAX_BODY_BYTES // 1024} KiB cap; reading stopped"
        attempt.raw_response = raw_text(raw)
        return finish()
    parse_response(attempt, response.status, response.headers, raw, target.min_bid)
    return finish()


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A bid's JSON body as sent."""
    return json.dumps(body, default=str).encode()


def request_headers(length: int) -> dict[str, str]:
    """The headers of a bid with a ``length``-byte body (the host aside).

    ``Accept-Encoding: identity`` asks for the body uncompressed, which is what the body
    readers expect.
    """
    return {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": user_agent(),
        "Content-Length": str(length),
    }


def _post(
    http: requests.Session,
    url: str,
    data: bytes,
    timeout: tuple[float, float],
) -> BaseHTTPResponse:
    """POST a bid on the session's connection pool, below requests' session and adapter.

    ``Session.post`` merges cookies, hooks and default headers and looks for a redirect on
    every call, and ``HTTPAdapter.send`` finds the pool again and wraps the answer in a
    ``Response`` (cookies extracted, encoding guessed). A bid wants none of it: cookies are
    refused, redirects are not followed, the headers are ours and the body is read raw. On an
    auction's fan-out that layer was a third of the client's CPU, spent one bid after the
    other under the GIL. The pool still comes from the session's adapter (its mounts, TLS
    verification and client certificate), once per URL; urllib3's errors are raised as the
    ``requests`` exceptions the adapter would raise.
    """
    pool, target = pool_for(http, url)
    options: dict[str, Any] = {
        "body": data,
        "headers": request_headers(len(data)),
        "redirect": False,
        "assert_same_host": False,
        "preload_content": False,
        "decode_content": False,
        "retries": _NO_RETRIES,
        "timeout": Urllib3Timeout(connect=timeout[0], read=timeout[1]),
        "chunked": False,
    }
    try:
        try:
            return pool.urlopen("POST", target, **options)
        except ClosedPoolError:
            # The pool manager dropped this host's pool (it keeps POOL_CONNECTIONS hosts)
            # after we looked it up: look again, once.
            pool, target = pool_for(http, url, fresh=True)
            return pool.urlopen("POST", target, **options)
    except (ProtocolError, OSError) as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except MaxRetryError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            raise requests.exceptions.ConnectTimeout(exc) from exc
        if isinstance(reason, Urllib3SSLError):
            raise requests.exceptions.SSLError(exc) from exc
        raise requests.exceptions.ConnectionError(exc) from exc
    except ClosedPoolError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except Urllib3SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    except ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc


# urllib3 must not resend a bid on its own: retries are decided per CallGrid code, and logged.
_NO_RETRIES = Retry(0, read=False, redirect=False)


def pool_for(
    http: requests.Session, url: str, *, fresh: bool = False
) -> tuple[HTTPConnectionPool, str]:
    """The session's connection pool for ``url`` and the target to ask it for.

    Found through the adapter exactly as ``HTTPAdapter.send`` finds it, then remembered on the
    session until the pool manager closes that pool.
    """
    known: dict[str, tuple[HTTPConnectionPool, str]] = http.__dict__.setdefault(
        "_callgrid_pools", {}
    )
    found = None if fresh else known.get(url)
    if found is not None and found[0].pool is not None:
        return found
    request = requests.PreparedRequest()
    request.prepare_url(url, None)
    request.prepare_headers({})
    adapter = http.get_adapter(request.url)  # type: ignore[arg-type]
    pool = adapter.get_connection_with_tls_context(  # type: ignore[attr-defined]
        request, http.verify, proxies=http.proxies, cert=http.cert
    )
    adapter.cert_verify(pool, request.url, http.verify, http.cert)  # type: ignore[attr-defined]
    found = (pool, adapter.request_url(request, http.proxies))  # type: ignore[attr-defined]
    known[url] = found
    return found


def _read_body(raw: BaseHTTPResponse, budget_end: float) -> tuple[bytes, str]:
    """Read the body within the budget and the size cap.

    Returns the bytes and why reading stopped: ``""`` (complete), ``timeout``, ``oversized`` or
    ``network``.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = budget_end - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout"
        _shrink_socket_timeout(raw, remaining)
        try:
            chunk = raw.read1(READ_CHUNK_BYTES)
        except (ReadTimeoutError, TimeoutError):
            return b"".join(chunks), "timeout"
        except (ProtocolError, Urllib3HTTPError, requests.exceptions.RequestException, OSError):
            return b"".join(chunks), "network"
        if not chunk:
            return b"".join(chunks), ""
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], "oversized"


def _shrink_socket_timeout(raw: Any, remaining: float) -> None:
    """Let the next ``recv`` wait no longer than the time left in the attempt's budget."""
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        # A closed socket raises here; the read that follows reports it properly.
        with contextlib.suppress(OSError):
            sock.settimeout(max(remaining, 0.001))


def _describe_timeout(exc: Exception, target: BidTarget, budget: float) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"could not connect to {target_host(target)} within {budget:.1f} s"
    return f"no answer from {target_host(target)} within {budget:.1f} s"


def target_host(target: BidTarget) -> str:
    return urlsplit(target.bid_url).netloc or target.bid_url


def describe_network_error(exc: BaseException) -> str:
    """A short, readable reason for a failed connection (refused, DNS, reset, TLS)."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 20:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "could not resolve the host name"
        if isinstance(current, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(current, requests.exceptions.SSLError):
            return f"TLS error: {current}"
        if isinstance(current, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return f"invalid endpoint URL: {current}"
        # Walk the causes: requests wraps urllib3, which wraps the socket error.
        for inner in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(inner, BaseException):
                stack.append(inner)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    text = str(exc)
    if "Name or service not known" in text or "NameResolution" in text:
        return "could not resolve the host name"
    return f"network error: {type(exc).__name__}: {text}"[:MAX_MESSAGE_CHARS]


# --- parsing ------------------------------------------------------------------------------


def parse_response(
    attempt: BidAttempt,
    http_status: int,
    headers: Mapping[str, str],
    raw: bytes,
    min_bid: Decimal,
) -> None:
    """Fill ``attempt`` from an HTTP answer: status, CallGrid code, amount and outcome."""
    attempt.http_status = http_status
    if http_status == 429:
        attempt.retry_after = parse_retry_after(headers.get("Retry-After"))
    try:
        # NaN and Infinity are not JSON (RFC 8259) but Python reads them; as Decimals they
        # reach the amount check, which names the field that carries them.
        payload = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _no_json(attempt, http_status, raw, f"not valid JSON ({exc})")
        return
    if not isinstance(payload, dict):
        _no_json(attempt, http_status, raw, f"JSON {type(payload).__name__}, not an object")
        return
    code = _parse_code(payload.get("code"))
    if code is None:
        _no_json(attempt, http_status, raw, f"no integer code (code={payload.get('code')!r})")
        return
    attempt.code = code if 0 <= code <= MAX_STORED_CODE else None
    attempt.message = nul_replaced(str(payload.get("message") or "")[:MAX_MESSAGE_CHARS])
    attempt.response_caller_id = _short(payload.get("caller_id"))
    # HTTP 429 is a rate limit whatever the body says (error-code reference, 5001).
    outcome = Outcome.RATE_LIMITED if http_status == 429 else CODE_OUTCOMES.get(code)
    if outcome is None:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"unknown code {code}"
        attempt.raw_response = raw_text(raw)
        return
    amount, amount_error = _parse_amount(payload.get("bid_amount"))
    attempt.bid_amount = None if amount is None else amount.quantize(CENT, rounding=ROUND_DOWN)
    if outcome != Outcome.ACCEPTED:
        # Only an acceptance carries a meaningful amount (the guide sends 0 with the others),
        # so an odd amount there does not hide the real answer, e.g. a retryable 5000.
        attempt.outcome = outcome
        return
    if amount_error:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = amount_error
        attempt.raw_response = raw_text(raw)
        return
    _read_accept(attempt, payload, amount, min_bid, raw)


def _read_accept(
    attempt: BidAttempt,
    payload: dict[str, Any],
    amount: Decimal | None,
    min_bid: Decimal,
    raw: bytes,
) -> None:
    destination = payload.get("destination")
    if isinstance(destination, int) and not isinstance(destination, bool):
        destination = str(destination)
    if amount is None:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = "accepted without a bid amount"
        attempt.raw_response = raw_text(raw)
        return
    if not isinstance(destination, str) or not destination.strip():
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = "accepted without a destination"
        attempt.raw_response = raw_text(raw)
        return
    destination = destination.strip()
    if not destination.isprintable():
        # A control character (NUL, newline, ...) cannot be part of a number to send a call to.
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = "destination contains control characters"
        attempt.raw_response = raw_text(raw)
        return
    if len(destination) > MAX_FIELD_CHARS:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"destination longer than {MAX_FIELD_CHARS} characters"
        attempt.raw_response = raw_text(raw)
        return
    attempt.destination = destination
    # Compare the exact offer: 24.999 is below a 25.00 minimum even though it rounds to 25.00.
    if amount < min_bid:
        attempt.outcome = Outcome.BELOW_MIN_BID
        attempt.error = f"bid {amount} is below the minimum {min_bid}"
        return
    attempt.outcome = Outcome.ACCEPTED


def _parse_code(value: Any) -> int | None:
    """An integer code from an int, an integral number or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    return None


def _parse_amount(value: Any) -> tuple[Decimal | None, str]:
    """The bid amount as a Decimal (None when absent) and an error when it is unusable."""
    if value is None:
        return None, ""
    if isinstance(value, bool):
        return None, f"bid_amount {value!r} is not a number"
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None, f"bid_amount {value[:40]!r} is not a number"
    else:
        return None, f"bid_amount {value!r} is not a number"
    if not amount.is_finite():
        return None, f"bid_amount {amount} is not a finite number"
    if amount < 0:
        return None, f"bid_amount {amount} is negative"
    if amount > MAX_BID_AMOUNT:
        return None, f"bid_amount {amount} is out of range"
    return amount, ""


def _no_json(attempt: BidAttempt, http_status: int, raw: bytes, detail: str) -> None:
    """Classify an answer that carries no usable CallGrid code."""
    attempt.raw_response = raw_text(raw)
    if http_status == 429:
        attempt.outcome = Outcome.RATE_LIMITED
        attempt.error = f"HTTP 429 Too Many Requests; body {detail}"
    elif http_status >= 500:
        # The buyer's side failed before CallGrid could answer: the same as a 5000, retried.
        attempt.outcome = Outcome.SYSTEM_ERROR
        attempt.error = f"HTTP {http_status}; body {detail}"
    elif 300 <= http_status < 400:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"HTTP {http_status} redirect not followed"
    elif http_status != 200:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"HTTP {http_status}; body {detail}"
    else:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"answer {detail}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def raw_text(raw: bytes) -> str:
    return nul_replaced(raw.decode("utf-8", errors="replace")[:RAW_RESPONSE_KEEP])


def _short(value: Any) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return nul_replaced(str(value)[:MAX_FIELD_CHARS])


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second
