"""The Django admin for buyers: add and change with validation, lists, actions and history."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils.html import escape

from buyers.models import Buyer
from tests.buyer_data import REFUSED, form_data
from tests.factories import BidLogFactory, BuyerFactory

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:buyers_buyer_add")
LIST_URL = reverse("admin:buyers_buyer_changelist")


def change_url(buyer: Buyer) -> str:
    return reverse("admin:buyers_buyer_change", args=[buyer.pk])


def test_admin_add_view_creates_buyer_and_records_author(admin_client, admin_user):
    data = form_data()
    data["accepted_states"] = "co, tx"
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    buyer = Buyer.objects.get()
    assert buyer.accepted_states == ["CO", "TX"]
    assert buyer.duplicate_window_days == 30
    assert buyer.history.get().history_user == admin_user


@pytest.mark.parametrize(("case", "overrides", "field"), REFUSED, ids=[c[0] for c in REFUSED])
def test_admin_add_view_shows_rule_error_on_its_field(admin_client, case, overrides, field):
    response = admin_client.post(ADD_URL, form_data(**overrides))
    assert response.status_code == 200  # the form again, with errors, not a redirect
    form = response.context["adminform"].form
    assert field in form.errors, form.errors
    assert escape(form.errors[field][0]) in response.content.decode()
    assert not Buyer.objects.exists()


def test_admin_change_view_shows_states_as_comma_list(admin_client):
    buyer = BuyerFactory(accepted_states=["CO", "TX"])
    response = admin_client.get(change_url(buyer))
    assert response.status_code == 200
    assert 'value="CO, TX"' in response.content.decode()


def test_admin_change_records_old_and_new_values(admin_client, admin_user):
    buyer = BuyerFactory(min_bid=Decimal("10.00"))
    data = form_data(name=buyer.name, grid_id=buyer.grid_id, min_bid=Decimal("14.00"))
    response = admin_client.post(change_url(buyer), data)
    assert response.status_code == 302
    latest, previous = buyer.history.all()[:2]
    assert latest.history_user == admin_user
    changed = {c.field: (c.old, c.new) for c in latest.diff_against(previous).changes}
    assert changed["min_bid"] == (Decimal("10.00"), Decimal("14.00"))


def test_admin_history_view_lists_changes(admin_client):
    buyer = BuyerFactory()
    response = admin_client.get(reverse("admin:buyers_buyer_history", args=[buyer.pk]))
    assert response.status_code == 200
    assert buyer.name in response.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"Acme Insurance", "Paused Solar"}),
        ("?q=acme", {"Acme Insurance"}),
        ("?status__exact=paused", {"Paused Solar"}),
        ("?vertical__exact=solar", {"Paused Solar"}),
    ],
)
def test_admin_changelist_searches_and_filters(admin_client, query, expected):
    BuyerFactory(name="Acme Insurance")
    BuyerFactory(name="Paused Solar", status="paused", vertical="solar")
    response = admin_client.get(LIST_URL + query)
    assert response.status_code == 200
    assert {buyer.name for buyer in response.context["cl"].result_list} == expected


def test_admin_pause_action_pauses_selected_buyers_with_history(admin_client, admin_user):
    first, second = BuyerFactory(), BuyerFactory()
    response = admin_client.post(
        LIST_URL, {"action": "pause", "_selected_action": [first.pk, second.pk]}
    )
    assert response.status_code == 302
    assert set(Buyer.objects.values_list("status", flat=True)) == {"paused"}
    assert first.history.first().history_user == admin_user


def test_admin_delete_of_buyer_with_bids_is_blocked(admin_client):
    bid = BidLogFactory()
    url = reverse("admin:buyers_buyer_delete", args=[bid.buyer_id])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 200  # the "cannot delete" page, not a redirect
    assert "Cannot delete buyer" in response.content.decode()
    assert Buyer.objects.filter(pk=bid.buyer_id).exists()


@pytest.mark.parametrize("object_id", ["x", "%00", "12abc"])
def test_history_of_an_id_that_is_not_a_number_is_a_404(admin_client, object_id):
    admin_client.raise_request_exception = False

    response = admin_client.get(f"/admin/buyers/buyer/{object_id}/history/")

    assert response.status_code == 404


def test_a_list_filter_value_holding_a_nul_is_a_400_naming_it(admin_client):
    admin_client.raise_request_exception = False

    response = admin_client.get(reverse("admin:bidlog_bidlog_changelist"), {"outcome": "a\0b"})

    assert response.status_code == 400
    assert "Query parameter 'outcome'" in response.content.decode()
