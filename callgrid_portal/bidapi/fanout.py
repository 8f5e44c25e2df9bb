"""Ask several buyers at once from one thread: write every bid, then read the answers as they
arrive.

An auction could give each bid a thread of its own, as :func:`~.client.send_bid` does. On a
small server that costs every bid a thread hand-off on the way out and a turn at the GIL on the
way back. Those turns come one after the other when the answers arrive together, as an
auction's do. Here one thread does everything:

1. It writes every request.
2. It waits on all the sockets at once with a selector.
3. It reads each answer as its bytes come in. httptools (llhttp, the parser of Node.js and
   uvicorn) parses the HTTP/1.1; :func:`~.client.parse_response` reads the body exactly as
   for any other bid.

A bid goes this way only when its buyer has an idle kept-alive connection in the session's
pool. Opening a connection (the TCP and TLS handshakes) blocks, so :meth:`FanOut.add` refuses
a bid without one, and the caller sends it on a thread instead, at the same time. The
connections are the session's own: the same urllib3 pools, TLS settings and certificate checks,
taken from the pool and given back to it as ``send_bid``'s are. A connection that did not end
cleanly (a timeout, a cut-off answer, ``Connection: close``) is closed, never reused.

Each bid has the budget ``send_bid`` would give it: the buyer's timeout, capped by the call's
deadline. A buyer that has not answered completely by then is a ``timeout``, however its bytes
trickle in. Only the first attempt is made here. An answer that is retried (a 5000, an HTTP 5xx,
a 429) needs a backoff first, and the caller continues it on a thread with
``send_bid(earlier=...)``.
"""

from __future__ import annotations

import functools
import re
import selectors
import ssl
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import requests
from urllib3 import HTTPHeaderDict
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ClosedPoolError

from callgrid_portal.bidapi.client import (
    MAX_BODY_BYTES,
    READ_CHUNK_BYTES,
    BidAttempt,
    BidTarget,
    describe_network_error,
    encode_body,
    parse_response,
    pool_for,
    raw_text,
    request_headers,
    target_host,
)
from callgrid_portal.bidapi.outcomes import Outcome

# Reads that would block: nothing more has arrived yet (a TLS socket may also want to write
# during a key update; the selector wakes it again either way).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

Answered = Callable[[Hashable, BidAttempt], None]
Waiting = Callable[[list[tuple[Hashable, BidAttempt]]], None]


# How many connections without a socket add() looks past for an idle one (see below).
_SCAN_LIMIT = 8


def _idle_connection(pool: HTTPConnectionPool) -> HTTPConnection | None:
    """An idle kept-alive connection from ``pool``, or ``None`` when none is at hand.

    The pool is a stack: a connection closed after a failed bid goes back on top, above the
    live ones, and so does a fresh one made for an empty slot. Up to :data:`_SCAN_LIMIT`
    of those are looked past, then put back as they were.

    ``_get_conn``/``_put_conn`` are the pool's own lease and return, the calls its
    ``urlopen`` makes; requests' adapter has no way to lend a connection out.
    """
    passed: list[HTTPConnection] = []
    try:
        for _ in range(_SCAN_LIMIT):
            if pool.pool is None or pool.pool.empty():
                return None
            conn = cast(HTTPConnection, pool._get_conn())
            # urllib3 has closed it if the server dropped it while idle.
            if conn.sock is not None:
                return conn
            passed.append(conn)
        return None
    finally:
        for conn in reversed(passed):
            pool._put_conn(conn)


# What a bid's request head may hold: a header name is an HTTP token; a value, the path and
# the host are visible ASCII (a value may have spaces inside). Nothing else can be written
# without changing the request's meaning, a CR or LF above all.
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_WORD = re.compile(r"[\x21-\x7e]+")


@functools.lru_cache(maxsize=1024)
def _request_head(path: str, host: str, headers: tuple[tuple[str, str], ...]) -> bytes | None:
    """A bid's request line and headers, all but its Content-Length, as they go on the wire.

    ``None`` when a part could not be written as HTTP/1.1. The head is the same for every
    bid to one buyer, so it is built once.
    """
    if not (_WORD.fullmatch(path) and _WORD.fullmatch(host)):
        return None
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if not (_NAME.fullmatch(name) and _VALUE.fullmatch(value)):
            return None
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _request_bytes(path: str, host: str, data: bytes) -> bytes | None:
    """The whole request of a bid with the JSON body ``data``; ``None`` as for the head."""
    headers = request_headers(len(data))
    length = headers.pop("Content-Length")
    head = _request_head(path, host, tuple(headers.items()))
    if head is None:
        return None
    return b"%sContent-Length: %s\r\n\r\n%s" % (head, length.encode("ascii"), data)


@dataclass(eq=False)
class _Exchange:
    """One bid on its connection: what was sent, and what has come back so far.

    It is also the parser's protocol: httptools calls the ``on_*`` methods as the answer's
    parts are read.
    """

    key: Hashable
    target: BidTarget
    pool: HTTPConnectionPool
    conn: HTTPConnection
    payload: bytes
    attempt: BidAttempt
    start: float = 0.0
    budget_end: float = 0.0
    status: int | None = None
    headers: HTTPHeaderDict | None = None
    body: list[bytes] = field(default_factory=list)
    size: int = 0
    received: int = 0
    complete: bool = False  # the whole answer is in
    oversized: bool = False  # the body passed MAX_BODY_BYTES; reading stopped
    # Bytes came after the answer: the connection is out of step and must not be reused.
    trailing: bool = False
    # The socket timeout the pool's connection had, given back with it.
    socket_timeout: float | None = None
    _header_lines: list[tuple[str, str]] = field(default_factory=list)
    _interim: bool = False  # reading a 1xx answer, which the real one follows
    keep_alive: bool = False  # the server keeps the connection open after this answer
    # Reads the answer, calling the on_* methods below (made with the exchange, its protocol).
    parser: httptools.HttpResponseParser = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)

    @property
    def sock(self) -> Any:
        return self.conn.sock

    # --- httptools' callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True
        self._header_lines = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self._header_lines.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        # An interim answer (100 Continue, 103 Early Hints) comes before the real one.
        self._interim = 100 <= status < 200
        if not self._interim:
            self.status = status
            self.headers = HTTPHeaderDict(self._header_lines)

    def on_body(self, body: bytes) -> None:
        if self.complete or self._interim or self.oversized:
            return
        self.body.append(body)
        self.size += len(body)
        self.oversized = self.size > MAX_BODY_BYTES

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self.status is not None and not self.complete and not self.oversized:
            self.complete = True
            # Asked now: llhttp forgets the answer's Connection header once it is done.
            self.keep_alive = self.parser.should_keep_alive()

    def ends_at_close(self) -> bool:
        """Whether the answer's body runs to the end of the connection (no length given)."""
        headers = self.headers or HTTPHeaderDict()
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        return self.status not in (204, 304) and "Content-Length" not in headers and not chunked


class FanOut:
    """Bids for one call, sent together and read together by the calling thread.

    ``add`` every bid first (each one either joins or is refused), then ``run`` once.
    """

    def __init__(self, *, session: requests.Session, deadline: float | None) -> None:
        self._session = session
        self._deadline = deadline
        self._exchanges: list[_Exchange] = []

    def add(
        self,
        key: Hashable,
        target: BidTarget,
        body: dict[str, Any],
        *,
        caller_id: str,
        state_code: str,
    ) -> bool:
        """Take an idle connection to ``target`` for this bid; ``False`` when there is none.

        ``body`` is the request (:func:`~.client.build_request`), ``caller_id`` the caller's ten
        digits and ``state_code`` the call's state, as the attempt records them. Nothing is
        sent yet. A refused bid is the caller's to send some other way.
        """
        try:
            pool, path = pool_for(self._session, target.bid_url)
            conn = _idle_connection(pool)
        except (ClosedPoolError, requests.exceptions.RequestException, ValueError):
            return False
        if conn is None:
            return False
        payload = _request_bytes(
            path, urlsplit(target.bid_url).netloc.rpartition("@")[2], encode_body(body)
        )
        if payload is None:
            # Not writable as HTTP here: the threaded client refuses it with its own error.
            pool._put_conn(conn)
            return False
        attempt = BidAttempt(
            attempt=1,
            outcome=Outcome.TIMEOUT,
            started_at=datetime.now(UTC),
            request=body,
            caller_id=caller_id,
            state_code=state_code,
        )
        self._exchanges.append(_Exchange(key, target, pool, conn, payload, attempt))
        return True

    def run(self, answered: Answered, *, waiting: Waiting | None = None) -> None:
        """Send every added bid, then read until each is answered or out of time.

        ``answered`` gets each bid's attempt as soon as it is decided, in the order the
        answers complete, so the caller can start a retry while others are still due.
        ``waiting``, if given, is called once every bid is out, before the first answer is
        read, with the ``(key, attempt)`` of each bid sent: work the caller does then is done
        while the buyers think, instead of between one answer and the next. An answer that
        comes in meanwhile waits in its socket, and each bid's budget runs on regardless.
        """
        selector = selectors.DefaultSelector()
        pending: list[_Exchange] = []
        try:
            for exchange in self._exchanges:
                if self._send(exchange):
                    selector.register(exchange.sock, selectors.EVENT_READ, exchange)
                    pending.append(exchange)
                else:
                    answered(exchange.key, exchange.attempt)
            if waiting is not None and pending:
                waiting([(exchange.key, exchange.attempt) for exchange in pending])
            while pending:
                now = time.monotonic()
                for exchange in [e for e in pending if e.budget_end <= now]:
                    self._finish(selector, pending, exchange, reuse=False)
                    exchange.attempt.error = self._timeout_error(exchange)
                    answered(exchange.key, exchange.attempt)
                if not pending:
                    break
                wait = min(e.budget_end for e in pending) - time.monotonic()
                for key, _ in selector.select(max(wait, 0.0)):
                    exchange = cast(_Exchange, key.data)
                    if self._read(exchange):
                        reuse = self._complete(exchange)
                        self._finish(selector, pending, exchange, reuse=reuse)
                        answered(exchange.key, exchange.attempt)
        finally:
            # Only an exception of ours gets here with bids pending: close their connections.
            for exchange in pending:
                self._finish(selector, pending, exchange, reuse=False)
            selector.close()

    # --- one exchange -------------------------------------------------------------------

    def _send(self, exchange: _Exchange) -> bool:
        """Write the request; ``False`` (and the attempt decided) when it could not go."""
        exchange.start = time.monotonic()
        exchange.attempt.started_at = datetime.now(UTC)
        end = exchange.start + float(exchange.target.timeout_seconds)
        if self._deadline is not None:
            end = min(end, self._deadline)
        exchange.budget_end = end
        sock = exchange.sock
        exchange.socket_timeout = sock.gettimeout()
        if end <= exchange.start:
            exchange.attempt.error = "the deadline passed before the bid could be sent"
            exchange.pool._put_conn(exchange.conn)
            return False
        try:
            sock.settimeout(end - exchange.start)
            sock.sendall(exchange.payload)
            sock.setblocking(False)
        except OSError as exc:
            exchange.attempt.outcome = Outcome.NETWORK_ERROR
            exchange.attempt.error = describe_network_error(exc)
            self._give_back(exchange, reuse=False)
            self._stop_clock(exchange)
            return False
        return True

    def _read(self, exchange: _Exchange) -> bool:
        """Take in what has arrived; ``True`` once the attempt is decided."""
        while True:
            try:
                data = exchange.sock.recv(READ_CHUNK_BYTES)
            except _WOULD_BLOCK:
                return False
            except OSError as exc:
                return self._broken(exchange, describe_network_error(exc))
            if not data:
                return self._closed(exchange)
            exchange.received += len(data)
            try:
                exchange.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                return self._broken(exchange, "not a valid HTTP answer: it switched protocols")
            except httptools.HttpParserError as exc:
                if not exchange.complete:
                    return self._broken(exchange, f"not a valid HTTP answer: {exc}")
                exchange.trailing = True  # garbage after a whole answer
            if exchange.oversized:
                attempt = exchange.attempt
                attempt.http_status = exchange.status
                attempt.outcome = Outcome.BAD_RESPONSE
                attempt.error = (
                    f"answer larger than the {MAX_BODY_BYTES // 1024} KiB cap; reading stopped"
                )
                attempt.raw_response = raw_text(b"".join(exchange.body)[:MAX_BODY_BYTES])
                return True
            if exchange.complete:
                return True

    def _closed(self, exchange: _Exchange) -> bool:
        """The server closed the connection before the answer was complete."""
        if exchange.received == 0:
            return self._broken(exchange, "the server closed the connection without answering")
        if exchange.status is not None and exchange.ends_at_close():
            # A body sent without a length ends with the connection: it is all there.
            exchange.complete = True
            return True
        return self._broken(exchange, "the connection broke while the answer was being read")

    def _complete(self, exchange: _Exchange) -> bool:
        """Fill in a decided attempt; ``True`` when its connection can serve another bid."""
        attempt = exchange.attempt
        self._stop_clock(exchange)
        if exchange.complete and exchange.status is not None:
            parse_response(
                attempt,
                exchange.status,
                exchange.headers or HTTPHeaderDict(),
                b"".join(exchange.body),
                exchange.target.min_bid,
            )
            # Reusable when the server keeps the connection open and nothing followed the
            # answer (an answer that ran to the close was not kept alive).
            return exchange.keep_alive and not exchange.trailing
        return False

    def _broken(self, exchange: _Exchange, error: str) -> bool:
        exchange.attempt.outcome = Outcome.NETWORK_ERROR
        exchange.attempt.http_status = exchange.status
        exchange.attempt.error = error
        return True

    def _timeout_error(self, exchange: _Exchange) -> str:
        self._stop_clock(exchange)
        budget = exchange.budget_end - exchange.start
        if exchange.status is None:
            return f"no answer from {target_host(exchange.target)} within {budget:.1f} s"
        exchange.attempt.http_status = exchange.status
        return f"no complete answer within {budget:.1f} s ({exchange.size} bytes received)"

    @staticmethod
    def _stop_clock(exchange: _Exchange) -> None:
        exchange.attempt.duration_ms = int((time.monotonic() - exchange.start) * 1000)

    def _finish(
        self,
        selector: selectors.BaseSelector,
        pending: list[_Exchange],
        exchange: _Exchange,
        *,
        reuse: bool,
    ) -> None:
        selector.unregister(exchange.sock)
        pending.remove(exchange)
        self._give_back(exchange, reuse=reuse)

    @staticmethod
    def _give_back(exchange: _Exchange, *, reuse: bool) -> None:
        """Return the connection to its pool: as it was when reusable, else closed."""
        if reuse:
            exchange.sock.settimeout(exchange.socket_timeout)
        else:
            exchange.conn.close()
        exchange.pool._put_conn(exchange.conn)
