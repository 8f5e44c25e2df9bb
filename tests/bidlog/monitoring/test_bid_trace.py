"""One test bid (or health check) is one row: its final answer, and a trace of every attempt.

The buyer's grid at the simulator answers 5000, 5000 and then 1000 over real HTTP: the row is
the accepted answer, and the bid page, the bids API and the buyer page all say so.
"""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from bidlog.monitoring import checks, testbids
from bidlog.routing import limits
from tests.conftest import page_client
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db

FLAKY = {"respond": "fail_then_accept", "fail_times": 2, "bid_amount": "31.00"}


@pytest.fixture
def flaky_buyer(simulator):
    """A buyer whose grid fails twice with 5000, then bids $31.00."""
    buyer = BuyerFactory(
        endpoint_url=simulator.endpoint, health_check_minutes=5, health_check_caller_id="7205550100"
    )
    limits.limits_reset(grid_id=buyer.grid_id)
    simulator.configure(buyer.grid_id, **FLAKY)
    return buyer


def _queued_and_run(buyer) -> BidLog:
    bid = testbids.test_bid_queue(buyer=buyer, caller_id="3035551234", state_code="CO")
    testbids.test_bid_run(bid_id=bid.pk)
    bid.refresh_from_db()
    return bid


def _codes(trace: list[dict]) -> list[tuple[int, int | None, str]]:
    return [(entry["attempt"], entry["code"], entry["outcome"]) for entry in trace]


RETRIED = [(1, 5000, Outcome.SYSTEM_ERROR), (2, 5000, Outcome.SYSTEM_ERROR), (3, 1000, "accepted")]


def test_health_check_that_was_retried_is_one_row_with_its_final_answer(simulator, flaky_buyer):
    bid = checks.health_check_run(buyer_id=flaky_buyer.pk)

    assert bid is not None
    [row] = BidLog.objects.filter(buyer=flaky_buyer)
    assert row.pk == bid.pk and row.source == Source.HEALTH
    assert (row.outcome, row.code, row.bid_amount) == (Outcome.ACCEPTED, 1000, Decimal("31.00"))
    assert _codes(row.trace) == RETRIED
    assert len(simulator.requests(flaky_buyer.grid_id)) == 3


def test_send_test_bid_command_logs_one_row_and_prints_every_attempt(simulator, flaky_buyer):
    out = StringIO()

    call_command("send_test_bid", str(flaky_buyer.pk), stdout=out)

    [row] = BidLog.objects.filter(buyer=flaky_buyer)
    assert (row.source, row.outcome, row.attempt) == (Source.TEST, Outcome.ACCEPTED, 3)
    assert _codes(row.trace) == RETRIED
    text = out.getvalue()
    assert "Outcome:     accepted" in text and "Attempts:    3" in text
    assert "#1: system_error (code 5000)" in text and "#3: accepted (code 1000)" in text
    assert f"BidLog id:   {row.pk}" in text


def test_bid_page_lists_every_attempt_of_a_retried_test_bid(flaky_buyer, bob):
    bid = _queued_and_run(flaky_buyer)

    page = page_client(bob).get(reverse("bids:detail", args=[bid.pk])).content.decode()

    assert '<span class="badge bid">Accepted</span>' in page
    assert 'id="trace"' in page
    table = page[page.index('id="trace"') :]
    # The code has its own column, so the outcome does not repeat it.
    assert table.count("<td>System error</td>") == 2
    assert table.count("<td>Accepted</td>") == 1
    assert "<td>$31.00</td>" in table


def test_bids_api_detail_has_the_final_answer_and_the_trace(flaky_buyer, operator_api):
    bid = _queued_and_run(flaky_buyer)

    data = operator_api.get(reverse("api:bid-detail", args=[bid.pk])).json()

    assert (data["outcome"], data["code"], data["bid_amount"]) == ("accepted", 1000, "31.00")
    assert [(e["attempt"], e["code"], e["outcome"]) for e in data["trace"]] == RETRIED
    first = data["trace"][0]
    assert set(first) == {
        "send",
        "attempt",
        "at",
        "outcome",
        "code",
        "http_status",
        "duration_ms",
        "bid_amount",
        "error",
        "lost",
    }
    assert first["http_status"] == 200 and not first["lost"]
    assert data["trace"][-1]["bid_amount"] == "31.00"


def test_buyer_page_shows_the_final_outcome_of_a_retried_test_bid(flaky_buyer, alice):
    bid = _queued_and_run(flaky_buyer)

    page = page_client(alice).get(
        reverse("buyers:detail", args=[flaky_buyer.pk]), {"test_bid": bid.pk}
    )

    text = page.content.decode()
    assert "Answer: <strong>Accepted</strong> (code 1000), bid $31.00" in text
    assert "System error" not in text[text.index("test-bid-result") :][:400]


def test_viewer_sees_caller_numbers_masked_in_the_trace(flaky_buyer, viewer_api, simulator):
    simulator.configure(flaky_buyer.grid_id, respond="accept")
    bid = _queued_and_run(flaky_buyer)
    # A buyer's error text may quote the number back; the trace's copy is masked like the row's.
    trace = [{**bid.trace[0], "error": "caller 3035551234 refused"}]
    BidLog.objects.filter(pk=bid.pk).update(trace=trace)

    data = viewer_api.get(reverse("api:bid-detail", args=[bid.pk])).json()

    assert data["trace"][0]["error"] == "caller 303***1234 refused"


@pytest.mark.django_db
def test_send_test_bid_command_names_an_unknown_buyer_even_in_superscript_digits():
    # "²" passes str.isdigit() but not int(): it is looked up as a Grid ID or name only.
    with pytest.raises(CommandError, match="No buyer with id, Grid ID or name '²'"):
        call_command("send_test_bid", "²")
