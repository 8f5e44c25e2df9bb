"""The read-only bid-log admin stays cheap on large tables."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bidlog import admin as bidlog_admin
from bidlog.models import BidLog
from tests.factories import BidLogFactory, BuyerFactory, UserFactory


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def test_changelist_counts_at_most_the_cap(client, superuser, monkeypatch):
    monkeypatch.setattr(bidlog_admin, "COUNT_CAP", 3)
    buyer = BuyerFactory()
    BidLogFactory.create_batch(6, buyer=buyer)
    client.force_login(superuser)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/bidlog/bidlog/")

    assert response.status_code == 200
    # The bid log's counts (the header's alert count is another table's).
    counts = [
        q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and '"bidlog_bidlog"' in q["sql"]
    ]
    assert counts, "the changelist should count its (bounded) rows"
    assert all("LIMIT 4" in sql for sql in counts), counts
    assert response.context["cl"].result_count == 4


def test_bid_log_rows_cannot_be_added_changed_or_deleted(client, superuser):
    bid = BidLogFactory()
    client.force_login(superuser)

    assert client.get("/admin/bidlog/bidlog/add/").status_code == 403
    assert client.post(f"/admin/bidlog/bidlog/{bid.pk}/delete/", {"post": "yes"}).status_code == 403
    assert BidLog.objects.filter(pk=bid.pk).exists()
    assert client.get(f"/admin/bidlog/bidlog/{bid.pk}/change/").status_code == 200
