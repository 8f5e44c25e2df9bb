"""Eligibility on the buyer's clock: hours across zones and DST, caps at local midnight."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bidlog.choices import Outcome
from bidlog.routing import limits
from bidlog.routing.eligibility import eligibility_check, local_month_bounds
from buyers.hours import hours_next_open, hours_open
from tests.factories import BuyerFactory, CallFactory

CALLER = "3035551234"
OTHER_CALLER = "7205550100"  # never paid out, so only caps can block it
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
OFFICE = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def blocks(buyer, *, now, caller_id=CALLER, state_code=""):
    """The blocks between ``caller_id`` and ``buyer`` at ``now``."""
    (answer,) = eligibility_check(
        buyers=[buyer], caller_id=caller_id, state_code=state_code, now=now
    )
    return answer.blocks


# --- operating hours ----------------------------------------------------------------------


def test_empty_hours_are_always_open():
    assert hours_open(hours={}, tz=NEW_YORK, now=at(2026, 1, 4, 3, 0))


def test_hours_use_the_buyers_weekday_across_the_utc_date_line():
    hours = {"mon": [["20:00", "24:00"]]}
    # 05:30 UTC on Tuesday is still Monday 21:30 in Los Angeles (UTC-8 in January), but
    # already Tuesday 00:30 in New York (UTC-5).
    tuesday_utc = at(2026, 1, 6, 5, 30)

    assert hours_open(hours=hours, tz=LOS_ANGELES, now=tuesday_utc)
    assert not hours_open(hours=hours, tz=NEW_YORK, now=tuesday_utc)
    assert hours_open(hours=hours, tz=NEW_YORK, now=at(2026, 1, 6, 4, 59))  # Mon 23:59


def test_window_end_is_exclusive_and_24_00_runs_to_midnight():
    hours = {"mon": [["09:00", "17:00"], ["22:00", "24:00"]]}
    monday = datetime(2026, 1, 5, tzinfo=NEW_YORK)

    assert hours_open(hours=hours, tz=NEW_YORK, now=monday.replace(hour=16, minute=59))
    assert not hours_open(hours=hours, tz=NEW_YORK, now=monday.replace(hour=17))
    assert hours_open(hours=hours, tz=NEW_YORK, now=monday.replace(hour=23, minute=59))


def test_hours_follow_the_daylight_saving_change():
    hours = {"sun": [["09:00", "17:00"]]}
    # 13:30 UTC is 08:30 EST on the Sunday before the change...
    assert not hours_open(hours=hours, tz=NEW_YORK, now=at(2026, 3, 1, 13, 30))
    # ...and 09:30 EDT on 8 March 2026, the day clocks spring forward.
    assert hours_open(hours=hours, tz=NEW_YORK, now=at(2026, 3, 8, 13, 30))
    # In the autumn it goes the other way: 13:30 UTC is 09:30 EDT, then 08:30 EST.
    assert hours_open(hours=hours, tz=NEW_YORK, now=at(2026, 10, 25, 13, 30))
    assert not hours_open(hours=hours, tz=NEW_YORK, now=at(2026, 11, 1, 13, 30))


def test_next_opening_is_in_utc_with_the_offset_of_that_day():
    hours = {"sun": [["09:00", "17:00"]]}
    # Saturday 7 March 2026 (EST); Sunday's 09:00 is already EDT: 13:00 UTC, not 14:00.
    assert hours_next_open(hours=hours, tz=NEW_YORK, now=at(2026, 3, 7, 12, 0)) == at(
        2026, 3, 8, 13, 0
    )
    assert hours_next_open(hours={"mon": []}, tz=NEW_YORK, now=at(2026, 3, 7, 12, 0)) is None


def test_closed_buyer_is_blocked_with_its_next_opening(db):
    buyer = BuyerFactory(timezone="America/New_York", operating_hours=OFFICE)
    friday_evening = at(2026, 1, 9, 23, 0)  # 18:00 EST

    (block,) = blocks(buyer, now=friday_evening)

    assert block.outcome == Outcome.SKIPPED_HOURS
    assert block.until == at(2026, 1, 12, 14, 0)  # Monday 09:00 EST
    assert "opens 2026-01-12 14:00 UTC" in block.reason
    assert "Fri 18:00 in America/New_York" in block.reason


# --- caps ---------------------------------------------------------------------------------


def test_daily_cap_reached_at_2359_local_opens_again_at_midnight(db):
    buyer = BuyerFactory(timezone="America/Denver", daily_cap=2)
    denver = ZoneInfo("America/Denver")
    evening = datetime(2026, 6, 10, 23, 59, tzinfo=denver)
    CallFactory(winner=buyer, routed=True, created_at=evening - timedelta(hours=20))
    CallFactory(winner=buyer, routed=True, created_at=evening - timedelta(minutes=1))
    # Not counted: unrouted calls and yesterday's calls.
    CallFactory(winner=None, routed=False, created_at=evening)
    CallFactory(winner=buyer, routed=True, created_at=evening - timedelta(days=1))

    (block,) = blocks(buyer, now=evening, caller_id=OTHER_CALLER)
    midnight = datetime(2026, 6, 11, 0, 0, tzinfo=denver)

    assert block.outcome == Outcome.SKIPPED_CAP
    assert block.until == midnight
    assert "daily cap of 2" in block.reason
    assert blocks(buyer, now=midnight, caller_id=OTHER_CALLER) == []


def test_daily_cap_counts_calls_not_paid_out(db):
    buyer = BuyerFactory(daily_cap=1)
    CallFactory(winner=buyer, routed=True, paid_out=False)

    (block,) = blocks(buyer, now=datetime.now(UTC), caller_id=OTHER_CALLER)

    assert block.outcome == Outcome.SKIPPED_CAP


def test_monthly_cap_resets_on_the_first_of_the_buyers_month(db):
    buyer = BuyerFactory(timezone="America/Los_Angeles", monthly_cap=3)
    # 31 January 23:30 in Los Angeles is already 1 February in UTC.
    late = datetime(2026, 1, 31, 23, 30, tzinfo=LOS_ANGELES)
    for day in (2, 15, 31):
        CallFactory(
            winner=buyer, routed=True, created_at=datetime(2026, 1, day, 12, tzinfo=LOS_ANGELES)
        )

    (block,) = blocks(buyer, now=late, caller_id=OTHER_CALLER)

    assert block.outcome == Outcome.SKIPPED_CAP
    assert block.until == datetime(2026, 2, 1, 0, 0, tzinfo=LOS_ANGELES)
    assert blocks(buyer, now=late + timedelta(minutes=30), caller_id=OTHER_CALLER) == []


def test_month_bounds_span_a_daylight_saving_change():
    start, end = local_month_bounds(tz=NEW_YORK, now=at(2026, 3, 15, 12, 0))

    assert start == at(2026, 3, 1, 5, 0)  # EST midnight
    assert end == at(2026, 4, 1, 4, 0)  # EDT midnight


# --- duplicate window and the rest --------------------------------------------------------


def test_duplicate_window_says_until_when(db):
    buyer = BuyerFactory(vertical="insurance", duplicate_window_days=30)
    paid = at(2026, 11, 21, 14, 3)
    CallFactory(winner=buyer, routed=True, caller_id=CALLER, created_at=paid)

    (block,) = blocks(buyer, now=paid + timedelta(days=3))

    assert block.outcome == Outcome.SKIPPED_DUPLICATE
    assert block.until == at(2026, 12, 21, 14, 3)
    assert "duplicate window (30 days) until 2026-12-21 14:03 UTC" in block.reason
    assert blocks(buyer, now=paid + timedelta(days=30)) == []


def test_duplicate_window_ignores_calls_not_paid_out_and_other_callers(db):
    buyer = BuyerFactory(duplicate_window_days=30)
    CallFactory(winner=buyer, routed=True, caller_id=CALLER, paid_out=False)
    CallFactory(winner=buyer, routed=True, caller_id="7205550100")

    assert blocks(buyer, now=datetime.now(UTC)) == []


def test_every_block_is_listed_in_order(db):
    buyer = BuyerFactory(
        status="paused",
        accepted_states=["TX"],
        operating_hours={"sun": [["09:00", "10:00"]]},
        daily_cap=1,
        capacity_cooldown_seconds=60,
    )
    now = datetime.now(UTC)
    # At ``now`` itself: an hour earlier may fall on the buyer's previous day, uncapped.
    CallFactory(winner=buyer, routed=True, caller_id=CALLER, created_at=now)
    limits.cooldown_start(grid_id=buyer.grid_id, seconds=60)

    found = [b.outcome for b in blocks(buyer, now=now, state_code="CO")]

    expected = [Outcome.SKIPPED_STATUS, Outcome.SKIPPED_STATE]
    if not hours_open(hours=buyer.operating_hours, tz=ZoneInfo(buyer.timezone), now=now):
        expected.append(Outcome.SKIPPED_HOURS)
    expected += [Outcome.SKIPPED_CAP, Outcome.SKIPPED_DUPLICATE, Outcome.SKIPPED_COOLDOWN]
    assert found == expected


def test_limits_are_only_peeked_at(db):
    buyer = BuyerFactory(rate_limit_per_minute=1, max_concurrency=1)
    for _ in range(2):  # the burst of twice the rate
        limits.rate_limit_take(grid_id=buyer.grid_id, per_minute=1)
    limits.concurrency_acquire(grid_id=buyer.grid_id, limit=1)

    (answer,) = eligibility_check(buyers=[buyer], caller_id=CALLER, include_limits=True)

    assert [b.outcome for b in answer.blocks] == [
        Outcome.SKIPPED_RATE_LIMIT,
        Outcome.SKIPPED_CONCURRENCY,
    ]
    assert limits.concurrency_in_flight(grid_id=buyer.grid_id) == 1


@pytest.mark.parametrize("state_code", ["", "CO"])
def test_state_filter_refuses_calls_outside_the_list_or_without_a_state(db, state_code):
    buyer = BuyerFactory(accepted_states=["TX"])

    (block,) = blocks(buyer, now=datetime.now(UTC), state_code=state_code)

    assert block.outcome == Outcome.SKIPPED_STATE
