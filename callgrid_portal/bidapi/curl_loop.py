"""The per-thread libcurl loop behind :class:`~callgrid_portal.bidapi.transport.Transport`:
one multi handle per thread, its sockets in a selector, each request's caps and address checks
as its bytes come and go."""

from __future__ import annotations

import errno as errno_module
import heapq
import itertools
import os
import selectors
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import pycurl

from callgrid_portal.bidapi.endpoints import parse_address
from callgrid_portal.bidapi.exchange import (
    MAX_BODY_BYTES,
    MAX_CONNECTIONS_PER_THREAD,
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    Failure,
    OnResponse,
    Request,
    Response,
)


class LoopOwner(Protocol):
    """What the loop needs of the transport that runs it."""

    ca_file: str

    def resolve(self, host: str, port: int, *, timeout: float) -> list[str]: ...


# --- one request in flight ------------------------------------------------------------------


class _Exchange:
    """A curl handle and the request it carries: the bytes received, the caps as they come.

    One per handle, reused with it, so the callbacks are given to libcurl once.
    """

    def __init__(self, handle: pycurl.Curl, request: Request) -> None:
        self.handle = handle
        handle.setopt(pycurl.HEADERFUNCTION, self.on_header)
        handle.setopt(pycurl.WRITEFUNCTION, self.on_body)
        self.reset(request)

    def reset(self, request: Request) -> None:
        self.request = request
        self.response = Response(request=request)
        self.chunks: list[bytes] = []
        self.size = 0
        self.header_count = 0
        self.header_bytes = 0
        # The addresses a name was pinned to; None when there is nothing to check again
        # (no guard, or an IP address in the URL, checked before the request was made).
        self.allowed: frozenset[str] | None = None
        self.stopped: tuple[Failure, str] | None = None

    # Whether the handle carries a CURLOPT_RESOLVE pin, to be replaced or cleared, and the
    # pre-request check (only names need it: a Python call per request otherwise saved).
    pinned = False
    prereq = False
    # The headers the handle was last given.
    headers: Sequence[str] = ()

    def on_header(self, line: bytes) -> int | None:
        self.header_count += 1
        self.header_bytes += len(line)
        if self.header_count > MAX_HEADER_COUNT or self.header_bytes > MAX_HEADER_BYTES:
            self.stopped = (
                Failure.HEADERS,
                f"more than {MAX_HEADER_COUNT} headers or {MAX_HEADER_BYTES // 1024} KiB of "
                "headers; reading stopped",
            )
            return 0  # anything but len(line) makes libcurl stop the transfer
        # Only the headers the client reads are kept: Retry-After paces a 429's retry.
        if line[:5] == b"HTTP/":
            self.response.headers = {}  # a new answer (after an interim 1xx)
        elif line[:12].lower() == b"retry-after:":
            self.response.headers["retry-after"] = line[12:].strip().decode("latin-1")
        return None

    def on_body(self, chunk: bytes) -> int | None:
        self.size += len(chunk)
        if self.size > MAX_BODY_BYTES:
            keep = MAX_BODY_BYTES - (self.size - len(chunk))
            self.chunks.append(chunk[:keep])
            self.stopped = (
                Failure.OVERSIZED,
                f"answer larger than the {MAX_BODY_BYTES // 1024} KiB cap; reading stopped",
            )
            return 0
        self.chunks.append(chunk)
        return None

    def on_prereq(self, address: str, _local: str, _port: int, _local_port: int) -> int:
        """The last word before the request is written: is this the address we checked?

        A kept-alive connection made under an earlier DNS answer, or before the guard was
        tightened, is checked here too.
        """
        if self.allowed is None or self.request.check_address is None:
            return pycurl.PREREQFUNC_OK
        checked = parse_address(address)
        if checked is not None and str(checked) in self.allowed:
            problem = self.request.check_address(str(checked))
            if problem is None:
                return pycurl.PREREQFUNC_OK
        else:
            problem = f"{address} is not an address the endpoint guard passed"
        self.stopped = (Failure.REFUSED_ADDRESS, problem)
        return pycurl.PREREQFUNC_ABORT


# --- the per-thread loop --------------------------------------------------------------------


_inherited: list[Loop] = []


class Loop:
    """One thread's libcurl multi handle, its sockets in a selector and its idle handles."""

    @classmethod
    def for_thread(cls, local: threading.local, transport: LoopOwner) -> Loop:
        """The loop of this thread in ``local`` (a transport's own), made on first use."""
        loop: Loop | None = getattr(local, "loop", None)
        if loop is None or loop.pid != os.getpid():
            if loop is not None:
                # A forked child must not use, nor close, its parent's connections: closing a
                # TLS connection writes to a socket the parent still reads. Keep it unused.
                _inherited.append(loop)
            loop = cls(transport)
            local.loop = loop
        return loop

    def __init__(self, transport: LoopOwner) -> None:
        self.transport = transport
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        # The events each socket is watched for, kept here: asking the selector's own map
        # (a Mapping view) on each of libcurl's socket calls cost more than the call.
        self.watched: dict[int, int] = {}
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAXCONNECTS, MAX_CONNECTIONS_PER_THREAD)
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.timer_at: float | None = None
        self.idle: list[_Exchange] = []
        self.running: dict[pycurl.Curl, _Exchange] = {}

    def _on_socket(self, what: int, fd: int, _multi: object, _data: object) -> None:
        watched = self.watched.get(fd)
        if what == pycurl.POLL_REMOVE:
            if watched is not None:
                del self.watched[fd]
                self.selector.unregister(fd)
            return
        events = (selectors.EVENT_READ if what & pycurl.POLL_IN else 0) | (
            selectors.EVENT_WRITE if what & pycurl.POLL_OUT else 0
        )
        if watched is None:
            self.selector.register(fd, events)
        elif watched != events:
            self.selector.modify(fd, events)
        self.watched[fd] = events

    def _on_timer(self, ms: int) -> None:
        self.timer_at = None if ms < 0 else time.monotonic() + ms / 1000

    def run(
        self,
        requests: list[Request],
        on_response: OnResponse,
        on_sent: Callable[[], None] | None,
    ) -> None:
        order = itertools.count()
        waiting: list[tuple[float, int, Request]] = []
        for request in requests:
            heapq.heappush(waiting, (request.start_at, next(order), request))
        try:
            self._start_due(waiting, on_response, order)
            self._act(pycurl.SOCKET_TIMEOUT, 0)
            if on_sent is not None:
                on_sent()
            while True:
                # Endings first: a transfer may end inside any call into libcurl.
                self._collect(on_response, waiting, order)
                if not (self.running or waiting):
                    return
                self._wait(waiting)
                self._start_due(waiting, on_response, order)
        finally:
            for exchange in list(self.running.values()):
                self._finish(exchange)  # interrupted: drop the transfers, keep the handles

    def _wait(self, waiting: list[tuple[float, int, Request]]) -> None:
        now = time.monotonic()
        wake = [t for t in (self.timer_at, waiting[0][0] if waiting else None) if t is not None]
        timeout = max(min(wake) - now, 0.0) if wake else 1.0
        if self.watched:
            events = self.selector.select(timeout)
        else:
            time.sleep(timeout)  # nothing to watch yet: only timers are due
            events = []
        for key, mask in events:
            action = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
            )
            self._act(key.fd, action)
        if self.timer_at is not None and self.timer_at <= time.monotonic():
            self._act(pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, action: int) -> None:
        while True:
            status, _running = self.multi.socket_action(fd, action)
            if status != pycurl.E_CALL_MULTI_PERFORM:
                return

    def _start_due(
        self,
        waiting: list[tuple[float, int, Request]],
        on_response: OnResponse,
        order: Iterator[int],
    ) -> None:
        now = time.monotonic()
        while waiting and waiting[0][0] <= now:
            _, _, request = heapq.heappop(waiting)
            refused = self._start(request)
            if refused is not None:
                follow = on_response(refused)
                if follow is not None:
                    heapq.heappush(waiting, (follow.start_at, next(order), follow))

    def _start(self, request: Request) -> Response | None:
        """Put ``request`` on a handle, or return its ending when it cannot be sent at all."""
        now = time.monotonic()
        budget_ms = int((request.budget_end - now) * 1000)
        if budget_ms <= 0:
            return Response(
                request=request,
                failure=Failure.TIMEOUT,
                detail="the deadline passed before the bid could be sent",
                started=now,
                ended=now,
            )
        try:
            parts = urlsplit(request.url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return Response(request=request, failure=Failure.NETWORK, detail="invalid endpoint URL")
        pin, allowed, refused = self._addresses(request, host, port, now)
        if refused is not None:
            return refused
        if self.idle:
            exchange = self.idle.pop()
            exchange.reset(request)
        else:
            exchange = _Exchange(self._new_handle(), request)
        handle = exchange.handle
        exchange.allowed = allowed
        exchange.response.started = now
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.POSTFIELDS, request.body)
        if exchange.headers is not request.headers:  # the same tuple for most bids
            handle.setopt(pycurl.HTTPHEADER, request.headers)
            exchange.headers = request.headers
        handle.setopt(pycurl.TIMEOUT_MS, budget_ms)
        if pin or exchange.pinned:
            handle.setopt(pycurl.RESOLVE, pin)
            exchange.pinned = bool(pin)
        if (allowed is not None) != exchange.prereq:
            if allowed is not None:
                handle.setopt(pycurl.PREREQFUNCTION, exchange.on_prereq)
            else:
                handle.unsetopt(pycurl.PREREQFUNCTION)
            exchange.prereq = allowed is not None
        self.running[handle] = exchange
        self.multi.add_handle(handle)
        return None

    def _addresses(
        self, request: Request, host: str, port: int, now: float
    ) -> tuple[list[str], frozenset[str] | None, Response | None]:
        """libcurl's pin for ``host``, the addresses to check again, or a refused bid's ending.

        An IP address in the URL is checked here and connected to as it is, so it needs no
        second check; a name's addresses are checked, pinned, and checked again just before
        each request (see :meth:`_Exchange.on_prereq`).
        """
        if request.check_address is None:
            return [], None, None
        literal = parse_address(host)
        try:
            found = (
                [host]
                if literal is not None
                else self.transport.resolve(host, port, timeout=request.budget_end - now)
            )
        except OSError as exc:
            detail = f"could not resolve the host name ({exc.strerror or exc})"
            return [], None, self._ended(request, now, Failure.RESOLVE, detail)
        allowed: list[str] = []
        problem = ""
        for text in found:
            address = parse_address(text)
            why = "not an IP address" if address is None else request.check_address(str(address))
            if why is None:
                allowed.append(str(address))
            else:
                problem = problem or why
        if not allowed:
            detail = problem or f"{host} resolved to no address"
            return [], None, self._ended(request, now, Failure.REFUSED_ADDRESS, detail)
        if literal is not None:
            return [], None, None
        shown = ",".join(f"[{a}]" if ":" in a else a for a in allowed)
        return [f"{host}:{port}:{shown}"], frozenset(allowed), None

    @staticmethod
    def _ended(request: Request, now: float, failure: Failure, detail: str) -> Response:
        return Response(request=request, failure=failure, detail=detail, started=now, ended=now)

    def _new_handle(self) -> pycurl.Curl:
        handle = pycurl.Curl()
        handle.setopt(pycurl.POST, 1)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.PROXY, "")
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        handle.setopt(pycurl.MAXFILESIZE_LARGE, MAX_BODY_BYTES)
        handle.setopt(pycurl.CAINFO, self.transport.ca_file)
        return handle

    def _collect(
        self,
        on_response: OnResponse,
        waiting: list[tuple[float, int, Request]],
        order: Iterator[int],
    ) -> None:
        while True:
            queued, done, failed = self.multi.info_read()
            endings = [(handle, 0, "") for handle in done] + list(failed)
            for handle, errno, message in endings:
                exchange = self.running.get(handle)
                if exchange is None:
                    continue
                response = self._finish(exchange, errno, message)
                follow = on_response(response)
                if follow is not None:
                    heapq.heappush(waiting, (follow.start_at, next(order), follow))
            if not queued:
                return

    def _finish(self, exchange: _Exchange, errno: int = 0, message: str = "") -> Response:
        handle = exchange.handle
        response = exchange.response
        response.ended = time.monotonic()
        response.body = b"".join(exchange.chunks)
        status = handle.getinfo(pycurl.RESPONSE_CODE)
        response.status = status or None
        del self.running[handle]
        self.multi.remove_handle(handle)
        if exchange.stopped is not None:
            response.failure, response.detail = exchange.stopped
        elif errno:
            # No byte of the request written: it never got past connecting.
            sent = handle.getinfo(pycurl.REQUEST_SIZE) > 0
            response.failure, response.detail = _failure(errno, message, handle, sent)
        exchange.chunks = []
        self.idle.append(exchange)
        return response


# libcurl error numbers pycurl has no name for (curl/curl.h).
_WEIRD_SERVER_REPLY = 8
_TOO_LARGE = 100  # libcurl 8.6+: a header line past its own limit


def _failure(errno: int, message: str, handle: pycurl.Curl, sent: bool) -> tuple[Failure, str]:
    """Sort a libcurl error into a failure and a readable reason."""
    if errno == pycurl.E_OPERATION_TIMEDOUT:
        if not sent:
            return Failure.CONNECT_TIMEOUT, "could not connect"
        return Failure.TIMEOUT, "no complete answer"
    if errno == pycurl.E_COULDNT_CONNECT:
        if handle.getinfo(pycurl.OS_ERRNO) == errno_module.ECONNREFUSED:
            return Failure.NETWORK, "connection refused"
        return Failure.NETWORK, f"could not connect ({message})"
    if errno == pycurl.E_COULDNT_RESOLVE_HOST:
        return Failure.RESOLVE, "could not resolve the host name"
    if errno == pycurl.E_FILESIZE_EXCEEDED:
        return Failure.OVERSIZED, f"answer larger than the {MAX_BODY_BYTES // 1024} KiB cap"
    if errno in (pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION):
        return Failure.TLS, f"TLS error: {message}"
    if errno == pycurl.E_GOT_NOTHING:
        return Failure.NETWORK, "the server closed the connection without answering"
    if errno in (_WEIRD_SERVER_REPLY, pycurl.E_UNSUPPORTED_PROTOCOL):
        return Failure.NOT_HTTP, f"not an HTTP answer ({message})"
    if handle.getinfo(pycurl.OS_ERRNO) == errno_module.ECONNRESET:
        return Failure.NETWORK, "connection reset by the server"
    if errno == pycurl.E_PARTIAL_FILE:
        return Failure.NETWORK, "the connection broke while the answer was being read"
    if errno == _TOO_LARGE:
        return Failure.HEADERS, "a response header line too large; reading stopped"
    return Failure.NETWORK, f"network error: {message}"[:500]
