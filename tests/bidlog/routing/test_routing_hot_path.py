"""The live path of a route stays lean: a fixed number of queries, whatever the buyer count.

These guard the work done for the benchmark targets of issue 3 (benchmarks/route.py): a
regression that adds a query per buyer, or a query per request, fails here long before anyone
reruns the benchmark.
"""

import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing.eligibility import (
    buyers_with_last_paid,
    cap_block,
    cap_counts,
    eligible_buyers_sql,
)
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from tests.factories import BuyerFactory, CallFactory

CALLER = "3035551234"


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


def test_auction_reads_buyers_and_duplicate_windows_in_one_query_for_any_buyer_count(
    sim_buyer,
):
    for priority in range(1, 4):
        sim_buyer(priority=priority, duplicate_window_days=30)
    with CaptureQueriesContext(connection) as three:
        call_route(caller_id=CALLER, strategy="highest_bid")
    for priority in range(4, 11):
        sim_buyer(priority=priority, duplicate_window_days=30)
    with CaptureQueriesContext(connection) as ten:
        call = call_route(caller_id="3035551235", strategy="highest_bid")

    assert BidLog.objects.filter(call=call).count() == 10
    assert len(ten.captured_queries) == len(three.captured_queries)
    reads = [sql for sql in _statements(ten) if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads
    assert "bidlog_call" in reads[0]  # the duplicate window rides along with the buyers


def test_caps_of_every_capped_buyer_are_counted_in_one_query(db):
    # A fixed instant well inside the day in both zones: five minutes earlier is the same
    # local day in Los Angeles and in Tokyo whenever the suite runs.
    now = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
    daily = BuyerFactory(daily_cap=2, timezone="America/Los_Angeles")
    monthly = BuyerFactory(monthly_cap=3, timezone="Asia/Tokyo")
    uncapped = BuyerFactory()
    for _ in range(2):
        CallFactory(winner=daily, routed=True, created_at=now - timedelta(minutes=5))
    CallFactory(winner=monthly, routed=True, created_at=now - timedelta(minutes=5))
    CallFactory(winner=monthly, routed=False, created_at=now - timedelta(minutes=5))

    with CaptureQueriesContext(connection) as queries:
        counts = cap_counts(buyers=[daily, monthly, uncapped], now=now)

    assert len(queries.captured_queries) == 1
    assert counts == {daily.pk: (2, 2), monthly.pk: (1, 1)}
    block = cap_block(buyer=daily, now=now, counts=counts[daily.pk])
    assert block is not None and block.outcome == Outcome.SKIPPED_CAP
    assert cap_block(buyer=monthly, now=now, counts=counts[monthly.pk]) is None


@pytest.mark.django_db(transaction=True)
def test_asynchronous_commit_setting_applies_to_the_routing_transaction_only(sim_buyer, settings):
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting; SQLite ignores it")
    sim_buyer()
    settings.ROUTING_SYNCHRONOUS_COMMIT = False
    with CaptureQueriesContext(connection) as relaxed:
        call = call_route(caller_id=CALLER, strategy="highest_bid")
    settings.ROUTING_SYNCHRONOUS_COMMIT = True
    with CaptureQueriesContext(connection) as strict:
        call_route(caller_id="3035551235", strategy="highest_bid")

    assert any("SET LOCAL synchronous_commit TO OFF" in sql for sql in _statements(relaxed))
    assert not any("synchronous_commit" in sql for sql in _statements(strict))
    assert Call.objects.filter(pk=call.pk, routed=True).exists()
    with connection.cursor() as cursor:  # SET LOCAL ended with the transaction
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def _route(api_client, token: str):
    return api_client.post(
        "/api/v1/route/",
        {"CallerId": CALLER, "strategy": "highest_bid"},
        format="json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )


def test_route_api_with_a_token_does_not_sweep_the_users_other_tokens(api_client, bob, sim_buyer):
    sim_buyer()
    _, token = AuthToken.objects.create(bob)
    stale, _ = AuthToken.objects.create(bob, expiry=timedelta(days=1))
    AuthToken.objects.filter(pk=stale.pk).update(expiry=timezone.now() - timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        response = _route(api_client, token)

    assert response.status_code == 200, response.content
    token_reads = [sql for sql in _statements(queries) if "knox_authtoken" in sql]
    assert len(token_reads) == 1, token_reads
    # Housekeeping is left to the other API requests, which still do it.
    assert AuthToken.objects.filter(pk=stale.pk).exists()


def test_route_api_refuses_and_deletes_an_expired_token(api_client, bob, sim_buyer, simulator):
    buyer = sim_buyer()
    instance, token = AuthToken.objects.create(bob, expiry=timedelta(days=1))
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    response = _route(api_client, token)

    assert response.status_code == 401
    assert not AuthToken.objects.filter(pk=instance.pk).exists()
    assert simulator.requests(buyer.grid_id) == []


def test_buyers_with_last_paid_binds_new_values_into_one_statement_per_shape(db):
    first, second = BuyerFactory(priority=1), BuyerFactory(priority=2)
    now = timezone.now()
    a, b = "3035551234", "7205550100"
    CallFactory(winner=first, routed=True, caller_id=a, created_at=now - timedelta(days=3))
    CallFactory(winner=second, routed=True, caller_id=a, created_at=now - timedelta(days=1))
    CallFactory(winner=second, routed=True, caller_id=b, created_at=now - timedelta(days=2))
    CallFactory(  # marked not paid out: does not count
        winner=first, routed=True, paid_out=False, caller_id=b, created_at=now - timedelta(hours=1)
    )

    def last_paid(caller: str, at: datetime, ids=None) -> dict[int, datetime | None]:
        rows = buyers_with_last_paid(buyer_ids=ids, caller_id=caller, now=at)
        return {buyer.pk: buyer.last_paid_at for buyer in rows}  # type: ignore[attr-defined]

    assert last_paid(a, now) == {
        first.pk: now - timedelta(days=3),
        second.pk: now - timedelta(days=1),
    }
    assert last_paid(b, now) == {first.pk: None, second.pk: now - timedelta(days=2)}
    # The clock is bound too: two days ago, caller a's latest call with the second buyer
    # had not happened yet.
    assert last_paid(a, now - timedelta(days=2)) == {
        first.pk: now - timedelta(days=3),
        second.pk: None,
    }
    assert last_paid(a, now, ids=[second.pk]) == {second.pk: now - timedelta(days=1)}
    assert last_paid(a, now, ids=[]) == {}
    assert all(value is None or value.tzinfo is not None for value in last_paid(a, now).values())
    # Only the parameters change with the caller and the clock: the text, which PostgreSQL
    # prepares, is one per number of buyers asked for.
    texts = {
        eligible_buyers_sql(buyer_ids=ids, caller_id=caller, now=at)[0]
        for caller, at, ids in [(a, now, None), (b, now - timedelta(days=2), None)]
    }
    assert len(texts) == 1
    one, two = (
        eligible_buyers_sql(buyer_ids=ids, caller_id=a, now=now)[0]
        for ids in ([first.pk], [second.pk])
    )
    assert one == two != texts.pop()


def test_buyers_read_for_routing_equal_the_orms_field_for_field(db):
    BuyerFactory(
        priority=1,
        accepted_states=["CO", "TX"],
        extra_params={"PublisherId": "pub1", "nested": {"ü": [1, 2.5, None]}},
        operating_hours={"mon": [["09:00", "17:00"]]},
        min_bid="12.34",
        daily_cap=5,
        auto_pause=False,
        next_health_check_at=timezone.now() + timedelta(minutes=5),
    )
    BuyerFactory(priority=2, accepted_states=[], extra_params={}, monthly_cap=None)

    now = timezone.now()
    fast = buyers_with_last_paid(buyer_ids=None, caller_id="3035551234", now=now)
    orm = list(Buyer.objects.order_by("priority", "name", "pk"))
    # The same statement read through Django's raw queries, as other backends do.
    raw = list(Buyer.objects.raw(*eligible_buyers_sql(buyer_ids=None, caller_id=CALLER, now=now)))

    def fields(buyer):
        return {f.attname: getattr(buyer, f.attname) for f in Buyer._meta.concrete_fields}

    def types(buyer):
        return {name: type(value) for name, value in fields(buyer).items()}

    assert [fields(b) for b in fast] == [fields(b) for b in orm] == [fields(b) for b in raw]
    assert [types(b) for b in fast] == [types(b) for b in orm]
    assert not fast[0]._state.adding and fast[0]._state.db == "default"
    assert fast[0].accepted_states == ["CO", "TX"]
    assert fast[0].extra_params["nested"] == {"ü": [1, 2.5, None]}


def _token_reads(queries: CaptureQueriesContext) -> list[str]:
    return [sql for sql in _statements(queries) if "knox_authtoken" in sql]


def test_route_trusts_a_token_it_has_just_checked_and_drops_it_when_revoked(
    api_client, bob, sim_buyer, settings
):
    settings.ROUTE_TOKEN_CACHE_SECONDS = 0.3
    sim_buyer()
    instance, token = AuthToken.objects.create(bob)
    assert _route(api_client, token).status_code == 200

    with CaptureQueriesContext(connection) as again:
        assert _route(api_client, token).status_code == 200
    assert _token_reads(again) == []
    # The operator's role came with the cached user: no group query either.
    assert not [sql for sql in _statements(again) if "auth_group" in sql]

    instance.delete()  # revoked: trusted no longer than the window
    time.sleep(0.35)
    assert _route(api_client, token).status_code == 401


def test_route_refuses_a_cached_token_the_moment_it_expires(api_client, bob, sim_buyer, settings):
    # A window long enough that only the expiry check can refuse the remembered token; the
    # wall clock moves past the expiry, the monotonic clock the cache ages by does not.
    settings.ROUTE_TOKEN_CACHE_SECONDS = 600
    sim_buyer()
    _, token = AuthToken.objects.create(bob, expiry=timedelta(minutes=5))
    assert _route(api_client, token).status_code == 200
    later = timezone.now() + timedelta(minutes=6)

    with mock.patch("django.utils.timezone.now", autospec=True, return_value=later):
        response = _route(api_client, token)

    assert response.status_code == 401


def test_route_token_cache_off_checks_every_route(api_client, bob, sim_buyer, settings):
    settings.ROUTE_TOKEN_CACHE_SECONDS = 0
    sim_buyer()
    _, token = AuthToken.objects.create(bob)
    _route(api_client, token)

    with CaptureQueriesContext(connection) as again:
        assert _route(api_client, token).status_code == 200

    assert len(_token_reads(again)) == 1
