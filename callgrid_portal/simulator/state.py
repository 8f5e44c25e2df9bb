"""The simulator's state: each grid's behaviour and the bid requests it received."""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from typing import Any

from callgrid_portal.simulator.scenario import (
    DEFAULT_BEHAVIOUR,
    validate_behaviour,
    validate_scenario,
)


class SimulatorState:
    """Grids' behaviours (scenario, default, per grid) and the log of requests; thread-safe."""

    def __init__(self, scenario: dict[str, Any] | None = None) -> None:
        self._scenario = validate_scenario(scenario)
        self._lock = threading.Lock()
        self._default: dict[str, Any] = {}
        self._grids: dict[str, dict[str, Any]] = {}
        self._received: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self._windows: dict[str, deque[float]] = {}
        self.reset()

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

    def record(
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

    def counts_snapshot(self) -> dict[str, int]:
        """How many requests were received, and how many grids have a behaviour."""
        with self._lock:
            return {"requests": len(self._received), "grids": len(self._grids)}
