"""How promptly deadlines and latencies are kept, in wall-clock time: the figures the tests no
longer assert, because a busy machine would fail them without anything being wrong.

Runs the CallGrid simulator in this process and measures, ``--repeat`` times each (default 5):

- the client cutting a dribbling answer off at the buyer's timeout (2 s), and a server that
  dribbles its headers, and a slow server that sends no headers (1 s timeout);
- the client cutting a dribbling answer off at the call's deadline (1 s) and retrying only as
  far as a deadline allows (0.5 s);
- the one-loop fan-out (``send_bids``) answering three buyers of 300 ms each in about 300 ms,
  not 900 ms, and ending at a 0.8 s deadline with slow and dribbling buyers;
- the simulator's latency counted from a request's arrival (400 ms with a 250 ms pause while
  sending), and two pipelined bids of 300 ms answered in about 300 ms.

For each it prints the target and the median, the worst, and how many runs missed it. It is
a measurement, not a test: it exits 0 unless something broke. Routing's own deadlines over a
database are measured end to end by ``benchmarks/route.py``.

Usage: ``python benchmarks/deadlines.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")
django.setup()

from callgrid_portal.bidapi.client import (  # noqa: E402  (needs the settings above)
    BidTarget,
    prepare,
    send_bid,
    send_bids,
)
from callgrid_portal.simulator import Simulator  # noqa: E402

CALLER = "3035551234"
GRID = "bench-deadline-grid"
GRIDS = ["bench-fan-a", "bench-fan-b", "bench-fan-c"]


@dataclass
class Figure:
    """One measured case: what it should take at most, and what each run took (seconds)."""

    name: str
    target: float
    runs: list[float]

    def line(self) -> str:
        missed = sum(run >= self.target for run in self.runs)
        median = statistics.median(self.runs)
        return (
            f"{self.name:<58} target < {self.target:.2f} s   median {median:.3f} s"
            f"   worst {max(self.runs):.3f} s   missed {missed}/{len(self.runs)}"
        )


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def target(sim: Simulator, timeout: float, grid: str = GRID) -> BidTarget:
    return BidTarget(grid_id=grid, endpoint_url=sim.endpoint, timeout_seconds=timeout)


def client_cases(sim: Simulator, repeat: int) -> list[Figure]:
    figures = []

    def case(name: str, limit: float, behaviour: dict[str, Any], run: Callable[[], object]) -> None:
        runs = []
        for _ in range(repeat):
            sim.reset()
            sim.configure(GRID, **behaviour)
            runs.append(timed(run))
        figures.append(Figure(name, limit, runs))

    case(
        "client: dribbled answer cut at the buyer's 2 s timeout",
        3.0,
        {"respond": "dribble", "dribble_interval": 0.5},
        lambda: send_bid(target(sim, 2), CALLER),
    )
    case(
        "client: dribbled headers cut at the buyer's 2 s timeout",
        3.0,
        {"respond": "dribble_headers", "dribble_interval": 0.3},
        lambda: send_bid(target(sim, 2), CALLER),
    )
    case(
        "client: silent server cut at the buyer's 1 s timeout",
        1.5,
        {"latency_ms": 1500},
        lambda: send_bid(target(sim, 1), CALLER),
    )
    case(
        "client: dribbled answer cut at the call's 1 s deadline",
        2.0,
        {"respond": "dribble", "dribble_interval": 0.5},
        lambda: send_bid(target(sim, 10), CALLER, deadline=time.monotonic() + 1.0),
    )
    case(
        "client: retries stop at a 0.5 s deadline",
        0.5,
        {"respond": "system_error"},
        lambda: send_bid(target(sim, 5), CALLER, deadline=time.monotonic() + 0.5),
    )
    return figures


def fan_out_cases(sim: Simulator, repeat: int) -> list[Figure]:
    together, cut = [], []
    for _ in range(repeat):
        first, second = fan_out_once(sim)
        together.append(first)
        cut.append(second)
    return [
        Figure("fan-out: three buyers of 300 ms answered together", 0.6, together),
        Figure("fan-out: slow and dribbling buyers end at a 0.8 s deadline", 1.2, cut),
    ]


def fan_out_once(sim: Simulator) -> tuple[float, float]:
    """Three buyers of 300 ms at once; then two of them too slow for a 0.8 s deadline."""
    bids = [
        BidTarget(grid_id=g, endpoint_url=sim.endpoint, timeout_seconds=5, min_bid=Decimal(10))
        for g in GRIDS
    ]
    sim.reset()
    for bid in bids:
        sim.configure(bid.grid_id, latency_ms=100)
    # Leave a kept-alive connection per buyer, as a live auction finds them.
    run_fan_out(bids, None)
    for bid in bids:
        sim.configure(bid.grid_id, latency_ms=300)
    together = timed(lambda: run_fan_out(bids, None))
    sim.configure(GRIDS[1], respond="dribble", dribble_interval=0.2)
    sim.configure(GRIDS[2], latency_ms=5000)
    cut = timed(lambda: run_fan_out(bids, time.monotonic() + 0.8))
    return together, cut


def run_fan_out(bids: list[BidTarget], deadline: float | None) -> None:
    send_bids([prepare(i, bid, CALLER, "CO", {}) for i, bid in enumerate(bids)], deadline=deadline)


def simulator_cases(sim: Simulator, repeat: int) -> list[Figure]:
    paused, pipelined = [], []
    body = json.dumps({"CallerId": CALLER}).encode()
    head = (
        f"POST /api/bid/{GRID} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(repeat):
        sim.reset()
        sim.configure(GRID, respond="accept", latency_ms=400)
        with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = time.monotonic()
            sock.sendall(head)
            time.sleep(0.25)
            sock.sendall(body)
            sock.recv(65536)
            paused.append(time.monotonic() - sent)
        sim.configure(GRID, respond="accept", latency_ms=300)
        with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
            sent = time.monotonic()
            sock.sendall((head + body) * 2)
            received = b""
            while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
                received += sock.recv(65536)
            pipelined.append(time.monotonic() - sent)
    return [
        Figure("simulator: 400 ms counted from arrival (250 ms pause)", 0.6, paused),
        Figure("simulator: two pipelined bids of 300 ms", 0.5, pipelined),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    args = parser.parse_args()
    sim = Simulator().start()
    try:
        figures = [
            *client_cases(sim, args.repeat),
            *fan_out_cases(sim, args.repeat),
            *simulator_cases(sim, args.repeat),
        ]
    finally:
        sim.stop()
    for figure in figures:
        print(figure.line())


if __name__ == "__main__":
    main()
