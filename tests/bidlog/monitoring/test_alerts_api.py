"""``GET /api/v1/alerts/``: open alerts and the ones resolved lately, for every role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus
from bidlog.models import Alert
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


def _alert(buyer, rule: str, *, resolved_days_ago: float | None = None, **fields) -> Alert:
    now = timezone.now()
    resolved = resolved_days_ago is not None
    return Alert.objects.create(
        buyer=buyer,
        rule=rule,
        priority=fields.pop("priority", "review"),
        title=fields.pop("title", f"{buyer.name}: {rule}"),
        status=AlertStatus.RESOLVED if resolved else AlertStatus.OPEN,
        resolved_at=None if resolved_days_ago is None else now - timedelta(days=resolved_days_ago),
        **fields,
    )


def test_lists_open_and_recently_resolved_alerts_newest_first(viewer_api):
    buyer = BuyerFactory(name="Acme")
    now = timezone.now()
    older = _alert(buyer, AlertRule.DISABLED, code=4001, priority="immediate")
    older.opened_at = now - timedelta(hours=2)
    older.save()
    recent = _alert(buyer, AlertRule.TIMEOUTS, resolved_days_ago=1)
    _alert(buyer, AlertRule.DECLINES, resolved_days_ago=30)  # long gone

    response = viewer_api.get("/api/v1/alerts/")

    assert response.status_code == 200
    rows = response.json()
    assert [row["id"] for row in rows] == [recent.pk, older.pk]
    first = rows[1]
    assert first["buyer"] == buyer.pk
    assert first["buyer_name"] == "Acme"
    assert first["grid_id"] == buyer.grid_id
    assert (first["rule"], first["code"], first["priority"], first["status"]) == (
        "disabled",
        4001,
        "immediate",
        "open",
    )
    assert first["occurrences"] == 1


def test_filters_by_status_and_buyer(viewer_api):
    acme, zeta = BuyerFactory(), BuyerFactory()
    open_acme = _alert(acme, AlertRule.DISABLED)
    _alert(zeta, AlertRule.DISABLED)
    _alert(acme, AlertRule.TIMEOUTS, resolved_days_ago=1)

    response = viewer_api.get("/api/v1/alerts/", {"status": "open", "buyer": acme.pk})

    rows = response.json()
    assert [row["id"] for row in rows] == [open_acme.pk]


def test_unknown_status_filter_is_400(viewer_api):
    response = viewer_api.get("/api/v1/alerts/", {"status": "closed"})

    assert response.status_code == 400
    assert response.json()["field"] == "status"


def test_anonymous_may_not_read_alerts(api_client):
    assert api_client.get("/api/v1/alerts/").status_code in (401, 403)
