"""Benchmark ``POST /api/v1/route/`` through a real server, against the sequential baseline.

What it does, all in one run:

1. Starts the CallGrid simulator as its own process with N buyers (default 10), each
   answering 1000 after a fixed latency L (default 50 ms) with a different amount.
2. Creates a scratch PostgreSQL database, migrates it, adds the N buyers (limits wide open,
   so the benchmark measures routing, not refusals) and an API token.
3. Starts gunicorn (gthread workers) on that database, sharing limits through Redis when
   ``--redis-url``/``REDIS_URL`` is given (the file cache otherwise).
4. Latency: one client (a keep-alive ``http.client`` connection), sequential routes:
   p50/p95/p99, the overhead over L, and the CPU each process group spent per route.
5. Throughput: C clients (default 32) for D seconds (default 20): routes/s, latency under load,
   errors; then checks every attempt was logged (BidLog rows = routed calls x buyers asked).
   The load comes from ``wrk`` (a small C load generator, ``apt-get install wrk``) with a Lua
   script that posts a fresh caller per request over C keep-alive connections; without
   ``wrk`` (or with ``--load-generator python``) from C Python threads, each with its own
   ``requests`` session. The load generator shares the machine's CPUs with the system under
   test, and the Python one takes a large share of them, so the report says which one ran and
   how much CPU each process used.
6. Floor, in the same run: the fan-out alone (no portal, database or limits), measured two
   ways: as the portal's auction does it (the client's ``send_bids``, one thread, kept-alive
   connections) and every buyer asked from a thread of its own on pooled urllib3. The portal's
   own share of the p50 is counted over the first.
7. Baseline, in the same run: what the Bid API guide's sample waterfall loop does, i.e.
   ``requests.post`` to each buyer in turn with no session (a new connection per bid). It asks
   every buyer, as a sequential loop must to find the best bid, and we compare its p50 with
   the portal's.

Usage: ``python benchmarks/route.py`` (``--help`` for options); the throughput target of
issue 3 is measured with ``--buyers 3 --latency-ms 20``. Needs PostgreSQL reachable at
``--database-url`` (a server URL; the script creates and drops its own database there) and,
for the C load generator, ``wrk`` on the PATH (Debian/Ubuntu: ``apt-get install wrk``).

gunicorn runs with ``--worker-connections`` of clients / workers, so a worker stops accepting
once it has its share: with keep-alive clients and no proxy in front, one gthread worker would
otherwise accept every connection and leave the others idle (measured: one worker at 100% CPU,
the other at 0%).
It is a measurement, not a test: it prints numbers and exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark POST /api/v1/route/ (gunicorn + PostgreSQL + simulator) "
        "against a sequential requests.post baseline."
    )
    parser.add_argument("--buyers", type=int, default=10, help="simulated buyers (default 10)")
    parser.add_argument(
        "--latency-ms", type=int, default=50, help="each buyer's answer time L (default 50)"
    )
    parser.add_argument(
        "--strategy",
        choices=["highest_bid", "waterfall"],
        default="highest_bid",
        help="routing strategy under test (default highest_bid)",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--duration", type=float, default=20.0, help="throughput seconds (20)")
    parser.add_argument(
        "--samples", type=int, default=200, help="sequential routes for the latency phase (200)"
    )
    parser.add_argument(
        "--baseline-samples", type=int, default=30, help="baseline loops to time (30)"
    )
    # Several small processes beat a few big ones: each gthread worker is one GIL, and 16
    # threads contending for it cost more CPU per route than 4 do (measured here: 2x16 gave
    # ~145 routes/s, 4x4 ~175 with 3 buyers at L=20 ms on 2 CPUs).
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (4)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=None,
        help="keep-alive connections one worker takes (default: clients / workers, at least "
        "threads)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to create the scratch database on (default $DATABASE_URL)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="Redis for shared limits (default $REDIS_URL; empty: file cache)",
    )
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="throughput load: wrk (C) or python threads; auto uses wrk when installed",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="run the portal with ROUTING_SYNCHRONOUS_COMMIT=false (see settings.py)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    return parser.parse_args(argv)


# --- helpers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s")


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


def grid_id(n: int) -> str:
    return f"bench{n:04d}{uuid.uuid4().hex[:16]}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class Phase:
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


# --- the pieces ---------------------------------------------------------------------------


def start_simulator(grids: list[str], latency_ms: int, port: int, workdir: Path):
    scenario = {
        "default": {"respond": "accept", "latency_ms": latency_ms},
        "grids": {g: {"bid_amount": f"{20 + i}.00"} for i, g in enumerate(grids)},
    }
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario))
    process = subprocess.Popen(
        [PYTHON, "-c", _SIMULATOR_LAUNCHER, str(path), str(port)],
        cwd=ROOT,
        env=portal_env({}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port)
    return process


# The simulator as its own process (its handler turns Nagle's algorithm off, so the body never
# waits for the client's delayed ACK of the headers). Both the portal and the baseline talk
# to this same simulator.
_SIMULATOR_LAUNCHER = """
import json, signal, sys, threading
from callgrid_portal import simulator
server = simulator.Simulator(json.load(open(sys.argv[1])), port=int(sys.argv[2])).start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
server.stop()
"""


def portal_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "callgrid_portal.settings",
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CALLGRID_ENDPOINT_ALLOWLIST": "127.0.0.1",
            "CALLGRID_INSECURE_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            # The settings generate no key; the benchmark's own web server signs with this.
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "benchmark-only-" + uuid.uuid4().hex,
        }
    )
    env.pop("REDIS_URL", None)
    env.pop("CACHE_URL", None)
    env.update(extra)
    return env


def create_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_portal(env: dict[str, str], grids: list[str], sim_port: int) -> str:
    """Migrate, add the buyers and a user with a token; return the token."""
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    script = f"""
import json
from django.contrib.auth.models import User
from knox.models import AuthToken
from buyers.models import Buyer
grids = {json.dumps(grids)}
for i, grid in enumerate(grids):
    Buyer.objects.create(
        name=f"Bench buyer {{i + 1}}", grid_id=grid,
        endpoint_url="http://127.0.0.1:{sim_port}/api/bid/",
        priority=i + 1, min_bid="10.00", vertical="other", duplicate_window_days=30,
        rate_limit_per_minute=10000, max_concurrency=1000, timeout_seconds=10,
    )
user = User.objects.create_superuser("bench", "bench@example.com", None)
print(AuthToken.objects.create(user)[1])
"""
    return shell_output(env, script)


def shell_output(env: dict[str, str], script: str) -> str:
    """Run ``script`` in ``manage.py shell`` with the portal's environment; its last line."""
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def count_rows(env: dict[str, str], since_call: int) -> tuple[int, int, int]:
    """(calls, routed calls, bid rows) written after call id ``since_call``."""
    script = f"""
from bidlog.models import BidLog, Call
calls = Call.objects.filter(pk__gt={since_call})
print(calls.count(), calls.filter(routed=True).count(),
      BidLog.objects.filter(call__pk__gt={since_call}).count())
"""
    calls, routed, bids = shell_output(env, script).split()
    return int(calls), int(routed), int(bids)


def gunicorn_argv(port: int, workers: int, threads: int) -> list[str]:
    """gunicorn serving the portal on loopback at ``port``: gthread workers, warnings only."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "callgrid_portal.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]


def start_gunicorn(env: dict[str, str], port: int, workers: int, threads: int, connections: int):
    process = subprocess.Popen(
        [
            *gunicorn_argv(port, workers, threads),
            # A worker stops accepting at this many connections, so keep-alive clients spread
            # over every worker instead of piling onto the one that happened to wake first.
            "--worker-connections",
            str(connections),
            "--backlog",
            "2048",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port)
    return process


# --- load ---------------------------------------------------------------------------------


def route_once(session, url: str, token: str, strategy: str, phase: Phase) -> int | None:
    import requests

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
    import http.client

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
    import requests

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
    import requests

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
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

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
    from callgrid_portal.bidapi.client import BidTarget, prepare, send_bids

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


# wrk runs this in each of its threads. Every request carries a fresh caller (as the Python
# clients do); done() sums the threads' counters and prints one line for us to parse.
_WRK_SCRIPT = r"""
local token = os.getenv("ROUTE_TOKEN")
local strategy = os.getenv("ROUTE_STRATEGY")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token " .. token
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

function init(args)
  routed = 0
  bad = 0
  math.randomseed(os.time() * 1000 + id)
end

function request()
  local caller = string.format("%d%02d%d%06d", math.random(2, 9), math.random(0, 99),
    math.random(2, 9), math.random(0, 999999))
  local body = '{"CallerId": "' .. caller .. '", "InboundStateCode": "CO", "strategy": "'
    .. strategy .. '"}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  elseif string.find(body, '"routed":true', 1, true) then
    routed = routed + 1
  end
end

function done(summary, latency, requests)
  local r, b = 0, 0
  for _, thread in ipairs(threads) do
    r = r + thread:get("routed")
    b = b + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %.6f %.3f %.3f %.3f %.3f %.3f\n",
    summary.requests, b, r, e.connect + e.read + e.write, e.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
end
"""


def wrk_phase(
    url: str, token: str, strategy: str, clients: int, duration: float, workdir: Path
) -> Phase:
    """C clients on keep-alive connections from wrk."""
    script = workdir / "route.lua"
    script.write_text(_WRK_SCRIPT)
    process = subprocess.Popen(
        [
            "wrk",
            f"--threads={min(2, clients)}",
            f"--connections={clients}",
            f"--duration={max(round(duration), 1)}s",
            "--timeout=30s",
            f"--script={script}",
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


# --- CPU accounting -----------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _database_backends(db_name: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f" {db_name} ".encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return found


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each named group of processes."""
    return {name: sum(_proc_cpu(pid) for pid in pids) for name, pids in groups.items()}


def describe(label: str, phase: Phase, latency_ms: int) -> str:
    p50, p95, p99 = (phase.stat(p) for p in ("p50", "p95", "p99"))
    lines = [
        f"{label}",
        f"  requests ok {phase.ok}, errors {len(phase.errors)}, routed {phase.routed}",
        f"  latency ms  p50 {p50:7.1f}  p95 {p95:7.1f}  p99 {p99:7.1f}  "
        f"max {phase.stat('max'):7.1f}  mean {phase.stat('mean'):7.1f}",
        f"  overhead over L ({latency_ms} ms): p50 {p50 - latency_ms:+.1f} ms, "
        f"p99 {p99 - latency_ms:+.1f} ms",
    ]
    if phase.seconds:
        lines.append(f"  rate {phase.ok / phase.seconds:7.1f} routes/s over {phase.seconds:.1f} s")
    if phase.errors:
        lines.append(f"  first errors: {phase.errors[:3]}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="callgrid-bench-"))
    db_name = f"callgrid_bench_{os.getpid()}"
    grids = [grid_id(n) for n in range(args.buyers)]
    sim_port, web_port = free_port(), free_port()
    extra = {
        "DATABASE_URL": with_database(args.database_url, db_name),
        "DATA_DIR": str(workdir / "data"),
    }
    if args.redis_url:
        extra.update(
            {
                "REDIS_URL": args.redis_url,
                "CACHE_URL": args.redis_url,
                "CACHE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            }
        )
    if args.async_commit:
        extra["ROUTING_SYNCHRONOUS_COMMIT"] = "false"
    env = portal_env(extra)
    processes: list[subprocess.Popen] = []
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk); use --load-generator python")
        return 2
    print(
        f"route benchmark: {args.buyers} buyers, L={args.latency_ms} ms, "
        f"strategy={args.strategy}, gunicorn {args.workers}x{args.threads} gthread, "
        f"PostgreSQL ({'asynchronous' if args.async_commit else 'synchronous'} commit), "
        f"limits in {'Redis' if args.redis_url else 'the file cache'}, "
        f"{os.cpu_count()} CPUs, load from {generator}",
        flush=True,
    )
    try:
        create_database(args.database_url, db_name)
        processes.append(start_simulator(grids, args.latency_ms, sim_port, workdir))
        token = prepare_portal(env, grids, sim_port)
        connections = args.worker_connections or max(args.threads, -(-args.clients // args.workers))
        processes.append(start_gunicorn(env, web_port, args.workers, args.threads, connections))
        url = f"http://127.0.0.1:{web_port}/api/v1/route/"

        warm = latency_phase(url, token, args.strategy, 20)  # connections, imports, caches
        if warm.errors:
            print(f"warm-up failed: {warm.errors[:3]}")
            return 1
        groups = {
            "gunicorn": [processes[1].pid, *_children(processes[1].pid)],
            "simulator": [processes[0].pid],
            "postgres": _database_backends(db_name),
        }
        pid_cpu = {pid: _proc_cpu(pid) for pids in groups.values() for pid in pids}
        latency = latency_phase(url, token, args.strategy, args.samples)
        print(describe("1 client, sequential routes", latency, args.latency_ms), flush=True)
        # Work per route: steadier than wall time on a shared machine, so changes to the
        # portal's own code show here even when the latency figures move with the neighbours.
        # Each server thread has its own database connection: count the ones opened meanwhile.
        groups["postgres"] = sorted(set(groups["postgres"]) | set(_database_backends(db_name)))
        per_route = {
            name: sum(_proc_cpu(pid) - pid_cpu.get(pid, 0.0) for pid in pids) / max(latency.ok, 1)
            for name, pids in groups.items()
        }
        print(
            "  CPU ms per route: "
            + ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in per_route.items()),
            flush=True,
        )

        before = _last_call_id(env)
        cpu_before = cpu_snapshot(groups)
        own_before, waited_before = sum(os.times()[:2]), sum(os.times()[2:4])
        if generator == "wrk":
            load = wrk_phase(url, token, args.strategy, args.clients, args.duration, workdir)
            # wrk has exited and been waited for: the kernel added its CPU to our children's.
            load_cpu = sum(os.times()[2:4]) - waited_before
        else:
            load = throughput_phase(url, token, args.strategy, args.clients, args.duration)
            load_cpu = sum(os.times()[:2]) - own_before
        groups["postgres"] = sorted(set(groups["postgres"]) | set(_database_backends(db_name)))
        cpu_after = cpu_snapshot(groups)
        print(describe(f"{args.clients} clients for {args.duration:.0f} s", load, args.latency_ms))
        used = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
        used[f"load generator ({generator})"] = load_cpu
        print(
            "  CPU seconds: "
            + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())
            + f" (of {load.seconds * (os.cpu_count() or 1):.0f} available)"
        )
        # Routes the load generator stopped waiting for at the end still finish and log.
        time.sleep(min(args.latency_ms / 1000 * 4 + 1.0, 11.0))
        calls, routed, bids = count_rows(env, before)
        per_call = args.buyers if args.strategy == "highest_bid" else None
        expected = f" (expected {calls * per_call})" if per_call else ""
        print(
            f"  logged: {calls} calls, {routed} routed, {bids} bid rows{expected}; "
            f"answers received {load.ok}",
            flush=True,
        )

        floor = fan_out_floor_phase(sim_port, grids, args.samples)
        print(
            describe(
                "floor: the fan-out alone as the portal's auction makes it "
                "(one thread, send_bids, no portal)",
                floor,
                args.latency_ms,
            )
        )
        threads_floor = floor_phase(sim_port, grids, args.samples)
        print(
            describe(
                f"for comparison: {args.buyers} threads, pooled urllib3, no portal",
                threads_floor,
                args.latency_ms,
            )
        )
        print(
            f"  the portal's own share at p50: {percentile(latency.latencies_ms, 50):.1f} - "
            f"{percentile(floor.latencies_ms, 50):.1f} = "
            f"{percentile(latency.latencies_ms, 50) - percentile(floor.latencies_ms, 50):.1f} ms "
            "(server, database, limits, log)",
            flush=True,
        )

        baseline = baseline_phase(sim_port, grids, args.baseline_samples)
        print(describe("baseline: sequential requests.post, no pooling", baseline, 0))
        portal_p50 = percentile(latency.latencies_ms, 50)
        base_p50 = percentile(baseline.latencies_ms, 50)
        print(
            f"ratio at p50: baseline {base_p50:.1f} ms / portal {portal_p50:.1f} ms = "
            f"{base_p50 / portal_p50:.1f}x faster"
        )
        return 0
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if not args.keep_database:
            try:
                drop_database(args.database_url, db_name)
            except Exception as exc:  # cleanup must not hide the result
                print(f"could not drop {db_name}: {exc}")


def _last_call_id(env: dict[str, str]) -> int:
    script = (
        "from bidlog.models import Call; "
        "print(Call.objects.order_by('-pk').values_list('pk', flat=True).first() or 0)"
    )
    return int(shell_output(env, script))


if __name__ == "__main__":
    sys.exit(main())
