"""A local stand-in for CallGrid's Bid API, for the demo, the tests and the benchmarks.

It answers ``POST /api/bid/{grid_id}`` the way the Bid API guide and the error-code reference
describe (codes 1000-5000, 4001-4006, 5001 with HTTP 429), with a behaviour per grid: accept
with an amount, decline, each error code, 5000 then recover, latency, a per-grid rate limit,
and the broken answers a client must survive (a body dribbled one byte at a time, malformed
JSON, an HTML 502 page, an oversized body, an unknown code, a JSON list).

It is a plain ``ThreadingHTTPServer``: no database and no Django settings, so tests run it in
process and ``manage.py callgrid_simulator`` runs it as its own process. A grid's latency
counts from when a request's bytes arrived (the kernel's stamp on Linux, see
:class:`_StampedReader`), not from when a handler thread got round to reading them. Other
processes steer it over HTTP:

- ``GET /_sim/health``: liveness and counts.
- ``GET /_sim/requests[?grid=ID]``: the bid requests received, oldest first.
- ``POST /_sim/reset``: forget requests and counters; grids go back to the scenario.
- ``PUT /_sim/grids/{grid_id}``: replace one grid's behaviour (JSON object).
- ``PUT /_sim/default``: replace the behaviour of grids that have none of their own.

A behaviour is layered: built-in defaults, then the scenario's (or ``set_default``'s)
``default``, then the grid's own keys. Scenario files are JSON (YAML when PyYAML is installed
and the file ends in ``.yaml``/``.yml``)::

    {"default": {"respond": "accept", "bid_amount": "25.50"},
     "grids": {"cm97s8hmv000ijt06r4djmije": {"respond": "decline", "latency_ms": 200}}}
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import math
import random
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

RESPONSES = frozenset(
    {
        "accept",
        "decline",
        "no_capacity",
        "invalid_request",
        "system_error",
        "disabled",
        "paused",
        "invalid_caller_id",
        "capacity_check_failed",
        "duplicate",
        "no_numbers",
        "rate_limit",
        "fail_then_accept",
        "dribble",
        "dribble_headers",
        "malformed",
        "html_error",
        "oversized",
        "unknown_code",
        "wrong_shape",
    }
)

DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "respond": "accept",
    "bid_amount": "25.50",  # a decimal literal, written into the JSON as a number
    "destination": "13035551234",  # None leaves it out
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "rate_limit_per_minute": None,  # None: no limit
    "retry_after": 1,  # seconds, sent with every 429
    "fail_times": 1,  # fail_then_accept: how many 5000s come first
    "dribble_interval": 0.5,  # seconds between bytes of a dribbled body
    "message": None,  # overrides CallGrid's message for the code
    "http_status": None,  # overrides the HTTP status of a coded answer
}

# Code, HTTP status and CallGrid's message for each plain coded answer (seed documents).
CODED_ANSWERS: dict[str, tuple[int, int, str]] = {
    "accept": (1000, 200, "Bid accepted"),
    "decline": (2000, 200, "Bid declined - call type not accepted"),
    "no_capacity": (3000, 200, "No capacity available"),
    "invalid_request": (4000, 200, "Invalid request - missing required CallerId parameter"),
    "system_error": (5000, 200, "System error - please try again"),
    "disabled": (4001, 200, "Disabled"),
    "paused": (4002, 200, "Campaign is Paused"),
    "invalid_caller_id": (4003, 200, "Invalid caller ID"),
    "capacity_check_failed": (4004, 200, "Capacity check failed"),
    "duplicate": (4005, 200, "Duplicate. CallerId already paid out."),
    "no_numbers": (4006, 200, "No phone numbers available for PSTN."),
    "rate_limit": (5001, 429, "Rate limit exceeded"),
    "unknown_code": (7777, 200, "Something CallGrid never documented"),
}

HTML_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
)
OVERSIZED_BYTES = 70 * 1024  # past the client's 64 KiB cap
_BID_PREFIX = "/api/bid/"
_AMOUNT_PLACEHOLDER = "__callgrid_simulator_bid_amount__"


class ScenarioError(ValueError):
    """A scenario or behaviour the simulator cannot follow; the message says what is wrong."""


def validate_behaviour(behaviour: Mapping[str, Any]) -> dict[str, Any]:
    """Check a behaviour's keys and values and return a plain copy.

    Unknown keys are refused so a typo (``"latency"`` for ``"latency_ms"``) fails loudly
    instead of silently doing nothing.
    """
    if not isinstance(behaviour, Mapping):
        raise ScenarioError("a behaviour must be a JSON object")
    unknown = set(behaviour) - set(DEFAULT_BEHAVIOUR)
    if unknown:
        raise ScenarioError(f"unknown behaviour keys: {', '.join(sorted(unknown))}")
    clean = dict(behaviour)
    respond = clean.get("respond", "accept")
    if not isinstance(respond, str) or respond not in RESPONSES:
        raise ScenarioError(f"respond must be one of {', '.join(sorted(RESPONSES))}")
    amount = clean.get("bid_amount")
    if amount is not None:
        try:
            Decimal(str(amount))
        except InvalidOperation:
            raise ScenarioError(f"bid_amount {amount!r} is not a decimal number") from None
        clean["bid_amount"] = str(amount)
    for key, most in _MOST.items():
        if key in clean and not (_non_negative(clean[key]) and clean[key] <= most):
            raise ScenarioError(f"{key} must be a number from 0 to {most:,}")
    limit = clean.get("rate_limit_per_minute")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ScenarioError("rate_limit_per_minute must be a positive integer or null")
    status = clean.get("http_status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ScenarioError("http_status must be an HTTP status code or null")
    return clean


def validate_scenario(scenario: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a scenario ``{"default": {...}, "grids": {...}}`` and return a plain copy."""
    if scenario is None:
        return {"default": {}, "grids": {}}
    if not isinstance(scenario, Mapping):
        raise ScenarioError("a scenario must be a JSON object")
    unknown = set(scenario) - {"default", "grids"}
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {', '.join(sorted(unknown))}")
    grids = scenario.get("grids")
    grids = {} if grids is None else grids
    if not isinstance(grids, Mapping):
        raise ScenarioError("grids must map grid IDs to behaviours")
    default = scenario.get("default")
    return {
        "default": validate_behaviour({} if default is None else default),
        "grids": {str(grid): validate_behaviour(b) for grid, b in grids.items()},
    }


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read and validate a scenario file (JSON, or YAML when PyYAML is installed)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ScenarioError("YAML scenarios need PyYAML; use JSON instead") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"{path}: not valid JSON ({exc})") from None
    return validate_scenario(data)


# The largest value of each numeric behaviour: a wait longer than an hour tests nothing, and
# past what time.sleep can take the handler itself would crash.
_MOST: dict[str, int] = {
    "latency_ms": 3_600_000,
    "latency_jitter_ms": 3_600_000,
    "retry_after": 86_400,
    "fail_times": 1_000_000,
    "dribble_interval": 3_600,
}


def _non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class Simulator:
    """The simulated Bid API: start it, point buyers at ``endpoint``, read ``requests()``."""

    def __init__(
        self,
        scenario: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._scenario = validate_scenario(scenario)
        self.host = host
        self.port = port
        # Serve HTTPS with this server-side context (tests give it a certificate of their own).
        self.tls = tls
        self._lock = threading.Lock()
        self._default: dict[str, Any] = {}
        self._grids: dict[str, dict[str, Any]] = {}
        self._received: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self._windows: dict[str, deque[float]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Simulator:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _make_handler(self))
        server.tls = self.tls
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"callgrid-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The base URL a buyer's ``endpoint_url`` should hold; the grid ID is appended."""
        return self.url + _BID_PREFIX

    # --- configuration -----------------------------------------------------------------

    def configure(self, grid_id: str, **behaviour: Any) -> None:
        """Replace ``grid_id``'s behaviour (keys it leaves out come from the default)."""
        clean = validate_behaviour(behaviour)
        with self._lock:
            self._grids[grid_id] = clean

    def set_default(self, **behaviour: Any) -> None:
        """Replace the behaviour of every grid without one of its own."""
        clean = validate_behaviour(behaviour)
        with self._lock:
            self._default = clean

    def reset(self) -> None:
        """Forget received requests and counters; grids and default go back to the scenario."""
        with self._lock:
            self._default = copy.deepcopy(self._scenario["default"])
            self._grids = copy.deepcopy(self._scenario["grids"])
            self._received = []
            self._counts = {}
            self._windows = {}

    def behaviour(self, grid_id: str) -> dict[str, Any]:
        """The effective behaviour of ``grid_id``: built-in, then default, then the grid's."""
        with self._lock:
            return {**DEFAULT_BEHAVIOUR, **self._default, **self._grids.get(grid_id, {})}

    def requests(self, grid_id: str | None = None) -> list[dict[str, Any]]:
        """Bid requests received, oldest first: ``grid_id``, ``body``, ``headers``, ``received_at``.

        ``body`` is the parsed JSON, or the raw text when it was not JSON; ``received_at`` is
        a ``time.time()`` epoch taken when the request arrived.
        """
        with self._lock:
            rows = [r for r in self._received if grid_id is None or r["grid_id"] == grid_id]
            return copy.deepcopy(rows)

    # --- used by the handler -----------------------------------------------------------

    def _record(
        self, grid_id: str, body: Any, headers: dict[str, str], received_at: float
    ) -> tuple[dict[str, Any], int, float | None]:
        """Log one bid request; return its behaviour, its number for the grid, and the wait a
        rate-limited request is told (None when within the limit)."""
        with self._lock:
            self._received.append(
                {"grid_id": grid_id, "body": body, "headers": headers, "received_at": received_at}
            )
            count = self._counts.get(grid_id, 0) + 1
            self._counts[grid_id] = count
            behaviour = {**DEFAULT_BEHAVIOUR, **self._default, **self._grids.get(grid_id, {})}
            limit = behaviour["rate_limit_per_minute"]
            if not limit:
                return behaviour, count, None
            # Sliding one-minute window per grid, counting only the requests let through.
            now = time.monotonic()
            window = self._windows.setdefault(grid_id, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= limit:
                return behaviour, count, max(window[0] + 60 - now, 0.0)
            window.append(now)
            return behaviour, count, None

    def _counts_snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": len(self._received), "grids": len(self._grids)}


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 resets connections when a benchmark or an auction opens
    # dozens at once; CallGrid itself accepts 100 simultaneous requests per grid.
    request_queue_size = 1024
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    # Whether accepted sockets come with the kernel's arrival stamps (see _StampedReader).
    stamped = False

    def server_bind(self) -> None:
        super().server_bind()
        if _SO_TIMESTAMPNS is None:
            return
        try:
            # Set on the listening socket, so accepted ones have it before their first byte.
            self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            self.stamped = True
        except OSError:
            pass  # not this kernel's option number: latency counts from when a thread reads

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens on the handler's first read, on its own thread, so a
            # client that never sends one cannot stall the accepting thread.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client refusing our certificate, or hanging up mid-request, is its business.
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            logger.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)


# Linux stamps each packet with the moment it arrived, read from recvmsg's ancillary data.
# Python's socket module does not name the option; 35 is its number on Linux (x86, ARM).
_SO_TIMESTAMPNS: int | None = getattr(
    socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None
)


class _StampedReader(io.RawIOBase):
    """A plain socket read with ``recvmsg``, keeping when the kernel received the last data.

    A handler thread may only get to a request some time after its bytes came in, while the
    other handler threads hold the interpreter; ten bids arriving together were stamped over
    2.4 ms that way, and the last buyer answered that much later than its latency says.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.arrived_at: float | None = None  # time.time() scale

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data, ancillary, _flags, _address = self._sock.recvmsg(len(buffer), socket.CMSG_SPACE(16))
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                self.arrived_at = seconds + nanoseconds / 1e9
        buffer[: len(data)] = data
        return len(data)


def _make_handler(simulator: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(_BidHandler):
        sim = simulator

    return Handler


class _BidHandler(BaseHTTPRequestHandler):
    """One HTTP exchange with the simulator."""

    sim: Simulator
    # HTTP/1.1 keeps connections alive, as CallGrid does, so the client's pool is exercised.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for the
    # client's delayed ACK, which would add that to every simulated bid.
    disable_nagle_algorithm = True
    server_version = "CallGridSimulator/1.0"

    # When the request line of the exchange being handled arrived (see parse_request).
    _arrived = 0.0
    _stamps: _StampedReader | None = None

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        if server.stamped and not isinstance(self.connection, ssl.SSLSocket):
            self._stamps = _StampedReader(self.connection)
            self.rfile = io.BufferedReader(self._stamps)

    def parse_request(self) -> bool:
        # Called as soon as the request line is in, before the headers are read: latency is
        # counted from the moment the request reached us, as a remote buyer's would be. Where
        # the kernel stamped the bytes (plain sockets on Linux), from that moment; else now.
        now = time.monotonic()
        stamped = self._stamps.arrived_at if self._stamps is not None else None
        self._arrived = now if stamped is None else now - max(time.time() - stamped, 0.0)
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # --- routing -----------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._read_body()
        if parts.path == "/_sim/health":
            self._send_json(200, {"ok": True, **self.sim._counts_snapshot()})
        elif parts.path == "/_sim/requests":
            grid = parse_qs(parts.query).get("grid", [None])[0]
            rows = self.sim.requests(grid)
            self._send_json(200, {"count": len(rows), "requests": rows})
        else:
            self._send_json(404, {"error": f"no such page: {parts.path}"})

    def do_POST(self) -> None:
        received_at = time.time()
        parts = urlsplit(self.path)
        raw = self._read_body()
        if parts.path == "/_sim/reset":
            self.sim.reset()
            self._send_json(200, {"ok": True})
        elif parts.path.startswith(_BID_PREFIX) and parts.path != _BID_PREFIX:
            grid_id = unquote(parts.path[len(_BID_PREFIX) :].strip("/"))
            self._answer_bid(grid_id, raw, received_at)
        else:
            self._send_json(404, {"error": f"no such page: {parts.path}"})

    def do_PUT(self) -> None:
        parts = urlsplit(self.path)
        raw = self._read_body()
        try:
            behaviour = json.loads(raw or b"{}")
            if parts.path.startswith("/_sim/grids/"):
                grid_id = unquote(parts.path[len("/_sim/grids/") :].strip("/"))
                if not grid_id:
                    raise ScenarioError("a grid ID is needed: /_sim/grids/{grid_id}")
                self.sim.configure(grid_id, **_as_kwargs(behaviour))
                self._send_json(200, {"grid_id": grid_id, "behaviour": self.sim.behaviour(grid_id)})
            elif parts.path == "/_sim/default":
                self.sim.set_default(**_as_kwargs(behaviour))
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, {"error": f"no such page: {parts.path}"})
        except (json.JSONDecodeError, ScenarioError) as exc:
            self._send_json(400, {"error": str(exc)})

    # --- the Bid API -------------------------------------------------------------------

    def _answer_bid(self, grid_id: str, raw: bytes, received_at: float) -> None:
        try:
            body: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw.decode("utf-8", errors="replace")
        headers = {key: value for key, value in self.headers.items()}
        behaviour, count, limited_for = self.sim._record(grid_id, body, headers, received_at)
        # The answer is ready before the wait, so the only thing after it is the write: a
        # buyer's latency L is L from the request's arrival, not L plus this server's work.
        answer = self._answer_for(behaviour, body, count, limited_for)
        self._delay(behaviour)
        answer()

    def _answer_for(
        self, behaviour: Mapping[str, Any], body: Any, count: int, limited_for: float | None
    ) -> Callable[[], None]:
        """What to write once the behaviour's latency has passed."""
        if limited_for is not None:
            return self._coded("rate_limit", behaviour, body, retry_after=math.ceil(limited_for))
        if not isinstance(body, dict):
            return self._coded(
                "invalid_request",
                behaviour,
                body,
                message="Invalid request - body is not a JSON object",
            )
        caller_id = body.get("CallerId")
        digits = caller_id[1:] if isinstance(caller_id, str) and caller_id[:1] == "+" else caller_id
        if not isinstance(digits, str) or not digits.isdigit() or not digits.isascii():
            # CallGrid itself refuses a missing or formatted caller ID (error-code reference).
            return self._coded("invalid_caller_id", behaviour, body)
        respond = behaviour["respond"]
        if respond == "fail_then_accept":
            respond = "system_error" if count <= behaviour["fail_times"] else "accept"
        if respond in CODED_ANSWERS:
            return self._coded(respond, behaviour, body)
        if respond == "dribble":
            return functools.partial(self._dribble, behaviour, body)
        if respond == "dribble_headers":
            return functools.partial(self._dribble_headers, behaviour, body)
        if respond == "malformed":
            broken = b'{"code": 1000, "message": "Bid accepted", "bid'
            return functools.partial(self._send, 200, "application/json", broken)
        if respond == "html_error":
            return functools.partial(self._send, 502, "text/html", HTML_ERROR_PAGE)
        payload = self._payload(1000, "Bid accepted", behaviour, body, accepted=True)
        if respond == "oversized":
            payload["padding"] = "x" * OVERSIZED_BYTES
            return functools.partial(self._send, 200, "application/json", _encode(payload))
        # wrong_shape: a valid answer inside a JSON list.
        return functools.partial(self._send, 200, "application/json", _encode([payload]))

    def _coded(
        self,
        respond: str,
        behaviour: Mapping[str, Any],
        body: Any,
        *,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> Callable[[], None]:
        code, status, default_message = CODED_ANSWERS[respond]
        text = message or behaviour["message"] or default_message
        payload = self._payload(code, text, behaviour, body, accepted=code == 1000)
        headers = {}
        if code == 5001:
            wait = retry_after if retry_after is not None else behaviour["retry_after"]
            headers["Retry-After"] = str(wait)
        return functools.partial(
            self._send,
            behaviour["http_status"] or status,
            "application/json",
            _encode(payload),
            headers,
        )

    @staticmethod
    def _payload(
        code: int, message: str, behaviour: Mapping[str, Any], body: Any, *, accepted: bool
    ) -> dict[str, Any]:
        """A response shaped like the guide's: code, message, amount, and for 1000 the rest."""
        request = body if isinstance(body, dict) else {}
        payload: dict[str, Any] = {"code": code, "message": message}
        if accepted:
            if behaviour["bid_amount"] is not None:
                payload["bid_amount"] = Decimal(behaviour["bid_amount"])
            if behaviour["destination"] is not None:
                payload["destination"] = behaviour["destination"]
            caller_id = str(request.get("CallerId", ""))
            payload["caller_id"] = "1" + caller_id if len(caller_id) == 10 else caller_id
        else:
            payload["bid_amount"] = 0
        if request.get("InboundStateCode"):
            payload["state_code"] = request["InboundStateCode"]
        payload["timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return payload

    def _dribble(self, behaviour: Mapping[str, Any], body: Any) -> None:
        """Send a valid answer one byte at a time, as a struggling server might."""
        data = _encode(self._payload(1000, "Bid accepted", behaviour, body, accepted=True))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        try:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(float(behaviour["dribble_interval"]))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it should

    def _dribble_headers(self, behaviour: Mapping[str, Any], body: Any) -> None:
        """Send the status line and headers one byte at a time, then a valid answer.

        A read timeout per ``recv`` never fires on such a server; only a total deadline stops it.
        """
        data = _encode(self._payload(1000, "Bid accepted", behaviour, body, accepted=True))
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nX-Padding: {'x' * 40}\r\n\r\n"
        ).encode()
        self.close_connection = True
        try:
            for i in range(len(head)):
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
                time.sleep(float(behaviour["dribble_interval"]))
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _delay(self, behaviour: Mapping[str, Any]) -> None:
        """Wait until the behaviour's latency (plus jitter) has passed since the request came."""
        delay_ms = float(behaviour["latency_ms"])
        jitter = float(behaviour["latency_jitter_ms"])
        if jitter:
            delay_ms += random.uniform(0, jitter)
        remaining = self._arrived + delay_ms / 1000 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    # --- plumbing ----------------------------------------------------------------------

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json", _encode(payload))

    def _send(
        self,
        status: int,
        content_type: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Write the status line, headers and body in one send, as a production server does.

        ``send_response``/``end_headers`` would put the body in a second segment: the client
        then wakes twice per answer, and with Nagle's algorithm on the body would wait for the
        client's delayed ACK.
        """
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            *(f"{key}: {value}" for key, value in (headers or {}).items()),
        ]
        self.log_request(status, len(data))
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _as_kwargs(behaviour: Any) -> dict[str, Any]:
    if not isinstance(behaviour, dict):
        raise ScenarioError("a behaviour must be a JSON object")
    return {str(key): value for key, value in behaviour.items()}


def _encode(payload: Any) -> bytes:
    """JSON with Decimal amounts written as exact number literals (``25.50``, not 25.5)."""
    literals: list[str] = []

    def default(value: Any) -> str:
        if isinstance(value, Decimal):
            literals.append(str(value))
            return f"{_AMOUNT_PLACEHOLDER}{len(literals) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(payload, default=default)
    for index, literal in enumerate(literals):
        text = text.replace(f'"{_AMOUNT_PLACEHOLDER}{index}"', literal, 1)
    return text.encode()
