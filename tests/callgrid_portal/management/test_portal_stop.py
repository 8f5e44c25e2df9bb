"""Stopping ``manage.py portal``: whatever stop signal reaches it or its process group, every
child (gunicorn's master and workers, the Celery worker and beat, the simulator) is gone
within 10 s and the ports are free again.

Each run signals the whole process group, as Ctrl-C in a terminal does, while two clients
hold half-sent requests open on gunicorn: a worker thread waiting on one of them is what
once kept a gunicorn worker (and the port) alive after the portal had exited.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.portal_process import REPO, alive, descendants
from tests.servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc"),
]

# The promise to whoever stops the portal (SPEC: stopping), counted from the signal.
STOP_WITHIN_SECONDS = 10.0


def _bindable(port: int) -> bool:
    """Whether a new server could listen on ``port`` now (as gunicorn would: SO_REUSEADDR,
    so connections of the old server still closing do not count, a listener does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _answers_200(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One DATA_DIR for every run: migrations and demo data are prepared once."""
    return tmp_path_factory.mktemp("portal-stop")


@pytest.fixture
def portal_env(data_dir) -> dict[str, str]:
    """The embedded default, whatever the suite itself runs on."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "REDIS_URL",
            "CACHE_URL",
            "CELERY_BROKER_URL",
            "CALLGRID_ENDPOINT_ALLOWLIST",
            "CALLGRID_INSECURE_HOSTS",
            "SECURE_SSL_REDIRECT",
        }
    }
    env.update(
        DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        DJANGO_SUPERUSER_PASSWORD="stop-test-Password-1",
    )
    return env


@pytest.fixture
def half_sent_requests() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _run_portal(env: dict[str, str], log: Path, port: int, sim_port: int) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "portal",
                "--port",
                str(port),
                "--sim-port",
                str(sim_port),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A group of its own, like a shell job: the signal goes to it, not to pytest.
            start_new_session=True,
        )


def _wait_until_every_child_is_up(process: subprocess.Popen, log: Path, port: int) -> None:
    """Wait for the health check to answer and the banner that follows every child's start;
    fail (with the portal's log) if the portal exits first or takes over 120 s."""
    deadline = time.monotonic() + 120
    while not _answers_200(f"http://127.0.0.1:{port}/api/v1/health/"):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    while "Press Ctrl-C" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _half_sent_request(port: int) -> socket.socket:
    """A connection holding a request whose headers never end, as a slow client's would."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /api/v1/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def _wait_until_gone(process: subprocess.Popen, children: list[int], seconds: float) -> None:
    """Wait up to ``seconds`` for the portal and every child to exit (the caller asserts)."""
    gone_by = time.monotonic() + seconds
    while time.monotonic() < gone_by and (
        process.poll() is None or any(alive(pid) for pid in children)
    ):
        time.sleep(0.1)


@pytest.mark.parametrize(
    "stop_signal",
    [
        signal.SIGINT,
        signal.SIGINT,
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGTERM,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
    ],
    ids=lambda sig: signal.Signals(sig).name,
)
def test_signal_to_the_process_group_stops_every_child_and_frees_the_ports(
    stop_signal, portal_env, data_dir, half_sent_requests
):
    port, sim_port = free_port(), free_port()
    log = data_dir / f"portal-{port}.log"
    process = _run_portal(portal_env, log, port, sim_port)
    try:
        _wait_until_every_child_is_up(process, log, port)
        children = descendants(process.pid)
        names = " ".join(Path(f"/proc/{pid}/cmdline").read_text() for pid in children)
        for part in ("gunicorn", "worker", "beat", "callgrid_simulator"):
            assert part in names, names
        for _ in range(2):
            half_sent_requests.append(_half_sent_request(port))
        time.sleep(0.5)  # let gunicorn hand them to worker threads

        os.killpg(process.pid, stop_signal)

        _wait_until_gone(process, children, STOP_WITHIN_SECONDS)
        left = [pid for pid in children if alive(pid)]
        assert process.poll() is not None, "the portal is still running"
        assert not left, [Path(f"/proc/{pid}/cmdline").read_text() for pid in left]
        assert _bindable(port) and _bindable(sim_port)
        assert process.returncode == 0, log.read_text()
        assert "Stopped" in log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
