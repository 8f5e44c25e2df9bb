"""Redis stopped and restarted under load: no 500, limits fall back and come back by themselves.

The portal runs under gunicorn with a ``redis-server`` of the test's own as its cache (the
API throttle lives there) and as the store of the per-grid limits. While threads route calls,
read the API and open a page, Redis is stopped and started again (empty: no persistence).
Every answer must be a normal one or a 503; routes keep being decided on the process-local
limiter, the throttle and cache fail open with one warning per process, and once Redis is
back the limits are kept in Redis again without any restart.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis
import requests

from tests.servers import (
    Portal,
    PostgresCluster,
    RedisServer,
    portal_env,
    route,
    seed_portal,
    signed_in,
    started_portal,
)

pytestmark = pytest.mark.integration

GRID = "faultsredis0000000000001"
THREADS = 3
REQUESTS = 240
PATIENCE = 120.0


@dataclass
class MixedLoad:
    """Routes, API reads and pages sent by a few threads, and every answer they got.

    Each answer is (kind, status, content type, whether Redis was down from before the
    request was sent until after its answer came).
    """

    portal: Portal
    token: str
    cookies: requests.cookies.RequestsCookieJar
    answers: list[tuple[str, int, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    down: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        return threads

    def _work(self) -> None:
        session = requests.Session()
        session.cookies.update(self.cookies)
        while not self.stop.is_set():
            with self.lock:
                if self.sent >= REQUESTS:
                    return
                self.sent += 1
                n = self.sent
            was_down = self.down.is_set()
            kind, response = self._send(session, n)
            with self.lock:
                self.answers.append(
                    (
                        kind,
                        response.status_code,
                        response.headers.get("Content-Type", ""),
                        was_down and self.down.is_set(),
                    )
                )

    def _send(self, session: requests.Session, n: int) -> tuple[str, requests.Response]:
        """A route, an API read or a page, in turn."""
        if n % 3 == 0:
            caller = f"720{random.randint(2000000, 9999999)}"
            return "route", route(session, self.portal, self.token, caller)
        if n % 3 == 1:
            api = {"Authorization": f"Token {self.token}"}
            url = f"{self.portal.url}/api/v1/buyers/"
            return "api", session.get(url, headers=api, timeout=60)
        return "page", session.get(f"{self.portal.url}/buyers/", timeout=60)

    def wait_for(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while not condition():
            if time.monotonic() > deadline:
                self.stop.set()
                raise AssertionError(f"load stalled at {len(self.answers)} answers")
            time.sleep(0.02)


def _rate_key_in_redis(store: redis.Redis) -> bool:
    return bool(store.keys(f"faults:*limits:rate:{GRID}"))


def _assert_answers_through_the_outage(answers: list[tuple[str, int, str, bool]], log: str) -> None:
    statuses = {status for _, status, _, _ in answers}
    assert statuses <= {200, 503}, (statuses, log[-3000:])
    assert all(
        content.startswith("application/json")
        for kind, status, content, _ in answers
        if status == 503 and kind != "page"
    )
    during = [(kind, status) for kind, status, _, was_down in answers if was_down]
    # While Redis was away, calls were still routed (on the process-local limiter), and the
    # throttled API and the pages still answered: nothing there needs Redis to work.
    assert ("route", 200) in during
    assert ("api", 200) in during
    assert ("page", 200) in during
    assert {status for _, status in during} == {200}

    # One warning per outage and process (two gunicorn workers), not one per request.
    assert 1 <= log.count("the cache (Redis) is unreachable") <= 2, log[-3000:]
    assert 1 <= log.count("Redis for the shared limits is unreachable") <= 2, log[-3000:]


def test_redis_stopped_and_restarted_under_load(
    pg_cluster: PostgresCluster, redis_server: RedisServer, simulator, tmp_path
):
    database = f"faults_{uuid.uuid4().hex[:8]}"
    env = portal_env(
        {
            "CACHE_URL": redis_server.url(0),
            "REDIS_URL": redis_server.url(0),
            "CACHE_KEY_PREFIX": "faults",
            # Redis is tried again this long after a failure (the default is 2 s).
            "REDIS_RETRY_SECONDS": "0.3",
        },
        tmp_path / "data",
    )
    env["DATABASE_URL"] = pg_cluster.migrated_database(database, env)
    simulator.configure(GRID, respond="accept", bid_amount="12.00", latency_ms=20)
    token = seed_portal(
        env,
        [
            {
                "name": "Accepts",
                "grid_id": GRID,
                "priority": 1,
                "endpoint_url": simulator.endpoint,
                "rate_limit_per_minute": 100000,
            }
        ],
    )
    store = redis.Redis.from_url(redis_server.url(0))

    with started_portal(env, tmp_path / "gunicorn.log") as portal:
        load = MixedLoad(portal, token, signed_in(portal).cookies)
        threads = load.run()
        try:
            load.wait_for(lambda: len(load.answers) >= 30)
            assert _rate_key_in_redis(store)
            redis_server.stop()
            load.down.set()
            stopped_at = len(load.answers)
            health = requests.get(f"{portal.url}/api/v1/health/", timeout=60)
            load.wait_for(lambda: len(load.answers) >= stopped_at + 90)
            load.down.clear()
            redis_server.start()
            store = redis.Redis.from_url(redis_server.url(0))
        finally:
            for thread in threads:
                thread.join(timeout=PATIENCE)
            load.stop.set()
        # The load may have reached the new Redis already; start from an empty one so the key
        # seen next is certainly written after the outage.
        store.flushdb()
        assert not _rate_key_in_redis(store)

        # Back by themselves: the next routes keep the grid's bucket in Redis again.
        session = requests.Session()
        deadline = time.monotonic() + PATIENCE
        while not _rate_key_in_redis(store) and time.monotonic() < deadline:
            assert route(session, portal, token, "3035550188").status_code == 200
            time.sleep(0.05)
        assert _rate_key_in_redis(store)
        log = portal.log_text()

    _assert_answers_through_the_outage(load.answers, log)

    # The readiness probe names the part that was down, without the exception's text.
    assert health.status_code == 503
    assert health.json()["down"] == ["cache"]
    assert health.json()["checks"]["cache"] == {"ok": False, "error": "unreachable"}
    assert str(redis_server.port) not in health.text

    # Every route decided while Redis was away is in the log.
    [[calls]] = pg_cluster.execute("SELECT count(*) FROM bidlog_call WHERE routed", database)
    assert calls == len(simulator.requests(GRID))
