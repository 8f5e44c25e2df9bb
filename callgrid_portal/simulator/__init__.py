"""A local stand-in for CallGrid's Bid API, for the demo, the tests and the benchmarks.

It answers ``POST /api/bid/{grid_id}`` the way the Bid API guide and the error-code reference
describe (codes 1000-5000, 4001-4006, 5001 with HTTP 429), with a behaviour per grid: accept
with an amount, decline, each error code, 5000 then recover, latency, a per-grid rate limit,
and the broken answers a client must survive (a body dribbled one byte at a time, malformed
JSON, an HTML 502 page, an oversized body, an unknown code, a JSON list).

It is a plain ``ThreadingHTTPServer``: no database and no Django settings, so tests run it in
process and ``manage.py callgrid_simulator`` runs it as its own process. A grid's latency
counts from when a request's bytes arrived (the kernel's stamp on Linux, see
:class:`.sockets.StampedReader`), not from when a handler thread got round to reading
them. Other processes steer it over HTTP:

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

import ssl
import threading
from typing import Any

from callgrid_portal.simulator.handler import make_handler
from callgrid_portal.simulator.scenario import (
    BID_PREFIX,
    DEFAULT_BEHAVIOUR,
    RESPONSES,
    ScenarioError,
    load_scenario,
    validate_behaviour,
    validate_scenario,
)
from callgrid_portal.simulator.sockets import Server
from callgrid_portal.simulator.state import SimulatorState

__all__ = [
    "DEFAULT_BEHAVIOUR",
    "RESPONSES",
    "ScenarioError",
    "Simulator",
    "load_scenario",
    "validate_behaviour",
    "validate_scenario",
]


class Simulator(SimulatorState):
    """The simulated Bid API: start it, point buyers at ``endpoint``, read ``requests()``."""

    def __init__(
        self,
        scenario: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(scenario)
        self.host = host
        self.port = port
        # Serve HTTPS with this server-side context (tests give it a certificate of their own).
        self.tls = tls
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Simulator:
        """Listen and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = Server((self.host, self.port), make_handler(self))
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
        return self.url + BID_PREFIX
