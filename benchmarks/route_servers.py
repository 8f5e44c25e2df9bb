"""Servers for benchmarks/route.py: the simulator, a scratch database, the portal under gunicorn.

The simulator and gunicorn run as processes of their own, on free loopback ports; the scratch
PostgreSQL database is created on the server ``--database-url`` names and migrated, and holds
the benchmark's buyers (limits wide open, so the benchmark measures routing, not refusals) and
an API token. ``benchmarks/imports.py`` starts its portal with the same pieces.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    """A loopback port no one listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on ``port``; raise after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s")


def grid_id(n: int) -> str:
    """A grid id for benchmark buyer ``n``, unique to this run."""
    return f"bench{n:04d}{uuid.uuid4().hex[:16]}"


def with_database(url: str, name: str) -> str:
    """``url`` (a PostgreSQL server URL) pointing at database ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def start_simulator(
    grids: list[str], latency_ms: int, port: int, workdir: Path
) -> subprocess.Popen[bytes]:
    """The simulator on ``port``: every grid accepts after ``latency_ms``, each its own amount."""
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
    """The environment the portal's processes run with: production-like settings, plus ``extra``."""
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


def scratch_env(
    *, server_url: str, db_name: str, workdir: Path, redis_url: str, async_commit: bool
) -> dict[str, str]:
    """The portal's environment on scratch database ``db_name``, limits in Redis if given."""
    extra = {
        "DATABASE_URL": with_database(server_url, db_name),
        "DATA_DIR": str(workdir / "data"),
    }
    if redis_url:
        extra.update(
            {
                "REDIS_URL": redis_url,
                "CACHE_URL": redis_url,
                "CACHE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            }
        )
    if async_commit:
        extra["ROUTING_SYNCHRONOUS_COMMIT"] = "false"
    return portal_env(extra)


def create_database(server_url: str, name: str) -> None:
    """(Re)create the empty database ``name`` on the server at ``server_url``."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, closing any connection still open to it."""
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


def seed_history(env: dict[str, str], calls: int) -> None:
    """Give the log a history before the load: ``calls`` routed calls of other callers, spread
    over this month until a minute ago (half of them paid out), then ``ANALYZE``.

    A live log is never empty, and PostgreSQL plans the buyers read (each buyer's duplicate
    window) once per pooled connection: planned against a fresh month partition of a few dozen
    rows, it scans the whole partition on every route as the load fills it, where a month with
    a history (or autovacuum's next ANALYZE, a minute later in production) gets the index.
    """
    if calls <= 0:
        return
    script = f"""
import random
from datetime import timedelta
from django.db import connection
from django.utils import timezone
from bidlog.models import Call
from buyers.models import Buyer
now = timezone.now()
start = max(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now - timedelta(days=30))
span = max((now - start).total_seconds() - 60, 1.0)
buyers = list(Buyer.objects.all())
rng = random.Random(7)
total = {calls}
def caller():
    area, exchange = rng.randint(200, 999), rng.randint(200, 999)
    return f"{{area}}{{exchange}}{{rng.randint(0, 9999):04d}}"
rows = [
    Call(
        created_at=start + timedelta(seconds=span * n / total),
        caller_id=caller(),
        strategy="highest_bid", winner=rng.choice(buyers), bid_amount="12.00", routed=True,
        paid_out=rng.random() < 0.5, duration_ms=25,
    )
    for n in range(total)
]
Call.objects.bulk_create(rows, batch_size=5000)
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
print(len(rows))
"""
    shell_output(env, script)


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


def start_gunicorn(
    env: dict[str, str], port: int, workers: int, threads: int, connections: int
) -> subprocess.Popen[bytes]:
    """The portal under gunicorn on ``port``, each worker taking ``connections`` at most."""
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


def last_call_id(env: dict[str, str]) -> int:
    """The id of the newest call in the scratch database (0 when there is none)."""
    script = (
        "from bidlog.models import Call; "
        "print(Call.objects.order_by('-pk').values_list('pk', flat=True).first() or 0)"
    )
    return int(shell_output(env, script))


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, newest first; kill any that has not exited 10 s later."""
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
