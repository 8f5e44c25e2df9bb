"""The simulator's HTTP handler: one exchange, a bid answered as its grid's behaviour says,
or a control request (``/_sim/...``) from a test or another process."""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from callgrid_portal.simulator.scenario import (
    AMOUNT_PLACEHOLDER,
    BID_PREFIX,
    CODED_ANSWERS,
    HTML_ERROR_PAGE,
    OVERSIZED_BYTES,
    ScenarioError,
)
from callgrid_portal.simulator.sockets import Server, StampedReader
from callgrid_portal.simulator.state import SimulatorState
from callgrid_portal.text import ascii_digits

logger = logging.getLogger(__name__)


def make_handler(simulator: SimulatorState) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to ``simulator``'s grids and log."""

    class Handler(BidHandler):
        sim = simulator

    return Handler


class BidHandler(BaseHTTPRequestHandler):
    """One HTTP exchange with the simulator."""

    sim: SimulatorState
    # HTTP/1.1 keeps connections alive, as CallGrid does, so the client's pool is exercised.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits ~40 ms for the
    # client's delayed ACK, which would add that to every simulated bid.
    disable_nagle_algorithm = True
    server_version = "CallGridSimulator/1.0"

    # When the request line of the exchange being handled arrived (see parse_request).
    _arrived = 0.0
    _stamps: StampedReader | None = None

    def setup(self) -> None:
        super().setup()
        server = cast(Server, self.server)
        if server.stamped and not isinstance(self.connection, ssl.SSLSocket):
            self._stamps = StampedReader(self.connection)
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
            self._send_json(200, {"ok": True, **self.sim.counts_snapshot()})
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
        elif parts.path.startswith(BID_PREFIX) and parts.path != BID_PREFIX:
            grid_id = unquote(parts.path[len(BID_PREFIX) :].strip("/"))
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
        behaviour, count, limited_for = self.sim.record(grid_id, body, headers, received_at)
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
        if not isinstance(digits, str) or not ascii_digits(digits):
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
            return f"{AMOUNT_PLACEHOLDER}{len(literals) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(payload, default=default)
    for index, literal in enumerate(literals):
        text = text.replace(f'"{AMOUNT_PLACEHOLDER}{index}"', literal, 1)
    return text.encode()
