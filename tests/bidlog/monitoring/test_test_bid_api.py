"""``POST /api/v1/buyers/{id}/test-bid/``: a pending row, a queued task, or a clear refusal."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from callgrid_portal.roles import ROLES
from tests.broker_queue import queued_messages
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


def _url(buyer_id: int) -> str:
    return f"/api/v1/buyers/{buyer_id}/test-bid/"


@pytest.fixture(autouse=True)
def _roles() -> None:
    """The role groups, which a transactional test's flush removes along with everything else."""
    for role in ROLES:
        Group.objects.get_or_create(name=role)


# Committed data, as in production: the task is published when the row's transaction commits,
# which is at once outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_operator_queues_a_test_bid_and_gets_202_with_the_pending_row(operator_api, celery_broker):
    buyer = BuyerFactory(extra_params={"PublisherId": "pub1"})

    response = operator_api.post(
        _url(buyer.pk),
        {"CallerId": "+1 (303) 555-1234", "InboundStateCode": "co", "CampaignType": "auto"},
        format="json",
    )

    assert response.status_code == 202
    bid = BidLog.objects.get()
    assert response.json() == {
        "id": bid.pk,
        "outcome": "pending",
        "url": f"http://testserver/api/v1/bids/{bid.pk}/",
    }
    assert bid.source == Source.TEST
    assert bid.outcome == Outcome.PENDING
    assert bid.request == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "pub1",
        "CampaignType": "auto",
    }
    assert queued_messages(celery_broker.queue) == [("bidlog.send_test_bid", [bid.pk])]


def test_empty_body_uses_the_buyers_health_check_caller_id(
    operator_api, celery_broker, django_capture_on_commit_callbacks
):
    buyer = BuyerFactory(health_check_caller_id="7205550100")

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_api.post(_url(buyer.pk))

    assert response.status_code == 202
    assert BidLog.objects.get().caller_id == "7205550100"


@pytest.mark.django_db(transaction=True)
def test_broker_down_answers_503_and_leaves_no_pending_row(operator_api, broker_down):
    buyer = BuyerFactory()

    response = operator_api.post(_url(buyer.pk), {"CallerId": "3035551234"}, format="json")

    assert response.status_code == 503
    assert "task queue is not reachable" in response.json()["detail"]
    assert not BidLog.objects.exists()


def test_invalid_caller_id_is_400_with_code_4003_and_records_nothing(operator_api):
    buyer = BuyerFactory()

    response = operator_api.post(_url(buyer.pk), {"CallerId": "123"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "CallerId"
    assert "4003" in body["detail"]
    assert not BidLog.objects.exists()


def test_nested_parameter_is_400(operator_api):
    buyer = BuyerFactory()

    response = operator_api.post(_url(buyer.pk), {"Tags": {"a": 1}}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "Tags"


def test_viewer_may_not_send_test_bids(viewer_api):
    buyer = BuyerFactory()

    response = viewer_api.post(_url(buyer.pk))

    assert response.status_code == 403
    assert not BidLog.objects.exists()


def test_unknown_buyer_is_404(operator_api):
    assert operator_api.post(_url(999999)).status_code == 404


def test_parameter_with_a_nul_character_is_400(operator_api):
    buyer = BuyerFactory()

    response = operator_api.post(_url(buyer.pk), {"Source": "a\u0000b"}, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "Source"
    assert not BidLog.objects.exists()
