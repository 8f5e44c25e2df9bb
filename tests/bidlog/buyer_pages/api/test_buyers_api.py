"""The buyers API: CRUD, filters, roles, audit history and the delete guard."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import ValidationError

from bidlog.monitoring.health import buyer_health
from buyers import services
from buyers.models import Buyer
from buyers.selectors import buyer_get, buyer_list
from tests.factories import BidLogFactory, BuyerFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/buyers/"
GRID_ID = "cm97s8hmv000ijt06r4djmije"


def detail_url(buyer: Buyer) -> str:
    return f"{URL}{buyer.pk}/"


def new_buyer_payload(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "name": "Summit Solar",
        "grid_id": GRID_ID,
        "vertical": "solar",
        "min_bid": "20.00",
        "accepted_states": ["CO"],
    }
    payload.update(overrides)
    return payload


# Reading --------------------------------------------------------------------------------------


def test_list_returns_buyers_in_priority_order_with_health(viewer_api):
    second = BuyerFactory(priority=2)
    first = BuyerFactory(priority=1)
    response = viewer_api.get(URL)
    assert response.status_code == 200
    rows = response.json()
    assert [row["id"] for row in rows] == [first.pk, second.pk]
    assert rows[0]["health"] == "unknown"
    assert {"created_at", "updated_at", "extra_params", "operating_hours"} <= set(rows[0])


def test_detail_returns_money_as_decimal_string(viewer_api):
    buyer = BuyerFactory(min_bid=Decimal("7.25"))
    response = viewer_api.get(detail_url(buyer))
    assert response.status_code == 200
    assert response.json()["min_bid"] == "7.25"
    assert response.json()["grid_id"] == buyer.grid_id


def test_detail_of_missing_buyer_is_404_json(viewer_api):
    response = viewer_api.get(f"{URL}999999/")
    assert response.status_code == 404
    assert response.json()["field"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=paused", {"Paused Home"}),
        ("vertical=solar", {"Bright Solar"}),
        ("q=bright", {"Bright Solar"}),
        ("q=zzzz0000", {"Bright Solar"}),
        ("grid_id=cm97s8hmv999999ijt06r4dj", {"Paused Home"}),
        ("status=active&vertical=insurance", {"Acme Insurance"}),
    ],
)
def test_list_filters_by_status_vertical_q_and_grid_id(viewer_api, query, expected):
    BuyerFactory(name="Acme Insurance", vertical="insurance")
    BuyerFactory(name="Bright Solar", vertical="solar", grid_id="brightsolarzzzz0000abc")
    BuyerFactory(
        name="Paused Home",
        vertical="home_services",
        status="paused",
        grid_id="cm97s8hmv999999ijt06r4dj",
    )
    response = viewer_api.get(f"{URL}?{query}")
    assert response.status_code == 200
    assert {row["name"] for row in response.json()} == expected


def test_list_with_unknown_status_filter_is_400(viewer_api):
    response = viewer_api.get(f"{URL}?status=deleted")
    assert response.status_code == 400
    assert response.json()["field"] == "status"


def test_selectors_list_filter_and_get():
    solar = BuyerFactory(vertical="solar")
    BuyerFactory(vertical="insurance")
    assert list(buyer_list({"vertical": "solar"})) == [solar]
    assert buyer_list().count() == 2
    assert buyer_get(solar.pk) == solar
    assert buyer_health(solar) == "unknown"
    with pytest.raises(ValidationError):
        buyer_list({"status": "deleted"})


# Writing ------------------------------------------------------------------------------------


def test_operator_creates_buyer_with_vertical_default_window(operator_api):
    response = operator_api.post(URL, new_buyer_payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["duplicate_window_days"] == 60
    assert body["endpoint_url"] == "https://bid.callgrid.com/api/bid/"
    assert body["health"] == "unknown"
    assert Buyer.objects.get(pk=body["id"]).min_bid == Decimal("20.00")


def test_operator_patches_one_field(operator_api):
    buyer = BuyerFactory(min_bid=Decimal("10.00"))
    response = operator_api.patch(detail_url(buyer), {"min_bid": "11.75"}, format="json")
    assert response.status_code == 200, response.json()
    buyer.refresh_from_db()
    assert buyer.min_bid == Decimal("11.75")


def test_operator_puts_whole_buyer(operator_api):
    buyer = BuyerFactory()
    payload = new_buyer_payload(name="Renamed", grid_id=buyer.grid_id, status="paused")
    response = operator_api.put(detail_url(buyer), payload, format="json")
    assert response.status_code == 200, response.json()
    buyer.refresh_from_db()
    assert (buyer.name, buyer.status, buyer.vertical) == ("Renamed", "paused", "solar")


def test_patch_with_bad_value_leaves_buyer_unchanged(operator_api):
    buyer = BuyerFactory(timeout_seconds=5)
    response = operator_api.patch(detail_url(buyer), {"timeout_seconds": 11}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "timeout_seconds"
    buyer.refresh_from_db()
    assert buyer.timeout_seconds == 5


def test_patch_cross_field_rule_uses_stored_values(operator_api):
    buyer = BuyerFactory(monthly_cap=100)
    response = operator_api.patch(detail_url(buyer), {"daily_cap": 101}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "daily_cap"


def test_patch_vertical_moves_default_window_along(operator_api):
    buyer = services.buyer_create(name="Mover", grid_id=GRID_ID, vertical="insurance")
    assert buyer.duplicate_window_days == 30
    response = operator_api.patch(detail_url(buyer), {"vertical": "home_services"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["duplicate_window_days"] == 7


def test_patch_vertical_keeps_chosen_window_and_refuses_it_when_out_of_range(operator_api):
    buyer = services.buyer_create(
        name="Chooser", grid_id=GRID_ID, vertical="insurance", duplicate_window_days=45
    )
    response = operator_api.patch(detail_url(buyer), {"vertical": "home_services"}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "duplicate_window_days"


def test_null_window_resets_to_vertical_default(operator_api):
    buyer = services.buyer_create(
        name="Reset", grid_id=GRID_ID, vertical="financial", duplicate_window_days=120
    )
    response = operator_api.patch(detail_url(buyer), {"duplicate_window_days": None}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["duplicate_window_days"] == 90


def test_read_only_fields_are_ignored_on_write(operator_api):
    buyer = BuyerFactory()
    created = buyer.created_at
    response = operator_api.patch(
        detail_url(buyer),
        {"created_at": "2000-01-01T00:00:00Z", "health": "ok", "notes": "n"},
        format="json",
    )
    assert response.status_code == 200
    buyer.refresh_from_db()
    assert buyer.created_at == created
    assert buyer.notes == "n"


def test_api_runs_model_validation_once_per_write(operator_api):
    buyer = BuyerFactory()
    with mock.patch.object(Buyer, "clean", autospec=True, side_effect=Buyer.clean) as clean:
        created = operator_api.post(URL, new_buyer_payload(), format="json")
        assert created.status_code == 201
        assert clean.call_count == 1
        updated = operator_api.patch(detail_url(buyer), {"notes": "x"}, format="json")
        assert updated.status_code == 200
        assert clean.call_count == 2
    assert clean.call_args.args[0].pk == buyer.pk


# Roles --------------------------------------------------------------------------------------


def test_viewer_cannot_create_update_or_delete(viewer_api):
    buyer = BuyerFactory()
    assert viewer_api.post(URL, new_buyer_payload(), format="json").status_code == 403
    assert viewer_api.patch(detail_url(buyer), {"notes": "x"}, format="json").status_code == 403
    assert viewer_api.delete(detail_url(buyer)).status_code == 403
    assert Buyer.objects.count() == 1


def test_operator_cannot_delete(operator_api):
    buyer = BuyerFactory()
    response = operator_api.delete(detail_url(buyer))
    assert response.status_code == 403
    assert response.json() == {"detail": "Your role does not allow this.", "field": None}
    assert Buyer.objects.filter(pk=buyer.pk).exists()


def test_admin_deletes_buyer_without_bids(admin_api):
    buyer = BuyerFactory()
    response = admin_api.delete(detail_url(buyer))
    assert response.status_code == 204
    assert not Buyer.objects.filter(pk=buyer.pk).exists()


def test_admin_delete_of_buyer_with_bids_is_refused_with_advice(admin_api):
    bid = BidLogFactory()
    response = admin_api.delete(detail_url(bid.buyer))
    assert response.status_code == 409
    assert "disabled" in response.json()["detail"]
    assert Buyer.objects.filter(pk=bid.buyer_id).exists()


def test_user_without_role_is_forbidden(api_client, db):
    from tests.factories import UserFactory

    api_client.force_authenticate(UserFactory(username="norole"))
    assert api_client.get(URL).status_code == 403


# Services and audit ---------------------------------------------------------------------------


def test_service_delete_refuses_buyer_with_bids():
    bid = BidLogFactory()
    with pytest.raises(ValidationError, match="disabled"):
        services.buyer_delete(buyer=bid.buyer)


def test_service_refuses_unknown_field_names():
    with pytest.raises(TypeError, match="colour"):
        services.buyer_create(name="A", grid_id=GRID_ID, colour="red")


def test_service_update_failure_restores_buyer_in_memory():
    buyer = BuyerFactory(timeout_seconds=4)
    with pytest.raises(ValidationError):
        services.buyer_update(buyer=buyer, timeout_seconds=0)
    assert buyer.timeout_seconds == 4


def test_service_update_records_actor_and_old_and_new_values(bob):
    buyer = services.buyer_create(name="Audited", grid_id=GRID_ID, min_bid=Decimal("5.00"))
    services.buyer_update(buyer=buyer, actor=bob, min_bid=Decimal("6.50"), status="paused")
    latest, previous = buyer.history.all()[:2]
    assert latest.history_user == bob
    assert latest.history_type == "~"
    changes = {c.field: (c.old, c.new) for c in latest.diff_against(previous).changes}
    assert changes == {
        "min_bid": (Decimal("5.00"), Decimal("6.50")),
        "status": ("active", "paused"),
    }


def test_api_update_records_requesting_user_in_history(operator_api, bob):
    buyer = BuyerFactory(min_bid=Decimal("10.00"))
    response = operator_api.patch(detail_url(buyer), {"min_bid": "12.00"}, format="json")
    assert response.status_code == 200
    latest, previous = buyer.history.all()[:2]
    assert latest.history_user == bob
    change = latest.diff_against(previous).changes
    assert [(c.field, c.old, c.new) for c in change] == [
        ("min_bid", Decimal("10.00"), Decimal("12.00"))
    ]


def test_api_create_and_delete_record_author_in_history(operator_api, admin_api, bob, charlie):
    created = operator_api.post(URL, new_buyer_payload(), format="json")
    buyer_id = created.json()["id"]
    assert admin_api.delete(f"{URL}{buyer_id}/").status_code == 204
    rows = Buyer.history.filter(id=buyer_id).order_by("history_date")
    assert [(row.history_type, row.history_user) for row in rows] == [
        ("+", bob),
        ("-", charlie),
    ]


def test_extra_params_with_a_nul_character_are_400_and_change_nothing(admin_api):
    buyer = BuyerFactory(extra_params={"PublisherId": "pub1"})

    response = admin_api.patch(
        detail_url(buyer), {"extra_params": {"PublisherId": "p\u0000b"}}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["field"] == "extra_params"
    buyer.refresh_from_db()
    assert buyer.extra_params == {"PublisherId": "pub1"}
