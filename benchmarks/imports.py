"""Benchmark ``POST /api/v1/bids/import/`` through a real server, against a baseline commit.

What it does, in one run:

1. Creates a scratch PostgreSQL database (``--database-url`` names the server), migrates it,
   adds ``--buyers`` buyers and an API token, and writes ``--preload`` bid rows with
   ``generate_series`` so the bid log's indexes are not empty.
2. For the baseline (the code of ``--baseline-ref``, exported with ``git archive`` into a
   temporary folder: by default the commit whose import was measured at 4,794-8,661 rows/s)
   and then for this checkout: starts gunicorn (gthread) on that database, posts one warm-up
   batch, then ``--batches`` batches of ``--batch-size`` records from ``--clients`` client
   threads over keep-alive connections, and prints rows/s, the request latency and the CPU
   seconds per 1,000 rows of the web workers and of PostgreSQL's backends.
3. Resends one batch already imported (every record ``existing``) and prints its time.

Bodies are encoded before the clock starts, so the client's CPU is spent sending only. On a
machine shared with other work, CPU per row is the steadier figure: rows/s follow the load.

Usage: ``python benchmarks/imports.py`` (``--help`` for options). It is a measurement, not a
test: it prints numbers and exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpu import children, database_backends, proc_cpu
from benchmarks.route_servers import (
    create_database,
    drop_database,
    free_port,
    gunicorn_argv,
    portal_env,
    shell_output,
    wait_for_port,
    with_database,
)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATABASE = "callgrid_bench_import"
# The import before COPY was made fast: validation per record, a COPY of every column.
BASELINE_REF = "f4c4a88"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches (20)")
    parser.add_argument("--batch-size", type=int, default=5000, help="records per batch (5000)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent client threads (2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--buyers", type=int, default=20, help="buyers named by the records")
    parser.add_argument("--preload", type=int, default=1_000_000, help="bid rows before (1M)")
    parser.add_argument(
        "--baseline-ref", default=BASELINE_REF, help="git commit to compare with ('' for none)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server to create the scratch database on (default $DATABASE_URL)",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    return parser.parse_args(argv)


_SEED = """
from django.contrib.auth.models import User
from django.db import connection
from knox.models import AuthToken
from buyers.models import Buyer
for n in range({buyers}):
    Buyer.objects.create(name=f"Import buyer {{n}}", grid_id=f"imp{{n:04d}}" + "x" * 17,
                         min_bid="10.00", vertical="other", duplicate_window_days=30)
ids = list(Buyer.objects.values_list("id", flat=True))
with connection.cursor() as cursor:
    cursor.execute(
        "INSERT INTO bidlog_bidlog (buyer_id, source, created_at, caller_id, state_code, request,"
        " http_status, code, message, destination, response_caller_id, duration_ms, attempt,"
        " outcome, error, raw_response, trace)"
        " SELECT (%s::bigint[])[1 + g %% %s], 'live', now() - make_interval(secs => g %% 86400),"
        " '3035551234', 'CO', '{{}}', 200, 2000, '', '', '', 150, 1, 'declined', '', '', '[]'"
        " FROM generate_series(1, %s) g", [ids, len(ids), {preload}])
    cursor.execute("VACUUM ANALYZE bidlog_bidlog")
user = User.objects.create_superuser("importer", "importer@example.com", None)
print(AuthToken.objects.create(user)[1])
"""


def batch_body(label: str, batch: int, size: int, buyers: int) -> bytes:
    """One request body: ``size`` records of an ordinary mix, spread over the last day."""
    now = datetime.now(UTC)
    records = []
    for i in range(size):
        accepted = i % 3 == 0
        records.append(
            {
                "external_id": f"{label}-{batch}-{i}",
                "grid_id": f"imp{i % buyers:04d}" + "x" * 17,
                "created_at": (now - timedelta(minutes=(i % 1400) + 5)).isoformat(),
                "caller_id": f"303555{i % 10000:04d}",
                "state_code": "CO",
                "code": 1000 if accepted else 2000,
                "http_status": 200,
                "bid_amount": "25.00" if accepted else None,
                "destination": "18005550100" if accepted else "",
                "duration_ms": 150 + i % 400,
                "request": {"CallerId": f"303555{i % 10000:04d}", "InboundStateCode": "CO"},
            }
        )
    return json.dumps({"records": records}).encode()


@dataclass
class Result:
    """What one phase measured."""

    rows: int
    seconds: float
    latencies_ms: list[float]
    web_cpu: float
    db_cpu: float

    def line(self, label: str) -> str:
        per_k = 1000 / self.rows
        return (
            f"{label:<10}{self.rows / self.seconds:>12,.0f} rows/s  "
            f"request p50 {statistics.median(self.latencies_ms):>6.0f} ms  "
            f"max {max(self.latencies_ms):>6.0f} ms  CPU per 1,000 rows: web "
            f"{self.web_cpu * per_k * 1000:.1f} ms, PostgreSQL {self.db_cpu * per_k * 1000:.1f} ms"
        )


def start_gunicorn(root: Path, env: dict[str, str], workers: int) -> tuple[subprocess.Popen, int]:
    """gunicorn serving the code in ``root``; the process and its port."""
    port = free_port()
    process = subprocess.Popen(
        [*gunicorn_argv(port, workers, 2), "--timeout", "120"],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port)
    return process, port


def post(session: requests.Session, url: str, body: bytes) -> tuple[int, float]:
    """Post one batch; the rows it created and its time in ms."""
    started = time.perf_counter()
    response = session.post(url, data=body, headers={"Content-Type": "application/json"})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code not in (200, 201):
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:300]}")
    return response.json()["created"], elapsed


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: proc_cpu(pid) for pid in pids}


def run_phase(url: str, token: str, bodies: list[bytes], clients: int, web_pid: int) -> Result:
    """Post ``bodies`` from ``clients`` threads; the rows, wall time, latencies and CPU.

    CPU is counted for the web server's processes and for the database's backends, those
    alive at the end included (a thread's first request opens its connection).
    """
    local = threading.local()

    def send(body: bytes) -> tuple[int, float]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Token {token}"
        return post(local.session, url, body)

    def groups() -> dict[str, list[int]]:
        return {"web": [web_pid, *children(web_pid)], "db": database_backends(DATABASE)}

    before = {name: _cpu_by_pid(pids) for name, pids in groups().items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(send, bodies))
    seconds = time.perf_counter() - started
    used = {
        name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in _cpu_by_pid(pids).items())
        for name, pids in groups().items()
    }
    return Result(
        rows=sum(created for created, _ms in done),
        seconds=seconds,
        latencies_ms=[ms for _created, ms in done],
        web_cpu=used["web"],
        db_cpu=used["db"],
    )


def export_commit(ref: str, folder: Path) -> Path:
    """The tree of commit ``ref`` written into ``folder`` (read-only use of the repository)."""
    archive = folder / "baseline.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), ref], cwd=ROOT, check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree", filter="data")
    return folder / "tree"


def measure(label: str, root: Path, env: dict[str, str], token: str, args) -> None:
    """Serve ``root`` and run the timed batches and the resend against it."""
    process, port = start_gunicorn(root, env, args.workers)
    url = f"http://127.0.0.1:{port}/api/v1/bids/import/"
    try:
        size, buyers = args.batch_size, args.buyers
        warm = [batch_body(f"{label}-warm", n, size, buyers) for n in range(args.workers)]
        run_phase(url, token, warm, args.workers, process.pid)
        bodies = [batch_body(label, n, size, buyers) for n in range(args.batches)]
        result = run_phase(url, token, bodies, args.clients, process.pid)
        print(result.line(label), flush=True)
        again = run_phase(url, token, bodies[:1], 1, process.pid)
        print(f"{'':<10}a resent batch (all {size:,} existing): {again.latencies_ms[0]:.0f} ms")
    finally:
        process.terminate()
        process.wait(timeout=30)


_FLOOR_INSERT = """
INSERT INTO bidlog_bidlog (buyer_id, source, created_at, caller_id, state_code, request,
    http_status, code, message, bid_amount, destination, response_caller_id, duration_ms,
    attempt, outcome, error, raw_response, trace, external_id)
SELECT (%(ids)s::bigint[])[1 + g %% %(n)s], 'import', now() - make_interval(mins => g %% 1400),
    '303555' || lpad((g %% 10000)::text, 4, '0'), 'CO',
    '{"CallerId": "3035551234", "InboundStateCode": "CO"}'::jsonb, 200,
    CASE WHEN g %% 3 = 0 THEN 1000 ELSE 2000 END, '',
    CASE WHEN g %% 3 = 0 THEN 25.00 END, '', '', 150 + g %% 400, 1,
    CASE WHEN g %% 3 = 0 THEN 'accepted' ELSE 'declined' END, '', '', '[]'::jsonb,
    %(prefix)s || g
FROM generate_series(1, %(size)s) g
"""


def floor_phase(database_url: str, batches: int, size: int) -> None:
    """The table's own cost: the same rows written by one ``INSERT ... SELECT`` per batch on
    the server (no parsing, no checks, no network), committed one batch at a time; its wall
    time and the CPU of its backend per 1,000 rows. No import through any API can beat it."""
    with psycopg.connect(with_database(database_url, DATABASE)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM buyers_buyer").fetchall()]
        backend = conn.info.backend_pid
        conn.commit()
        cpu, started = proc_cpu(backend), time.perf_counter()
        for batch in range(batches):
            params = {"ids": ids, "n": len(ids), "size": size, "prefix": f"floor-{batch}-"}
            conn.execute(_FLOOR_INSERT, params)
            conn.commit()
        seconds, cpu = time.perf_counter() - started, proc_cpu(backend) - cpu
    rows = batches * size
    print(
        f"{'floor':<10}{rows / seconds:>12,.0f} rows/s  one INSERT ... SELECT per batch on the "
        f"server: CPU per 1,000 rows: PostgreSQL {cpu * 1_000_000 / rows:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    create_database(args.database_url, DATABASE)
    env = portal_env({"DATABASE_URL": with_database(args.database_url, DATABASE), "DEBUG": "false"})
    env["API_THROTTLE_RATE"] = "1000000/minute"
    try:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        token = shell_output(env, _SEED.format(buyers=args.buyers, preload=args.preload))
        print(
            f"# Import through the API: {args.batches} batches of {args.batch_size:,} records, "
            f"{args.clients} clients, {args.workers} gunicorn workers, {args.preload:,} rows "
            f"before, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); "
            f"before: {args.baseline_ref or 'not measured'}"
        )
        with tempfile.TemporaryDirectory() as folder:
            if args.baseline_ref:
                tree = export_commit(args.baseline_ref, Path(folder))
                measure("before", tree, env, token, args)
            measure("after", ROOT, env, token, args)
        floor_phase(args.database_url, args.batches, args.batch_size)
    finally:
        if not args.keep_database:
            drop_database(args.database_url, DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
