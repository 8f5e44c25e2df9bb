"""Per-grid limits on both stores: the file cache (embedded default) and Redis (fleet)."""

import uuid

import pytest

from bidlog.routing import limits


@pytest.fixture
def grid_id() -> str:
    return uuid.uuid4().hex[:24]


def test_bucket_shape_holds_the_burst_of_twice_the_rate():
    # The Bid API's burst allowance: "2x rate for short periods", refilled at the rate.
    assert limits.bucket_shape(120) == (240.0, 2.0)


def test_rate_limit_allows_a_burst_of_twice_the_rate_then_refuses(any_store, grid_id):
    now = 1_000_000.0
    taken = [
        limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now).allowed for _ in range(22)
    ]

    assert taken == [True] * 20 + [False, False]
    refused = limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now)
    assert refused.retry_after == pytest.approx(6.0)


def test_rate_limit_refills_at_the_sustained_rate(any_store, grid_id):
    now = 1_000_000.0
    for _ in range(20):
        limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now)

    # 10 per minute refills one token every 6 seconds.
    assert not limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now + 5.9).allowed
    assert limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now + 6.0).allowed
    assert not limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now + 6.1).allowed


def test_rate_limit_keeps_the_rate_on_average_after_the_burst(any_store, grid_id):
    start = 1_000_000.0
    allowed = 0
    # Hammer the grid every second for ten minutes.
    for step in range(600):
        decision = limits.rate_limit_take(grid_id=grid_id, per_minute=30, now=start + step)
        allowed += decision.allowed

    # The burst of 60, then 0.5 per second for 599 s: the rate, plus one burst, never more.
    assert 358 <= allowed <= 360


def test_rate_limit_headroom_refuses_monitoring_before_live_traffic(any_store, grid_id):
    now = 1_000_000.0
    for _ in range(18):
        limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now)

    health = limits.rate_limit_take(grid_id=grid_id, per_minute=10, headroom=2, now=now)
    live = limits.rate_limit_take(grid_id=grid_id, per_minute=10, now=now)

    assert not health.allowed
    assert live.allowed


def test_rate_limit_peek_takes_nothing(any_store, grid_id):
    now = 1_000_000.0
    for _ in range(3):
        assert limits.rate_limit_peek(grid_id=grid_id, per_minute=1, now=now).allowed

    assert limits.rate_limit_take(grid_id=grid_id, per_minute=1, now=now).allowed
    assert limits.rate_limit_take(grid_id=grid_id, per_minute=1, now=now).allowed
    peek = limits.rate_limit_peek(grid_id=grid_id, per_minute=1, now=now)
    assert not peek.allowed
    assert peek.retry_after == pytest.approx(60.0)


def test_concurrency_cap_refuses_beyond_limit_and_release_frees_a_slot(any_store, grid_id):
    held = [limits.concurrency_acquire(grid_id=grid_id, limit=3) for _ in range(3)]

    assert all(held)
    assert limits.concurrency_acquire(grid_id=grid_id, limit=3) is None
    assert limits.concurrency_in_flight(grid_id=grid_id) == 3

    limits.concurrency_release(held[0])
    limits.concurrency_release(held[0])  # twice is harmless

    assert limits.concurrency_in_flight(grid_id=grid_id) == 2
    assert limits.concurrency_acquire(grid_id=grid_id, limit=3) is not None


def test_concurrency_slot_is_released_when_the_request_fails(any_store, grid_id):
    with (
        pytest.raises(RuntimeError),
        limits.concurrency_slot(grid_id=grid_id, limit=1) as lease,
    ):
        assert lease is not None
        assert limits.concurrency_in_flight(grid_id=grid_id) == 1
        raise RuntimeError("buyer exploded")

    assert limits.concurrency_in_flight(grid_id=grid_id) == 0
    assert limits.concurrency_acquire(grid_id=grid_id, limit=1) is not None


def test_concurrency_lease_of_a_dead_process_expires_alone(any_store, grid_id):
    # A lease nobody releases (its process died) frees only its own slot when it expires.
    limits.concurrency_acquire(grid_id=grid_id, limit=2, ttl_seconds=0.2)
    survivor = limits.concurrency_acquire(grid_id=grid_id, limit=2, ttl_seconds=60)
    assert limits.concurrency_acquire(grid_id=grid_id, limit=2) is None

    import time

    time.sleep(0.3)

    assert limits.concurrency_in_flight(grid_id=grid_id) == 1
    assert limits.concurrency_acquire(grid_id=grid_id, limit=2) is not None
    assert survivor is not None


def test_cooldown_lasts_its_seconds_and_zero_turns_it_off(any_store, grid_id):
    now = 2_000_000_000.0
    limits.cooldown_start(grid_id=grid_id, seconds=0, now=now)
    assert limits.cooldown_until(grid_id=grid_id, now=now) is None

    limits.cooldown_start(grid_id=grid_id, seconds=90, now=now)

    until = limits.cooldown_until(grid_id=grid_id, now=now + 10)
    assert until is not None
    assert until.timestamp() == pytest.approx(now + 90)
    assert limits.cooldown_until(grid_id=grid_id, now=now + 90) is None


def test_limits_reset_forgets_bucket_slots_and_cooldown(any_store, grid_id):
    limits.rate_limit_take(grid_id=grid_id, per_minute=1)
    limits.concurrency_acquire(grid_id=grid_id, limit=1)
    limits.cooldown_start(grid_id=grid_id, seconds=60)

    limits.limits_reset(grid_id=grid_id)

    assert limits.rate_limit_take(grid_id=grid_id, per_minute=1).allowed
    assert limits.concurrency_in_flight(grid_id=grid_id) == 0
    assert limits.cooldown_until(grid_id=grid_id) is None
