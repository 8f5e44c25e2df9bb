"""Every buyer rule of SPEC §3 and §8, checked through the model, the admin form and the API.

Each case is a change to a valid buyer and the field that must be refused; the same table
runs through ``Buyer.full_clean()``, ``BuyerForm`` and ``POST /api/v1/buyers/`` so the three
ways in cannot drift apart.
"""

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from buyers.forms import BuyerForm
from buyers.models import Buyer
from buyers.services import buyer_create
from tests.buyer_data import REFUSED, form_data, valid_fields

pytestmark = pytest.mark.django_db

# Cases a form cannot express the same way: the form upper-cases codes and reads comma lists
# (see BuyerForm), so lowercase and "not a list" are model/API cases only.
REFUSED_MODEL_AND_API_ONLY = [
    ("states_lowercase", {"accepted_states": ["co"]}, "accepted_states"),
    ("states_not_a_list", {"accepted_states": "CO"}, "accepted_states"),
    ("states_object", {"accepted_states": {"CO": True}}, "accepted_states"),
]


def _ids(cases: list[tuple[str, Any, str]]) -> list[str]:
    return [case[0] for case in cases]


# Model --------------------------------------------------------------------------------------


def test_valid_buyer_passes_full_clean():
    buyer = Buyer(**valid_fields())
    buyer.full_clean()
    buyer.save()
    assert buyer.pk is not None


@pytest.mark.parametrize(
    ("case", "overrides", "field"),
    REFUSED + REFUSED_MODEL_AND_API_ONLY,
    ids=_ids(REFUSED + REFUSED_MODEL_AND_API_ONLY),
)
def test_model_full_clean_refuses_rule(case, overrides, field):
    buyer = Buyer(**valid_fields(**overrides))
    with pytest.raises(ValidationError) as excinfo:
        buyer.full_clean()
    assert field in excinfo.value.message_dict, excinfo.value.message_dict


@pytest.mark.parametrize(
    ("vertical", "days"),
    [("insurance", 30), ("home_services", 7), ("financial", 90), ("solar", 60), ("other", 30)],
)
def test_duplicate_window_defaults_by_vertical(vertical, days):
    buyer = buyer_create(**valid_fields(vertical=vertical))
    buyer.refresh_from_db()
    assert buyer.duplicate_window_days == days


@pytest.mark.parametrize(
    ("vertical", "days"),
    [("insurance", 90), ("home_services", 14), ("financial", 180), ("solar", 90)],
)
def test_duplicate_window_accepts_top_of_vertical_range(vertical, days):
    buyer = buyer_create(**valid_fields(vertical=vertical, duplicate_window_days=days))
    assert buyer.duplicate_window_days == days


def test_endpoint_https_to_callgrid_is_accepted():
    url = "https://bid.callgrid.com/api/bid/"
    buyer = buyer_create(**valid_fields(endpoint_url=url))
    assert Buyer.objects.get(pk=buyer.pk).as_bid_target().endpoint_url == url
    # The same host over plain http is refused: the acceptance above is the rule, not a pass.
    with pytest.raises(ValidationError) as excinfo:
        Buyer(**valid_fields(endpoint_url="http://bid.callgrid.com/api/bid/")).full_clean()
    assert "endpoint_url" in excinfo.value.message_dict


def test_endpoint_plain_http_to_allowlisted_simulator_is_accepted(settings):
    # tests/conftest.py lists 127.0.0.1 as allowlisted and insecure, like the embedded default.
    url = "http://127.0.0.1:8001/api/bid/"
    buyer = buyer_create(**valid_fields(endpoint_url=url))
    assert Buyer.objects.get(pk=buyer.pk).as_bid_target().endpoint_url == url
    # Not listed as insecure, the same plain-http endpoint is refused.
    settings.CALLGRID_INSECURE_HOSTS = []
    with pytest.raises(ValidationError) as excinfo:
        Buyer(**valid_fields(endpoint_url=url)).full_clean()
    assert "endpoint_url" in excinfo.value.message_dict


def test_endpoint_link_local_is_refused_even_when_allowlisted(settings):
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com", "169.254.169.254"]
    settings.CALLGRID_INSECURE_HOSTS = ["169.254.169.254"]
    for url in ("http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/"):
        with pytest.raises(ValidationError) as excinfo:
            Buyer(**valid_fields(endpoint_url=url)).full_clean()
        assert "cannot be a bid endpoint" in " ".join(excinfo.value.message_dict["endpoint_url"])


def test_endpoint_not_allowlisted_message_names_the_setting():
    with pytest.raises(ValidationError) as excinfo:
        Buyer(**valid_fields(endpoint_url="http://10.0.0.1/")).full_clean()
    assert "CALLGRID_ENDPOINT_ALLOWLIST" in excinfo.value.message_dict["endpoint_url"][0]


def test_endpoint_malformed_ipv6_is_refused_not_crashing():
    with pytest.raises(ValidationError) as excinfo:
        Buyer(**valid_fields(endpoint_url="http://[::1/")).full_clean()
    assert "endpoint_url" in excinfo.value.message_dict


def test_cross_field_rules_skip_values_that_failed_conversion():
    buyer = Buyer(**valid_fields(daily_cap="many", monthly_cap=10, duplicate_window_days="x"))
    with pytest.raises(ValidationError) as excinfo:
        buyer.full_clean()
    assert set(excinfo.value.message_dict) >= {"daily_cap", "duplicate_window_days"}


# Admin form ---------------------------------------------------------------------------------


def test_form_accepts_valid_buyer_and_saves_it():
    form = BuyerForm(data=form_data())
    assert form.is_valid(), form.errors
    buyer = form.save()
    assert buyer.accepted_states == ["CO", "TX"]
    assert buyer.duplicate_window_days == 30


@pytest.mark.parametrize(("case", "overrides", "field"), REFUSED, ids=_ids(REFUSED))
def test_form_refuses_rule_on_its_field(case, overrides, field):
    form = BuyerForm(data=form_data(**overrides))
    assert not form.is_valid()
    assert field in form.errors, form.errors


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("co, tx", ["CO", "TX"]),
        ("CO TX;ny", ["CO", "TX", "NY"]),
        ('["CO", "TX"]', ["CO", "TX"]),
        ("", []),
    ],
)
def test_form_reads_accepted_states_as_comma_list(typed, stored):
    data = form_data()
    data["accepted_states"] = typed
    form = BuyerForm(data=data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["accepted_states"] == stored


def test_form_shows_stored_states_as_comma_list():
    buyer = buyer_create(**valid_fields())
    form = BuyerForm(instance=buyer)
    assert form["accepted_states"].value() == "CO, TX"


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("accepted_states", '["CO", ', "separated by commas"),
        ("extra_params", '{"PublisherId": ', '{"PublisherId": "pub-123"'),
        ("operating_hours", '{"mon": [["09:00"', '{"mon": [["09:00", "17:00"]]'),
        # Text is read as hours, so its message is about the text (buyers.hours).
        ("operating_hours", "mon 9-5", "'9' is not a time; use HH:MM"),
    ],
)
def test_form_explains_malformed_json_with_an_example(field, typed, message):
    data = form_data()
    data[field] = typed
    form = BuyerForm(data=data)
    assert not form.is_valid()
    assert message in form.errors[field][0]


def test_form_stores_empty_json_boxes_as_empty_objects():
    data = form_data()
    data["extra_params"] = ""
    data["operating_hours"] = ""
    form = BuyerForm(data=data)
    assert form.is_valid(), form.errors
    buyer = form.save()
    buyer.refresh_from_db()
    assert buyer.extra_params == {}
    assert buyer.operating_hours == {}


# API ----------------------------------------------------------------------------------------


def api_payload(**overrides: Any) -> dict[str, Any]:
    fields = valid_fields(**overrides)
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in fields.items()}


def test_api_creates_valid_buyer(operator_api):
    response = operator_api.post("/api/v1/buyers/", api_payload(), format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["duplicate_window_days"] == 30
    assert response.json()["min_bid"] == "12.50"


@pytest.mark.parametrize(
    ("case", "overrides", "field"),
    REFUSED + REFUSED_MODEL_AND_API_ONLY,
    ids=_ids(REFUSED + REFUSED_MODEL_AND_API_ONLY),
)
def test_api_refuses_rule_with_400_naming_field(operator_api, case, overrides, field):
    response = operator_api.post("/api/v1/buyers/", api_payload(**overrides), format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"], body
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    assert not Buyer.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"min_bid": "lots"}, "min_bid"),
        ({"min_bid": None}, "min_bid"),
        ({"min_bid": "1e30"}, "min_bid"),
        ({"min_bid": "NaN"}, "min_bid"),
        ({"timeout_seconds": "ten"}, "timeout_seconds"),
        ({"timeout_seconds": 5.5}, "timeout_seconds"),
        ({"timeout_seconds": None}, "timeout_seconds"),
        ({"priority": 10**30}, "priority"),
        ({"priority": -1}, "priority"),
        ({"max_concurrency": 10**12}, "max_concurrency"),
        ({"daily_cap": 10**20}, "daily_cap"),
        ({"duplicate_window_days": 10**6}, "duplicate_window_days"),
        ({"accepted_states": None}, "accepted_states"),
        ({"accepted_states": [["CO"]]}, "accepted_states"),
        ({"accepted_states": 7}, "accepted_states"),
        ({"extra_params": None}, "extra_params"),
        ({"extra_params": "PublisherId=1"}, "extra_params"),
        ({"operating_hours": {"mon": "09:00-17:00"}}, "operating_hours"),
        ({"operating_hours": {"mon": [[9, 17]]}}, "operating_hours"),
        ({"operating_hours": {"mon": [None]}}, "operating_hours"),
        ({"name": None}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"grid_id": ["cm97s8hmv000ijt06r4djmije"]}, "grid_id"),
        ({"endpoint_url": "not a url"}, "endpoint_url"),
        ({"endpoint_url": "x" * 400}, "endpoint_url"),
        ({"timezone": None}, "timezone"),
        ({"auto_pause": "perhaps"}, "auto_pause"),
        ({"vertical": "crypto"}, "vertical"),
        ({"caller_id_format": "e.164"}, "caller_id_format"),
    ],
)
def test_api_bad_types_give_400_never_500(operator_api, overrides, field):
    response = operator_api.post("/api/v1/buyers/", api_payload(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_api_refuses_duplicate_name_and_grid_id(operator_api):
    buyer_create(**valid_fields())
    response = operator_api.post("/api/v1/buyers/", api_payload(), format="json")
    assert response.status_code == 400
    assert {"name", "grid_id"} <= set(response.json()["errors"])


def test_api_rule_message_matches_model_message(operator_api):
    response = operator_api.post("/api/v1/buyers/", api_payload(timeout_seconds=11), format="json")
    with pytest.raises(ValidationError) as excinfo:
        Buyer(**valid_fields(timeout_seconds=11)).full_clean()
    # One rule, one message: the API shows the model's words, not a second copy of the rule.
    assert (
        response.json()["errors"]["timeout_seconds"]
        == excinfo.value.message_dict["timeout_seconds"]
    )
