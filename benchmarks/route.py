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
   script (``route_wrk.lua``) that posts a fresh caller per request over C keep-alive
   connections; without
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

Modules: this one (arguments, the run's steps, printing), ``route_servers`` (simulator,
scratch database, gunicorn), ``route_load`` (the sequential client, wrk or Python load, floor
and baseline), ``cpu`` (CPU seconds per process group).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, only benchmarks/ is on the path: add the checkout for its sibling modules.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpu import children, cpu_snapshot, database_backends, proc_cpu
from benchmarks.route_load import (
    Phase,
    baseline_phase,
    fan_out_floor_phase,
    floor_phase,
    latency_phase,
    percentile,
    throughput_phase,
    wrk_phase,
)
from benchmarks.route_servers import (
    count_rows,
    create_database,
    drop_database,
    free_port,
    grid_id,
    last_call_id,
    prepare_portal,
    scratch_env,
    seed_history,
    start_gunicorn,
    start_simulator,
    stop_processes,
)


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
        "--history-calls",
        type=int,
        default=100_000,
        help="routed calls of other callers in the log before the load (100000)",
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


@dataclass
class Bench:
    """One run: its arguments, load generator, scratch database and the processes it started."""

    args: argparse.Namespace
    generator: str
    workdir: Path
    db_name: str
    grids: list[str]
    sim_port: int
    web_port: int
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, args: argparse.Namespace, generator: str) -> Bench:
        """A run's working folder, database name, buyers and ports; nothing started yet."""
        workdir = Path(tempfile.mkdtemp(prefix="callgrid-bench-"))
        db_name = f"callgrid_bench_{os.getpid()}"
        env = scratch_env(
            server_url=args.database_url,
            db_name=db_name,
            workdir=workdir,
            redis_url=args.redis_url,
            async_commit=args.async_commit,
        )
        grids = [grid_id(n) for n in range(args.buyers)]
        return cls(args, generator, workdir, db_name, grids, free_port(), free_port(), env)

    @property
    def url(self) -> str:
        """The route API of the portal under test."""
        return f"http://127.0.0.1:{self.web_port}/api/v1/route/"


def load_generator(choice: str) -> str | None:
    """The load generator to use: ``auto`` is wrk when installed; None when wrk is missing."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        return None
    return choice


def header(args: argparse.Namespace, generator: str) -> str:
    """The first line printed: what is measured, on what, with which load generator."""
    return (
        f"route benchmark: {args.buyers} buyers, L={args.latency_ms} ms, "
        f"strategy={args.strategy}, gunicorn {args.workers}x{args.threads} gthread, "
        f"PostgreSQL ({'asynchronous' if args.async_commit else 'synchronous'} commit), "
        f"limits in {'Redis' if args.redis_url else 'the file cache'}, "
        f"{os.cpu_count()} CPUs, load from {generator}"
    )


def describe(label: str, phase: Phase, latency_ms: int) -> str:
    """A phase's figures, one per line, the overhead taken over the buyers' latency L."""
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


# --- the run's steps ----------------------------------------------------------------------


def start_servers(bench: Bench) -> str:
    """Scratch database, simulator, buyers and token, then gunicorn; returns the token."""
    args = bench.args
    create_database(args.database_url, bench.db_name)
    bench.processes.append(
        start_simulator(bench.grids, args.latency_ms, bench.sim_port, bench.workdir)
    )
    token = prepare_portal(bench.env, bench.grids, bench.sim_port)
    seed_history(bench.env, args.history_calls)
    connections = args.worker_connections or max(args.threads, -(-args.clients // args.workers))
    bench.processes.append(
        start_gunicorn(bench.env, bench.web_port, args.workers, args.threads, connections)
    )
    return token


def process_groups(bench: Bench) -> dict[str, list[int]]:
    """The processes whose CPU is counted: gunicorn and its workers, simulator, PostgreSQL."""
    simulator, web = bench.processes
    return {
        "gunicorn": [web.pid, *children(web.pid)],
        "simulator": [simulator.pid],
        "postgres": database_backends(bench.db_name),
    }


def add_backends(bench: Bench, groups: dict[str, list[int]]) -> None:
    """Count the PostgreSQL backends opened since: each server thread has its own connection."""
    groups["postgres"] = sorted(set(groups["postgres"]) | set(database_backends(bench.db_name)))


def measure_latency(bench: Bench, token: str, groups: dict[str, list[int]]) -> Phase:
    """The sequential phase, and the CPU each process group spent per route."""
    args = bench.args
    pid_cpu = {pid: proc_cpu(pid) for pids in groups.values() for pid in pids}
    latency = latency_phase(bench.url, token, args.strategy, args.samples)
    print(describe("1 client, sequential routes", latency, args.latency_ms), flush=True)
    # Work per route: steadier than wall time on a shared machine, so changes to the
    # portal's own code show here even when the latency figures move with the neighbours.
    add_backends(bench, groups)
    per_route = {
        name: sum(proc_cpu(pid) - pid_cpu.get(pid, 0.0) for pid in pids) / max(latency.ok, 1)
        for name, pids in groups.items()
    }
    print(
        "  CPU ms per route: "
        + ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in per_route.items()),
        flush=True,
    )
    return latency


def generate_load(bench: Bench, token: str) -> tuple[Phase, float]:
    """The throughput phase from wrk or Python threads, and the CPU seconds the load took."""
    args = bench.args
    own_before, waited_before = sum(os.times()[:2]), sum(os.times()[2:4])
    if bench.generator == "wrk":
        load = wrk_phase(bench.url, token, args.strategy, args.clients, args.duration)
        # wrk has exited and been waited for: the kernel added its CPU to our children's.
        return load, sum(os.times()[2:4]) - waited_before
    load = throughput_phase(bench.url, token, args.strategy, args.clients, args.duration)
    return load, sum(os.times()[:2]) - own_before


def measure_throughput(bench: Bench, token: str, groups: dict[str, list[int]]) -> None:
    """The throughput phase, the CPU each part used, and whether every attempt was logged."""
    args = bench.args
    before = last_call_id(bench.env)
    cpu_before = cpu_snapshot(groups)
    load, load_cpu = generate_load(bench, token)
    add_backends(bench, groups)
    cpu_after = cpu_snapshot(groups)
    print(describe(f"{args.clients} clients for {args.duration:.0f} s", load, args.latency_ms))
    used = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    used[f"load generator ({bench.generator})"] = load_cpu
    print(
        "  CPU seconds: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items())
        + f" (of {load.seconds * (os.cpu_count() or 1):.0f} available)"
    )
    # Routes the load generator stopped waiting for at the end still finish and log.
    time.sleep(min(args.latency_ms / 1000 * 4 + 1.0, 11.0))
    calls, routed, bids = count_rows(bench.env, before)
    per_call = args.buyers if args.strategy == "highest_bid" else None
    expected = f" (expected {calls * per_call})" if per_call else ""
    print(
        f"  logged: {calls} calls, {routed} routed, {bids} bid rows{expected}; "
        f"answers received {load.ok}",
        flush=True,
    )


def measure_floor(bench: Bench, latency: Phase) -> None:
    """The fan-out alone, two ways, and the portal's own share of the p50 over the first."""
    args = bench.args
    floor = fan_out_floor_phase(bench.sim_port, bench.grids, args.samples)
    print(
        describe(
            "floor: the fan-out alone as the portal's auction makes it "
            "(one thread, send_bids, no portal)",
            floor,
            args.latency_ms,
        )
    )
    threads_floor = floor_phase(bench.sim_port, bench.grids, args.samples)
    print(
        describe(
            f"for comparison: {args.buyers} threads, pooled urllib3, no portal",
            threads_floor,
            args.latency_ms,
        )
    )
    portal_p50 = percentile(latency.latencies_ms, 50)
    floor_p50 = percentile(floor.latencies_ms, 50)
    print(
        f"  the portal's own share at p50: {portal_p50:.1f} - {floor_p50:.1f} = "
        f"{portal_p50 - floor_p50:.1f} ms (server, database, limits, log)",
        flush=True,
    )


def measure_baseline(bench: Bench, latency: Phase) -> None:
    """The guide's sequential loop, and how many times slower than the portal it is at p50."""
    baseline = baseline_phase(bench.sim_port, bench.grids, bench.args.baseline_samples)
    print(describe("baseline: sequential requests.post, no pooling", baseline, 0))
    portal_p50 = percentile(latency.latencies_ms, 50)
    base_p50 = percentile(baseline.latencies_ms, 50)
    print(
        f"ratio at p50: baseline {base_p50:.1f} ms / portal {portal_p50:.1f} ms = "
        f"{base_p50 / portal_p50:.1f}x faster"
    )


def run(bench: Bench) -> int:
    """Every phase in order on servers started for this run; the exit status."""
    token = start_servers(bench)
    warm = latency_phase(bench.url, token, bench.args.strategy, 20)  # connections, imports, caches
    if warm.errors:
        print(f"warm-up failed: {warm.errors[:3]}")
        return 1
    groups = process_groups(bench)
    latency = measure_latency(bench, token, groups)
    measure_throughput(bench, token, groups)
    measure_floor(bench, latency)
    measure_baseline(bench, latency)
    return 0


# --- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    generator = load_generator(args.load_generator)
    if generator is None:
        print("wrk is not installed (apt-get install wrk); use --load-generator python")
        return 2
    bench = Bench.create(args, generator)
    print(header(args, generator), flush=True)
    try:
        return run(bench)
    finally:
        stop_processes(bench.processes)
        if not args.keep_database:
            try:
                drop_database(args.database_url, bench.db_name)
            except Exception as exc:  # cleanup must not hide the result
                print(f"could not drop {bench.db_name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
