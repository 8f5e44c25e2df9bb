"""``manage.py send_test_bid``: one bid now, over real HTTP to the simulator, logged as a test."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("send_test_bid", *args, stdout=out)
    return out.getvalue()


def test_command_sends_one_bid_logs_it_and_prints_the_result(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)
    simulator.configure(buyer.grid_id, respond="accept", bid_amount="25.50")

    output = _run(str(buyer.id), "--state", "CO", "--param", "PublisherId=pub123")

    [received] = simulator.requests(buyer.grid_id)
    assert received["body"] == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "pub123",
    }
    bid = BidLog.objects.get()
    assert bid.buyer == buyer
    assert bid.source == Source.TEST
    assert bid.outcome == Outcome.ACCEPTED
    assert bid.bid_amount == Decimal("25.50")
    assert "accepted" in output
    assert "1000" in output
    assert "25.50" in output
    assert "13035551234" in output
    assert f"BidLog id:   {bid.id}" in output


def test_command_finds_the_buyer_by_grid_id_or_name(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint, name="Acme Insurance")

    _run(buyer.grid_id)
    _run("Acme Insurance")

    assert len(simulator.requests(buyer.grid_id)) == 2
    assert BidLog.objects.filter(buyer=buyer, source=Source.TEST).count() == 2


def test_command_uses_the_buyers_health_check_caller_id_by_default(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint, health_check_caller_id="7205550100")

    _run(str(buyer.id))

    [received] = simulator.requests(buyer.grid_id)
    assert received["body"]["CallerId"] == "7205550100"


def test_command_prints_a_decline_and_still_succeeds(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)
    simulator.configure(buyer.grid_id, respond="decline")

    output = _run(str(buyer.id), "--caller-id", "(303) 555-9999")

    bid = BidLog.objects.get()
    assert bid.outcome == Outcome.DECLINED and bid.caller_id == "3035559999"
    assert "declined" in output and "2000" in output


def test_command_refuses_an_unknown_buyer_and_logs_nothing(simulator):
    BuyerFactory(endpoint_url=simulator.endpoint)

    with pytest.raises(CommandError, match="No buyer"):
        _run("no-such-buyer")

    assert not BidLog.objects.exists()
    assert simulator.requests() == []


def test_command_refuses_an_invalid_caller_id_but_logs_the_local_4003(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)

    with pytest.raises(CommandError, match="Invalid caller ID"):
        _run(str(buyer.id), "--caller-id", "555-1234")

    assert simulator.requests(buyer.grid_id) == []
    bid = BidLog.objects.get()
    assert (bid.outcome, bid.code, bid.source) == (Outcome.INVALID_CALLER_ID, 4003, Source.TEST)


def test_command_refuses_a_param_without_equals_before_sending(simulator):
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)

    with pytest.raises(CommandError, match="KEY=VALUE"):
        _run(str(buyer.id), "--param", "PublisherId")

    assert simulator.requests() == []
    assert not BidLog.objects.exists()
