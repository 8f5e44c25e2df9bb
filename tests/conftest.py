"""Shared fixtures: personas for each role and settings that let buyers point at the simulator."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from bidlog.routing.tokens import checked_tokens
from callgrid_portal.simulator import Simulator
from tests.factories import BuyerFactory, UserFactory
from tests.servers import _pg_cluster_session, pg_cluster, redis_server  # noqa: F401 (fixtures)

# The settings read SECRET_KEY from the environment only (`manage.py portal` generates one for
# its children); the tests, and every process they start, sign with this one.
if not os.environ.get("SECRET_KEY"):
    os.environ["SECRET_KEY"] = "tests-only-signing-key-" + "k3y" * 12
    django_settings.SECRET_KEY = os.environ["SECRET_KEY"]

# Where the browser tests save a screenshot of every page
# (tests/callgrid_portal/test_pages_a11y.py).
SCREENSHOT_DIR = Path(
    os.environ.get("SCREENSHOT_DIR") or Path(__file__).parent.parent / "var" / "screenshots"
)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Name the screenshots' folder at the end of the run (in the controller, under xdist too),
    so the CI log says where they are."""
    if SCREENSHOT_DIR.is_dir() and any(SCREENSHOT_DIR.glob("*.png")):
        count = len(list(SCREENSHOT_DIR.glob("*.png")))
        terminalreporter.write_line(f"Screenshots of the pages ({count}): {SCREENSHOT_DIR}")


@pytest.fixture(autouse=True)
def _callgrid_test_settings(settings):
    """Allow the local simulator as a buyer endpoint, as the embedded default does."""
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com", "127.0.0.1", "localhost"]
    settings.CALLGRID_INSECURE_HOSTS = ["127.0.0.1", "localhost"]
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(scope="session")
def _simulator_server():
    """One CallGrid simulator per test session (per xdist worker), on a free port."""
    server = Simulator().start()
    yield server
    server.stop()


@pytest.fixture
def simulator(_simulator_server) -> Simulator:
    """The running simulator, reset so each test starts with no requests and default grids."""
    _simulator_server.reset()
    return _simulator_server


# Personas, as healthchecks names its test users: one per role.
@pytest.fixture
def alice(db) -> User:
    """Alice is a viewer: she reads everything and changes nothing."""
    return cast(User, UserFactory(username="alice", role="viewer"))


@pytest.fixture
def bob(db) -> User:
    """Bob is an operator: he edits buyers and sends test bids."""
    return cast(User, UserFactory(username="bob", role="operator"))


@pytest.fixture
def charlie(db) -> User:
    """Charlie is an admin."""
    return cast(User, UserFactory(username="charlie", role="admin"))


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def page_client(user: User) -> Client:
    """A browser-less client signed in as ``user``, for the pages."""
    client = Client()
    client.force_login(user)
    return client


def _client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def viewer_api(alice) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def operator_api(bob) -> APIClient:
    return _client_for(bob)


@pytest.fixture
def admin_api(charlie) -> APIClient:
    return _client_for(charlie)


# --- Celery: an isolated queue per test, and real worker processes -----------------------------
# Tests publish to a queue of their own (and, on the filesystem broker, to a folder of their
# own), so concurrent test runs sharing one Redis never take each other's messages.


def _celery_reset(app) -> None:
    """Drop the app's cached pools and queue declarations after a config change.

    Pools are not closed: kombu keeps them in a registry keyed by broker, and a closed one
    would be handed back to the next test on the same broker.
    """
    app._pool = None
    app.__dict__.pop("amqp", None)


@dataclass
class CeleryBroker:
    """Where this test's messages go: the queue name and the variables a worker needs."""

    queue: str
    env: dict[str, str]


@pytest.fixture
def celery_broker(request, tmp_path):
    """Point the Celery app at a fresh queue (and filesystem folder) for this test.

    The broker is the configured one (Redis in CI), or kombu's filesystem transport when the
    test asks for it with ``@pytest.mark.parametrize("celery_broker", ["filesystem"],
    indirect=True)``, so CI proves the embedded default's broker as well.
    """
    from callgrid_portal.celery import app

    force_filesystem = getattr(request, "param", "configured") == "filesystem"
    queue = f"cgp-test-{uuid.uuid4().hex[:12]}"
    changes: dict[str, object] = {"task_default_queue": queue}
    env = {}
    filesystem = force_filesystem or app.conf.broker_url.startswith("filesystem")
    if filesystem:
        folder = tmp_path / "broker"
        for sub in ("in", "processed", "control"):
            (folder / sub).mkdir(parents=True)
        changes["broker_transport_options"] = {
            "data_folder_in": str(folder / "in"),
            "data_folder_out": str(folder / "in"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        env = {"CELERY_BROKER_DIR": str(folder), "CELERY_BROKER_POLL_SECONDS": "0.05"}
    if force_filesystem:
        # Celery lets CELERY_BROKER_URL win over broker_url, but not over broker_write_url;
        # the worker is told by an empty CELERY_BROKER_URL (settings then pick the folders).
        changes["broker_write_url"] = "filesystem://"
        env["CELERY_BROKER_URL"] = ""
    previous = {key: app.conf[key] for key in changes}
    app.conf.update(changes)
    _celery_reset(app)
    yield CeleryBroker(queue=queue, env=env)
    if not filesystem:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    app.conf.update(previous)
    _celery_reset(app)


@dataclass
class WorkerProcess:
    """A ``celery worker`` subprocess and the log it has written so far."""

    process: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to give back what it holds."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it at once: the test is over, and a warm shutdown costs seconds per worker."""
        if self.process.poll() is None:
            self.kill()


def _database_env() -> dict[str, str]:
    """Variables that point a child process at this test's database (test_... name)."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        return {"SQLITE_PATH": str(params["NAME"]), "DATABASE_URL": ""}
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return {"DATABASE_URL": f"postgres://{auth}{host}{port}/{params['NAME']}"}


@pytest.fixture
def celery_worker_factory(celery_broker, transactional_db):
    """Start real workers on this test's queue and database; all are stopped afterwards.

    ``start(**env)`` returns a :class:`WorkerProcess` once the worker says it is ready. The
    test must use committed data (``transactional_db``): the worker is another process.
    """
    workers: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "callgrid_portal.settings",
            "CALLGRID_ENDPOINT_ALLOWLIST": "bid.callgrid.com,127.0.0.1,localhost",
            "CALLGRID_INSECURE_HOSTS": "127.0.0.1,localhost",
            **_database_env(),
            **celery_broker.env,
            # The worker's cache keys (limits, leases) are the test's to delete afterwards.
            "CACHE_KEY_PREFIX": new_redis_prefix("test-worker"),
            **extra_env,
        }
        if not env.get("DATABASE_URL"):
            env.pop("DATABASE_URL", None)
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "callgrid_portal",
            "worker",
            "--pool=solo",
            "-Q",
            celery_broker.queue,
            "-n",
            f"{celery_broker.queue}-{len(workers)}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
        process = subprocess.Popen(
            argv,
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        worker = WorkerProcess(process)
        workers.append(worker)
        ready = threading.Event()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                worker.log.append(line)
                if " ready." in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 30
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                raise RuntimeError("celery worker did not start:\n" + "".join(worker.log))
        return worker

    yield start
    for worker in workers:
        worker.stop()


REDIS_URL = os.environ.get("REDIS_URL", "")
# Key prefixes handed out in the current test; their keys are deleted when it ends.
_redis_prefixes: list[str] = []


def new_redis_prefix(tag: str = "test") -> str:
    """A fresh cache key prefix (``<tag>-<10 hex>``) whose keys in REDIS_URL's database are
    deleted at the end of the current test, whichever process wrote them."""
    prefix = f"{tag}-{uuid.uuid4().hex[:10]}"
    _redis_prefixes.append(prefix)
    return prefix


def _redis_keys(pattern: str = "*") -> set[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return set(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _redis_prefixes_cleaned() -> Iterator[None]:
    """Delete every key written under a prefix from :func:`new_redis_prefix` in this test."""
    yield
    if REDIS_URL and _redis_prefixes:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for prefix in _redis_prefixes:
                # Django's key format is <prefix>:<version>:<key>.
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()
    _redis_prefixes.clear()


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under xdist, only the controlling process (which has no workerinput) takes the snapshot
    # and checks it, once every worker has finished.
    if REDIS_URL and not hasattr(session.config, "workerinput"):
        session.config.stash[_REDIS_KEYS_BEFORE] = _redis_keys()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests left keys in REDIS_URL's database."""
    before = session.config.stash.get(_REDIS_KEYS_BEFORE, None)
    if before is None:
        return
    left = sorted(key.decode(errors="replace") for key in _redis_keys() - before)
    if left:
        shown = ", ".join(left[:20]) + (" ..." if len(left) > 20 else "")
        sys.stderr.write(f"\nThe tests left {len(left)} keys in {REDIS_URL}: {shown}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_REDIS_KEYS_BEFORE = pytest.StashKey[set[bytes]]()


def use_cache(settings, tmp_path: Path, store: str) -> None:
    """Point Django's cache (and so the shared limits) at ``store``: ``redis`` or ``file``.

    Redis gets a fresh key prefix, the file cache a private folder: buyers' Grid IDs repeat
    between tests (factory sequences) and parallel runs share one Redis, so shared keys would
    leak tokens, slots and cooldowns from test to test.
    """
    if store == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "callgrid_portal.cache.FailOpenRedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": new_redis_prefix(),
            }
        }
    else:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(tmp_path / "cache"),
            }
        }
    settings.LIMITS_LOCK_DIR = tmp_path / "locks"


@pytest.fixture(autouse=True)
def isolated_cache(settings, tmp_path):
    """Limits start empty in every test, on Redis when REDIS_URL is set, else the file cache."""
    use_cache(settings, tmp_path, "redis" if REDIS_URL else "file")
    # Tokens the route view has checked are remembered per process; start every test afresh.
    checked_tokens.clear()


@pytest.fixture(params=["file", "redis"])
def any_store(request, settings, tmp_path):
    """Run the test once on the file cache and once on Redis (when REDIS_URL is set)."""
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("REDIS_URL is not set; the Redis store is tested where it is (CI)")
    use_cache(settings, tmp_path, request.param)
    return request.param


@pytest.fixture
def sim_buyer(db, simulator):
    """Make a buyer whose endpoint is the simulator and set how its grid answers."""

    def make(respond="accept", bid_amount="25.50", destination="13035551234", sim=None, **fields):
        buyer = BuyerFactory(endpoint_url=simulator.endpoint, **fields)
        simulator.configure(
            buyer.grid_id,
            respond=respond,
            bid_amount=bid_amount,
            destination=destination,
            **(sim or {}),
        )
        return buyer

    return make


@pytest.fixture
def broker_down():
    """Point the app at a port where no broker listens, for the length of one test."""
    from callgrid_portal.celery import app

    # The write URL: Celery lets CELERY_BROKER_URL in the environment win over broker_url.
    previous = app.conf.get("broker_write_url")
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    _celery_reset(app)
    yield
    app.conf.broker_write_url = previous
    _celery_reset(app)
