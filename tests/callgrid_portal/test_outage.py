"""Answers while a service is away: 503s, a cache and throttle that fail open, local limits."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache
from django.db import OperationalError
from django.test import RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError

from bidlog.routing import limits
from callgrid_portal import outage
from callgrid_portal.cache import cache_outage
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.integration


def _redis_cache(settings, url: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "callgrid_portal.cache.FailOpenRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "outage-test",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture
def dead_redis(settings):
    """The cache points at a loopback port where no Redis listens."""
    _redis_cache(settings, f"redis://127.0.0.1:{free_port()}/0")
    yield
    cache_outage.recovered()
    limits.redis_outage.recovered()


def _raised(exc: Exception, request):
    try:
        raise exc
    except Exception:
        return outage.server_error(request)


def test_an_outage_outside_a_view_is_a_503_page_and_an_api_503():
    factory = RequestFactory()

    page = _raised(OperationalError("server closed the connection"), factory.get("/buyers/"))
    api = _raised(RedisConnectionError("refused"), factory.get("/api/v1/buyers/"))
    other = _raised(ValueError("a bug"), factory.get("/buyers/"))

    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert b"Temporarily unavailable" in page.content
    assert b"The database is unavailable" in page.content
    assert api.status_code == 503 and api["Content-Type"] == "application/json"
    assert api["Retry-After"] == "5"
    assert b'"unavailable": "cache"' in api.content
    assert other.status_code == 500


def test_the_cause_of_an_error_names_the_part():
    try:
        try:
            raise RedisConnectionError("refused")
        except RedisConnectionError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert outage.unavailable_part(wrapped) == "cache"
    assert outage.unavailable_part(OperationalError()) == "database"
    assert outage.unavailable_part(ValueError()) is None


def test_the_cache_fails_open_with_one_warning(dead_redis, caplog):
    caplog.set_level(logging.WARNING, logger="callgrid_portal.outage")

    cache.set("a", 1)
    assert cache.get("a", "default") == "default"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.add("b", 2) is False
    assert cache.delete("a") is False

    warnings = [r for r in caplog.records if "the cache (Redis) is unreachable" in r.message]
    assert len(warnings) == 1
    assert cache_outage.down


def test_throttled_api_reads_answer_while_redis_is_away(dead_redis, viewer_api, db):
    # The API throttle keeps its history in the cache; it lets requests through meanwhile.
    for _ in range(3):
        assert viewer_api.get("/api/v1/buyers/").status_code == 200


def test_health_names_the_cache_without_the_error_text(dead_redis, api_client, db):
    response = api_client.get("/api/v1/health/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.json()
    assert "cache" in body["down"] and "database" not in body["down"]
    assert body["checks"]["cache"] == {"ok": False, "error": "unreachable"}


def test_limits_fall_back_to_the_process_and_come_back_to_redis(settings, caplog):
    caplog.set_level(logging.WARNING, logger="callgrid_portal.outage")
    settings.REDIS_RETRY_SECONDS = 0
    server = RedisServer()
    server.start()
    try:
        _redis_cache(settings, server.url(0))
        grid = "outagegrid00000000000001"
        request = limits.AdmissionRequest(grid_id=grid, max_concurrency=5, per_minute=60)
        [admitted] = limits.admit(requests=[request])
        assert admitted.admitted and limits.limits_store_kind() == "redis"
        limits.concurrency_release(admitted.lease)  # type: ignore[arg-type]

        server.stop()
        local = limits.admit(requests=[request] * 3)
        assert all(a.admitted for a in local)
        assert limits.limits_store_kind() == "local"
        # The local limiter counts: its slots are held until given back.
        assert limits.concurrency_in_flight(grid_id=grid) == 3
        limits.concurrency_release_many(a.lease for a in local if a.lease)
        assert limits.concurrency_in_flight(grid_id=grid) == 0
        # The local bucket holds the same burst, and refuses past it.
        burst = limits.bucket_shape(60)[0]
        taken = [
            limits.rate_limit_take(grid_id="outagelocal000000000001", per_minute=60, now=1e6)
            for _ in range(int(burst) + 1)
        ]
        assert [t.allowed for t in taken].count(True) == burst

        server.start()
        [back] = limits.admit(requests=[request])

        assert back.admitted and limits.limits_store_kind() == "redis"
        assert limits.concurrency_in_flight(grid_id=grid) == 1  # read from Redis again
        warned = [r for r in caplog.records if "shared limits is unreachable" in r.message]
        assert len(warned) == 1
    finally:
        limits.redis_outage.recovered()
        cache_outage.recovered()
        server.destroy()
