"""Recording bid attempts and local skips in the bid log."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog, Call
from bidlog.routing.call_write import StartedBidRow, bid_rows_prepare, call_with_bids_create
from bidlog.routing.record import (
    ATTEMPT_FIELDS,
    bid_attempts_record,
    bid_from_attempt,
    bid_skip_record,
)
from bidlog.routing.send import bid_send
from callgrid_portal.bidapi.client import BidAttempt, BidResult
from tests.factories import BuyerFactory, CallFactory

pytestmark = pytest.mark.django_db

STARTED = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def _system_error_then_accept() -> BidResult:
    first = BidAttempt(
        attempt=1,
        outcome=Outcome.SYSTEM_ERROR,
        started_at=STARTED,
        request={"CallerId": "3035551234", "InboundStateCode": "CO", "PublisherId": "pub1"},
        caller_id="3035551234",
        state_code="CO",
        http_status=500,
        code=5000,
        message="System error",
        duration_ms=42,
        error="",
    )
    second = BidAttempt(
        attempt=2,
        outcome=Outcome.ACCEPTED,
        started_at=STARTED + timedelta(milliseconds=300),
        request={"CallerId": "3035551234", "InboundStateCode": "CO", "PublisherId": "pub1"},
        caller_id="3035551234",
        state_code="CO",
        http_status=200,
        code=1000,
        message="Bid accepted",
        bid_amount=Decimal("25.50"),
        destination="13035559876",
        response_caller_id="3035551234",
        duration_ms=118,
    )
    return BidResult(attempts=[first, second])


def test_bid_attempts_record_writes_one_row_per_attempt_with_every_field():
    buyer = BuyerFactory()
    call = CallFactory()

    bids = bid_attempts_record(
        buyer=buyer, result=_system_error_then_accept(), source=Source.LIVE, call=call
    )

    assert [bid.attempt for bid in bids] == [1, 2]
    assert BidLog.objects.count() == 2
    first, second = BidLog.objects.order_by("attempt")
    assert first.buyer == buyer and first.call == call and first.source == Source.LIVE
    assert first.created_at == STARTED
    assert (first.http_status, first.code, first.outcome) == (500, 5000, Outcome.SYSTEM_ERROR)
    assert first.message == "System error"
    assert first.bid_amount is None
    assert first.duration_ms == 42
    assert second.created_at == STARTED + timedelta(milliseconds=300)
    assert second.caller_id == "3035551234"
    assert second.state_code == "CO"
    assert second.request == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "pub1",
    }
    assert (second.http_status, second.code, second.outcome) == (200, 1000, Outcome.ACCEPTED)
    assert second.bid_amount == Decimal("25.50")
    assert isinstance(second.bid_amount, Decimal)
    assert second.destination == "13035559876"
    assert second.response_caller_id == "3035551234"
    assert second.duration_ms == 118
    assert second.error == "" and second.raw_response == ""


def test_bid_attempts_record_keeps_error_and_raw_response_of_a_bad_answer():
    buyer = BuyerFactory()
    attempt = BidAttempt(
        attempt=1,
        outcome=Outcome.BAD_RESPONSE,
        started_at=STARTED,
        request={"CallerId": "3035551234"},
        caller_id="3035551234",
        http_status=200,
        duration_ms=15,
        error="response is not JSON",
        raw_response="<html>Bad gateway</html>",
    )

    [bid] = bid_attempts_record(buyer=buyer, result=BidResult([attempt]), source=Source.HEALTH)

    bid.refresh_from_db()
    assert bid.outcome == Outcome.BAD_RESPONSE
    assert bid.source == Source.HEALTH
    assert bid.error == "response is not JSON"
    assert bid.raw_response == "<html>Bad gateway</html>"
    assert bid.code is None


def test_bid_attempts_record_logs_local_4003_refusal_without_http_status():
    buyer = BuyerFactory()
    attempt = BidAttempt(
        attempt=1,
        outcome=Outcome.INVALID_CALLER_ID,
        started_at=STARTED,
        caller_id="",
        code=4003,
        error="caller ID must have 10 digits (or 1 + 10 digits), got 9",
    )

    [bid] = bid_attempts_record(buyer=buyer, result=BidResult([attempt]), source=Source.TEST)

    bid.refresh_from_db()
    assert (bid.code, bid.http_status, bid.outcome) == (4003, None, Outcome.INVALID_CALLER_ID)
    assert bid.caller_id == ""
    assert "got 9" in bid.error


def test_bid_attempts_record_normalizes_caller_id_and_rounds_amount_to_cents():
    buyer = BuyerFactory()
    attempt = BidAttempt(
        attempt=1,
        outcome=Outcome.ACCEPTED,
        started_at=STARTED,
        caller_id="+1 (303) 555-1234",
        code=1000,
        http_status=200,
        bid_amount=Decimal("12.345"),
    )

    [bid] = bid_attempts_record(buyer=buyer, result=BidResult([attempt]), source=Source.LIVE)

    bid.refresh_from_db()
    assert bid.caller_id == "3035551234"
    assert bid.bid_amount == Decimal("12.35")


def test_bid_attempts_record_drops_an_amount_the_column_cannot_hold_and_says_why():
    buyer = BuyerFactory()
    attempt = BidAttempt(
        attempt=1,
        outcome=Outcome.ACCEPTED,
        started_at=STARTED,
        caller_id="3035551234",
        code=1000,
        http_status=200,
        bid_amount=Decimal("1E+12"),
        destination="1" * 40,
    )

    [bid] = bid_attempts_record(buyer=buyer, result=BidResult([attempt]), source=Source.LIVE)

    bid.refresh_from_db()
    assert bid.bid_amount is None
    assert "out of range" in bid.error
    assert bid.destination == "1" * 32


def test_bid_skip_record_logs_a_local_decision_with_its_reason():
    buyer = BuyerFactory()
    call = CallFactory()

    bid = bid_skip_record(
        buyer=buyer,
        outcome=Outcome.SKIPPED_RATE_LIMIT,
        source=Source.LIVE,
        caller_id="(303) 555-1234",
        state_code="CO",
        reason="rate limit of 100 bids a minute reached",
        call=call,
        request={"CallerId": "3035551234", "InboundStateCode": "CO"},
    )

    bid.refresh_from_db()
    assert bid.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert bid.outcome_class == "blocked"
    assert bid.http_status is None and bid.code is None
    assert bid.caller_id == "3035551234"
    assert bid.state_code == "CO"
    assert bid.call == call
    assert bid.error == "rate limit of 100 bids a minute reached"
    assert bid.request == {"CallerId": "3035551234", "InboundStateCode": "CO"}


def test_bid_skip_record_refuses_an_outcome_that_is_not_a_skip():
    buyer = BuyerFactory()

    with pytest.raises(ValueError, match="not a skip outcome"):
        bid_skip_record(
            buyer=buyer,
            outcome=Outcome.ACCEPTED,
            source=Source.LIVE,
            caller_id="3035551234",
            reason="nope",
        )

    assert not BidLog.objects.exists()


def test_bid_send_logs_every_attempt_of_a_retried_bid_over_http(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint, extra_params={"PublisherId": "pub1"})
    simulator.configure(buyer.grid_id, respond="fail_then_accept", bid_amount="31.00")

    result = bid_send(
        buyer=buyer,
        caller_id="303-555-1234",
        state_code="co",
        params={"InboundZipCode": "80301"},
    )
    bids = bid_attempts_record(buyer=buyer, result=result, source=Source.LIVE)

    assert [bid.outcome for bid in bids] == [Outcome.SYSTEM_ERROR, Outcome.ACCEPTED]
    assert [bid.attempt for bid in bids] == [1, 2]
    assert len(simulator.requests(buyer.grid_id)) == 2
    final = BidLog.objects.get(pk=bids[-1].pk)
    assert final.code == 1000 and final.bid_amount == Decimal("31.00")
    assert final.caller_id == "3035551234" and final.state_code == "CO"
    assert final.request == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "pub1",
        "InboundZipCode": "80301",
    }
    assert final.duration_ms >= 0 and final.http_status == 200


def test_bid_send_logs_the_local_4003_for_an_invalid_caller_id_and_sends_nothing(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)

    result = bid_send(buyer=buyer, caller_id="555-1234")
    [bid] = bid_attempts_record(buyer=buyer, result=result, source=Source.TEST)

    assert simulator.requests(buyer.grid_id) == []
    bid.refresh_from_db()
    assert (bid.outcome, bid.code, bid.http_status) == (Outcome.INVALID_CALLER_ID, 4003, None)
    assert bid.error


def test_attempt_fields_cover_every_bid_log_field_an_attempt_fills():
    # A test bid fills its pending row with bid_result_values: a new BidLog field must be
    # listed in ATTEMPT_FIELDS or among the owner/bookkeeping fields, or a filled-in test bid
    # would lose it.
    from bidlog.models import BidLog
    from bidlog.routing.record import ATTEMPT_FIELDS, bid_result_values

    owner_and_bookkeeping = {"id", "buyer", "call", "source", "external_id", "claimed_at"}
    model_fields = {f.name for f in BidLog._meta.concrete_fields}
    assert set(ATTEMPT_FIELDS) | owner_and_bookkeeping == model_fields
    assert not set(ATTEMPT_FIELDS) & owner_and_bookkeeping
    attempt = BidAttempt(attempt=1, outcome=Outcome.TIMEOUT, started_at=timezone.now())
    assert set(bid_result_values(result=BidResult([attempt]))) == set(ATTEMPT_FIELDS)


# --- a call and its rows in one write ---------------------------------------------------------


def _unsaved_call(winner=None) -> Call:
    return Call(
        caller_id="3035551234",
        state_code="CO",
        params={"PublisherId": "pub1"},
        strategy="highest_bid",
        winner=winner,
        bid_amount=Decimal("25.50") if winner else None,
        destination="13035551234" if winner else "",
        routed=winner is not None,
        duration_ms=61,
    )


def _rows_for(buyers, result: BidResult) -> list[BidLog]:
    rows = []
    for buyer in buyers:
        rows += [
            bid_from_attempt(buyer=buyer, attempt=a, source=Source.LIVE, call=None)
            for a in result.attempts
        ]
    return rows


def test_call_with_bids_create_gives_every_row_its_own_id_and_the_call():
    first, second = BuyerFactory(), BuyerFactory()
    call = _unsaved_call(winner=second)
    rows = _rows_for([first, second], _system_error_then_accept())

    saved_call, written = call_with_bids_create(call=call, bids=rows)

    assert saved_call.pk is not None and saved_call.route_key == call.route_key
    assert [(b.buyer_id, b.attempt) for b in written] == [(b.buyer_id, b.attempt) for b in rows]
    stored = {b.pk: b for b in BidLog.objects.filter(call=saved_call)}
    assert set(stored) == {row.pk for row in written}
    for row in written:
        # Each id belongs to the row with the same buyer and attempt, whatever the order.
        assert (stored[row.pk].buyer_id, stored[row.pk].attempt) == (row.buyer_id, row.attempt)
        assert stored[row.pk].outcome == row.outcome
        # Saved as Django's own reads are: Model.from_db, bound to the database used.
        assert row.call_id == saved_call.pk and row.call is saved_call
        assert not row._state.adding and row._state.db == "default"
    assert not saved_call._state.adding and saved_call.winner == second
    saved = Call.objects.get(pk=saved_call.pk)
    assert (saved.winner, saved.bid_amount, saved.params) == (
        second,
        Decimal("25.50"),
        {"PublisherId": "pub1"},
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement write is PostgreSQL's"
)
@pytest.mark.parametrize("synchronous_commit", [True, False])
def test_call_with_bids_create_is_one_statement_on_postgresql(synchronous_commit):
    buyers = [BuyerFactory() for _ in range(3)]
    call = _unsaved_call()
    rows = _rows_for(buyers, _system_error_then_accept())

    with CaptureQueriesContext(connection) as queries:
        saved, _ = call_with_bids_create(
            call=call, bids=rows, synchronous_commit=synchronous_commit
        )

    writes = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
    assert len(writes) == 1
    assert BidLog.objects.filter(call=saved).count() == 6


def test_call_with_bids_create_writes_nothing_when_one_row_is_refused():
    buyer = BuyerFactory()
    rows = _rows_for([buyer], _system_error_then_accept())
    rows[1].outcome = "not_an_outcome"  # the database's check constraint refuses it
    calls_before = Call.objects.count()

    with pytest.raises(IntegrityError), transaction.atomic():
        call_with_bids_create(call=_unsaved_call(), bids=rows)

    assert Call.objects.count() == calls_before
    assert not BidLog.objects.filter(buyer=buyer).exists()


def test_call_with_bids_create_stores_awkward_values_exactly():
    # On PostgreSQL the rows travel as one JSON document: text that needs escaping, nested
    # JSON, amounts and moments must come back exactly as they went in.
    buyer = BuyerFactory()
    attempt = BidAttempt(
        attempt=1,
        outcome=Outcome.DECLINED,
        started_at=datetime(2026, 3, 8, 9, 59, 59, 123456, tzinfo=UTC),
        request={
            "CallerId": "3035551234",
            "Nested": {"list": [1, 2.5, None, True], "quote": 'say "hi"'},
            "Unicode": "café ☎",
        },
        caller_id="3035551234",
        state_code="CO",
        http_status=200,
        code=2000,
        message='Declined: "no"\nline two\ttab \\ backslash, café, 😀',
        bid_amount=Decimal("0.01"),
        response_caller_id="+1 (303) 555-1234",
        duration_ms=7,
        error="",
        raw_response='{"code": 2000, "message": "Declined: \\"no\\""}',
    )
    rows = bid_rows_prepare(buyer=buyer, result=BidResult([attempt]), source=Source.TEST)

    _, (written,) = call_with_bids_create(call=_unsaved_call(), bids=rows)

    stored = BidLog.objects.get(pk=written.pk)
    for field in [*ATTEMPT_FIELDS, "source", "buyer_id", "external_id", "claimed_at"]:
        assert getattr(stored, field) == getattr(rows[0], field), field
    assert stored.request["Nested"] == {"list": [1, 2.5, None, True], "quote": 'say "hi"'}


def test_a_value_json_cannot_take_as_is_is_written_the_way_its_field_writes_it(settings):
    # A naive moment goes through DateTimeField, which reads it in the current time zone
    # (PostgreSQL alone would read it in the connection's, UTC).
    settings.TIME_ZONE = "America/Denver"
    buyer = BuyerFactory()
    (row,) = _rows_for([buyer], BidResult([_system_error_then_accept().attempts[0]]))
    row.created_at = datetime(2025, 5, 1, 12, 0, 0)

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        _, (written,) = call_with_bids_create(call=_unsaved_call(), bids=[row])

    stored = BidLog.objects.get(pk=written.pk).created_at
    assert stored == timezone.make_aware(datetime(2025, 5, 1, 12, 0, 0))
    assert stored == datetime(2025, 5, 1, 18, 0, 0, tzinfo=UTC)


def test_a_row_built_from_an_attempt_knows_its_buyer_and_call_without_a_query():
    buyer, call = BuyerFactory(), CallFactory()
    attempt = _system_error_then_accept().attempts[1]

    with CaptureQueriesContext(connection) as queries:
        row = bid_from_attempt(buyer=buyer, attempt=attempt, source=Source.LIVE, call=call)
        assert (row.buyer, row.call, row.buyer_id, row.call_id) == (buyer, call, buyer.pk, call.pk)

    assert queries.captured_queries == []
    assert (row.pk, row.external_id, row.claimed_at, row.bid_amount) == (
        None,
        None,
        None,
        Decimal("25.50"),
    )


def test_prepared_rows_are_stored_exactly_like_rows_built_at_write_time():
    buyer = BuyerFactory()
    result = _system_error_then_accept()
    prepared = bid_rows_prepare(buyer=buyer, result=result, source=Source.LIVE)
    plain = _rows_for([buyer], result)

    _, prepared = call_with_bids_create(call=_unsaved_call(), bids=prepared)
    _, plain = call_with_bids_create(call=_unsaved_call(), bids=plain)

    def stored(rows):
        return [
            {f: getattr(BidLog.objects.get(pk=row.pk), f) for f in ATTEMPT_FIELDS} for row in rows
        ]

    assert stored(prepared) == stored(plain)
    assert [row.attempt for row in prepared] == [1, 2]


def _sent(caller_id: str = "3035551234") -> BidAttempt:
    """An attempt as the fan-out holds it once the bid is out: no answer yet."""
    return BidAttempt(
        attempt=1,
        outcome=Outcome.TIMEOUT,
        started_at=STARTED,
        request={"CallerId": caller_id, "InboundStateCode": "CO", "PublisherId": "pub1"},
        caller_id=caller_id,
        state_code="CO",
    )


ANSWERS = {
    "accepted": dict(
        outcome=Outcome.ACCEPTED,
        http_status=200,
        code=1000,
        message="Bid accepted",
        bid_amount=Decimal("25.505"),
        destination="1303555" + "9" * 40,  # longer than the column: cut to fit
        response_caller_id="13035551234",
        duration_ms=51,
        raw_response='{"code": 1000}',
    ),
    "amount out of range": dict(
        outcome=Outcome.ACCEPTED, http_status=200, code=1000, bid_amount=Decimal("1e12")
    ),
    "timeout": dict(error="no answer from buyer.example within 1.0 s", duration_ms=1000),
    "system error": dict(
        outcome=Outcome.SYSTEM_ERROR, http_status=502, raw_response="<html>bad gateway</html>"
    ),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
@pytest.mark.parametrize("caller_id", ["3035551234", "not-a-number"])
def test_a_row_begun_before_the_answer_is_the_row_built_after_it(answer, caller_id):
    buyer = BuyerFactory()
    attempt = _sent(caller_id)
    started = StartedBidRow(buyer=buyer, attempt=attempt, source=Source.LIVE)
    for name, value in answer.items():  # the answer comes in, as the fan-out reads it
        setattr(attempt, name, value)

    [finished] = bid_rows_prepare(
        buyer=buyer, result=BidResult([attempt]), source=Source.LIVE, started=started
    )
    [direct] = _rows_for([buyer], BidResult([attempt]))

    assert finished is started.row
    columns = [f.attname for f in BidLog._meta.concrete_fields if not f.primary_key]
    assert [getattr(finished, c) for c in columns] == [getattr(direct, c) for c in columns]
    # Written (on PostgreSQL from the JSON begun in the wait), both read back the same.
    written = [
        call_with_bids_create(call=_unsaved_call(), bids=[row])[1][0] for row in (finished, direct)
    ]
    stored = [BidLog.objects.filter(pk=row.pk).values(*columns[2:]).get() for row in written]
    assert stored[0] == stored[1]
    assert stored[0]["outcome"] == str(attempt.outcome)
