"""Servers of a test's own, for fault tests: PostgreSQL, Redis and the portal under gunicorn.

Each one runs on a free loopback port in a temporary folder and is stopped and removed
afterwards, so a test may stop, kill or restart it without touching the shared services.
PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user
(``runuser``). Use the fixtures ``pg_cluster`` and ``redis_server`` (registered in
``tests/conftest.py``) and :func:`start_portal`.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from callgrid_portal.datadir import data_dir_prepare

ROOT = Path(__file__).resolve().parent.parent
# Generous: a loaded two-core CI machine may take a while to start anything.
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something accepts connections on ``port``; fail if ``process`` exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {START_TIMEOUT:.0f} s")


def _as_postgres_user() -> list[str]:
    """The command prefix that runs PostgreSQL's tools as a user they accept."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PostgresCluster:
    """A PostgreSQL cluster of its own: ``initdb`` in a temporary folder, ``pg_ctl`` to
    start, stop and restart it on a fixed free port."""

    def __init__(self) -> None:
        # In /tmp itself, not pytest's tmp_path: that one is private to root, and the server
        # may run as the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="cgp-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "server.log"
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            [
                *_as_postgres_user(),
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres_user(), "pg_ctl", "-D", str(self.data), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT + 10,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            # Durability of this throwaway cluster is not under test; speed on CI is.
            "-c fsync=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=16MB"
        )
        self._pg_ctl("-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected, as in a restart)."""
        self._pg_ctl("-m", mode, "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement in autocommit; its rows (empty when it returns none)."""
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []

    def running(self) -> bool:
        done = subprocess.run(
            [*_as_postgres_user(), "pg_ctl", "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0

    def migrated_database(self, name: str, env: Mapping[str, str]) -> str:
        """Create database ``name`` with the portal's tables; returns its URL.

        The migrations run once per cluster, into a template that later databases copy.
        """
        template = "portal_template"
        if not self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{template}'"):
            self.execute(f'CREATE DATABASE "{template}"')
            manage({**env, "DATABASE_URL": self.url(template)}, "migrate", "--noinput", "-v", "0")
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def terminate_connections(self, database: str) -> int:
        """``pg_terminate_backend`` every other connection to ``database``; how many."""
        rows = self.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        return int(rows[0][0])  # type: ignore[call-overload]

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A ``redis-server`` of its own, without persistence: a restart starts it empty."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cgp-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 (the server holds it)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def portal_env(extra: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """The environment of a portal process of a test's own (no shared service in it)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL", "DATABASE_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "callgrid_portal.settings",
            "DATA_DIR": str(data_dir),
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CALLGRID_ENDPOINT_ALLOWLIST": "127.0.0.1",
            "CALLGRID_INSECURE_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def manage(env: Mapping[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``args`` in ``env``; its standard output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout


class Portal:
    """The portal served by gunicorn (gthread workers), as in production."""

    def __init__(self, env: Mapping[str, str], log: Path, *, workers: int = 2) -> None:
        # What `manage.py portal` prepares before it starts gunicorn: DATA_DIR and, for the
        # folder broker (no CELERY_BROKER_URL), its folders; the key comes from the tests' env.
        data_dir = Path(env["DATA_DIR"])
        folder_broker = not env.get("CELERY_BROKER_URL")
        data_dir_prepare(
            data_dir=data_dir,
            broker_dir=Path(env.get("CELERY_BROKER_DIR") or data_dir / "broker")
            if folder_broker
            else None,
            secret_key=env["SECRET_KEY"],
            require_secret_key=False,
        )
        self.port = free_port()
        self.log = log
        handle = open(log, "ab")  # noqa: SIM115 (gunicorn holds it)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "callgrid_portal.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        wait_for_port(self.port, process=self.process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextmanager
def started_portal(env: Mapping[str, str], log: Path) -> Iterator[Portal]:
    """A running :class:`Portal`, stopped on the way out."""
    portal = Portal(env, log)
    try:
        yield portal
    finally:
        portal.stop()


# What a test portal's database holds: buyers on the simulator and an operator's token.
_SEED = """
import json, sys
from django.contrib.auth.models import User
from knox.models import AuthToken
from buyers.models import Buyer
for spec in json.loads(sys.argv[-1]):
    Buyer.objects.create(vertical="other", min_bid="1.00", duplicate_window_days=30,
                         max_concurrency=1000, timeout_seconds=10, **spec)
user = User.objects.create_superuser("faults", "faults@example.com", "faults-password-1")
print(AuthToken.objects.create(user)[1])
"""


def seed_portal(env: Mapping[str, str], buyers: list[dict[str, object]]) -> str:
    """Add ``buyers`` and a superuser ``faults`` (password ``faults-password-1``) to the
    portal's (migrated) database; returns the user's API token."""
    done = subprocess.run(
        [sys.executable, "-c", _SEED_LAUNCHER, _SEED, json.dumps(buyers)],
        cwd=ROOT,
        env=dict(env),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


_SEED_LAUNCHER = "import sys, django; django.setup(); exec(sys.argv[1])"


def route(session: requests.Session, portal: Portal, token: str, caller: str) -> requests.Response:
    """``POST /api/v1/route/`` for ``caller`` with the token."""
    return session.post(
        f"{portal.url}/api/v1/route/",
        json={"CallerId": caller, "InboundStateCode": "CO"},
        headers={"Authorization": f"Token {token}"},
        timeout=60,
    )


# --- fixtures (tests/conftest.py makes them available everywhere) ---------------------------


@pytest.fixture(scope="session")
def _pg_cluster_session() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_cluster(_pg_cluster_session: PostgresCluster) -> PostgresCluster:
    """A PostgreSQL cluster of the test session's own, running; a test may stop or restart
    it (the next test finds it running again)."""
    if not _pg_cluster_session.running():
        _pg_cluster_session.start()
    return _pg_cluster_session


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running ``redis-server`` of this test's own; stop and start it at will."""
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


def signed_in(portal: Portal, username: str = "faults", password: str = "faults-password-1"):
    """A ``requests`` session signed in to the portal's pages (the login form, with CSRF)."""
    session = requests.Session()
    session.get(f"{portal.url}/accounts/login/", timeout=60).raise_for_status()
    response = session.post(
        f"{portal.url}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=60,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return session
