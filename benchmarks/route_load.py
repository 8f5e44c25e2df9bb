"""Load for benchmarks/route.py: the sequential client, wrk or Python threads, floor, baseline.

Every phase returns a ``Phase``: its latencies (or the load generator's summary of them), its
errors and how many calls were routed. The floor phases ask the simulator directly, with no
portal behind, and the baseline is the Bid API guide's sequential ``requests.post`` loop.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from callgrid_portal.bidapi.client import BidTarget, prepare, send_bids

# wrk runs this script in each of its threads: a fresh caller per request, and one summary line.
WRK_SCRIPT = Path(__file__).resolve().with_name("route_wrk.lua")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``values`` (ms)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def random_caller() -> str:
    """A valid NANP number, random enough that duplicate windows never get in the way."""
    return f"{random.randint(2, 9)}{random.randint(0, 99):02d}{random.randint(2, 9)}" + (
        f"{random.randint(0, 999999):06d}"
    )


@dataclass
class Phase:
    """What one phase measured: latencies (or wrk's summary of them), errors, routed calls."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    routed: int = 0
    seconds: float = 0.0
    # Set when the load generator reports a distribution instead of every sample (wrk).
    answered: int | None = None
    summary_ms: dict[str, float] | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies_ms) if self.answered is None else self.answered

    def stat(self, name: str) -> float:
        """p50/p95/p99/max/mean in ms, from the samples or the generator's summary."""
        if self.summary_ms is not None:
            return self.summary_ms[name]
        lat = self.latencies_ms
        if not lat:
            return float("nan")
        if name == "max":
            return max(lat)
        if name == "mean":
            return statistics.fmean(lat)
        return percentile(lat, float(name[1:]))


def route_once(
    session: requests.Session, url: str, token: str, strategy: str, phase: Phase
) -> int | None:
    """One route on ``session``, recorded in ``phase``; the call's id, or None on an error."""
    started = time.perf_counter()
    try:
        response = session.post(
            url,
            json={"CallerId": random_caller(), "InboundStateCode": "CO", "strategy": strategy},
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        )
    except requests.RequestException as exc:
        phase.errors.append(type(exc).__name__)
        return None
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        phase.errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
        return None
    body = response.json()
    phase.latencies_ms.append(elapsed)
    phase.routed += bool(body.get("routed"))
    return int(body["call"])


def latency_phase(url: str, token: str, strategy: str, samples: int) -> Phase:
    """One client, one route at a time, on one keep-alive ``http.client`` connection.

    The client is the plainest HTTP/1.1 the standard library has, so the time measured is the
    portal's and the network's rather than a client library's.
    """
    phase = Phase()
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for _ in range(samples):
        body = json.dumps(
            {"CallerId": random_caller(), "InboundStateCode": "CO", "strategy": strategy}
        )
        sent = time.perf_counter()
        try:
            connection.request("POST", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            phase.errors.append(type(exc).__name__)
            connection.close()
            continue
        elapsed = (time.perf_counter() - sent) * 1000
        if response.status != 200:
            phase.errors.append(f"HTTP {response.status}: {answer[:120]!r}")
            continue
        phase.latencies_ms.append(elapsed)
        phase.routed += bool(json.loads(answer).get("routed"))
    connection.close()
    phase.seconds = time.perf_counter() - started
    return phase


def throughput_phase(url: str, token: str, strategy: str, clients: int, duration: float) -> Phase:
    """C Python threads for D seconds, each routing on a ``requests`` session of its own."""
    phase = Phase()
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration

    def client() -> None:
        session = requests.Session()
        local = Phase()
        while time.perf_counter() < stop_at:
            route_once(session, url, token, strategy, local)
        with lock:
            phase.latencies_ms.extend(local.latencies_ms)
            phase.errors.extend(local.errors)
            phase.routed += local.routed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    return phase


def baseline_phase(sim_port: int, grids: list[str], samples: int) -> Phase:
    """The guide's loop: requests.post to each buyer in turn, no session, no pooling."""
    phase = Phase()
    for _ in range(samples):
        started = time.perf_counter()
        best = None
        try:
            for grid in grids:
                answer = requests.post(
                    f"http://127.0.0.1:{sim_port}/api/bid/{grid}",
                    json={"CallerId": random_caller(), "InboundStateCode": "CO"},
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                    timeout=10,
                ).json()
                if answer.get("code") == 1000 and (best is None or answer["bid_amount"] > best):
                    best = answer["bid_amount"]
        except requests.RequestException as exc:
            phase.errors.append(type(exc).__name__)
            continue
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
        phase.routed += best is not None
    return phase


def floor_phase(sim_port: int, grids: list[str], samples: int) -> Phase:
    """The fan-out alone: every buyer asked at once from a thread each, on pooled urllib3.

    No portal, no database, no limits: what the auction's HTTP costs a Python process on this
    machine with this simulator, so the report can say how much of the route is the portal's.
    """
    pool = urllib3.HTTPConnectionPool("127.0.0.1", sim_port, maxsize=len(grids))
    phase = Phase()

    def ask(grid: str, caller: str) -> dict:
        body = json.dumps({"CallerId": caller, "InboundStateCode": "CO"}).encode()
        answer = pool.urlopen(
            "POST",
            f"/api/bid/{grid}",
            body=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            retries=False,
        )
        return json.loads(answer.data)

    with ThreadPoolExecutor(max_workers=len(grids)) as threads:
        for round_no in range(samples + 5):  # the first rounds open the connections
            caller = random_caller()
            started = time.perf_counter()
            try:
                answers = list(threads.map(ask, grids, [caller] * len(grids)))
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                phase.errors.append(type(exc).__name__)
                continue
            if round_no >= 5:
                phase.latencies_ms.append((time.perf_counter() - started) * 1000)
                phase.routed += any(a.get("code") == 1000 for a in answers)
    return phase


def fan_out_floor_phase(sim_port: int, grids: list[str], samples: int) -> Phase:
    """The fan-out alone as the portal's auction makes it: one thread, the client's send_bids.

    The same transport the routing thread uses (one libcurl loop, kept-alive connections),
    with nothing else around it.
    """
    endpoint = f"http://127.0.0.1:{sim_port}/api/bid/"
    targets = [BidTarget(grid_id=g, endpoint_url=endpoint) for g in grids]
    phase = Phase()
    for round_no in range(samples + 5):
        caller = random_caller()
        started = time.perf_counter()
        bids = [prepare(i, t, caller, "CO", {}) for i, t in enumerate(targets)]
        results = send_bids(bids, deadline=time.monotonic() + 10)
        elapsed = (time.perf_counter() - started) * 1000
        if round_no >= 5:  # the first rounds open the connections
            phase.latencies_ms.append(elapsed)
            phase.routed += any(r.outcome == "accepted" for r in results)
            phase.errors.extend(r.final.error for r in results if r.outcome != "accepted")
    return phase


def wrk_phase(url: str, token: str, strategy: str, clients: int, duration: float) -> Phase:
    """C clients on keep-alive connections from wrk."""
    process = subprocess.Popen(
        [
            "wrk",
            f"--threads={min(2, clients)}",
            f"--connections={clients}",
            f"--duration={max(round(duration), 1)}s",
            "--timeout=30s",
            f"--script={WRK_SCRIPT}",
            url,
        ],
        env={**os.environ, "ROUTE_TOKEN": token, "ROUTE_STRATEGY": strategy},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("WRK ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.strip() or out.strip()}")
    fields = lines[-1].split()[1:]
    requests_done, bad, routed, socket_errors, timeouts = (int(v) for v in fields[:5])
    seconds, p50, p95, p99, worst, mean = (float(v) for v in fields[5:])
    phase = Phase(routed=routed, seconds=seconds, answered=requests_done - bad)
    phase.summary_ms = {"p50": p50, "p95": p95, "p99": p99, "max": worst, "mean": mean}
    phase.errors = [f"HTTP status other than 200 ({bad})"] * bad
    phase.errors += ["socket error"] * socket_errors + ["timeout"] * timeouts
    return phase
