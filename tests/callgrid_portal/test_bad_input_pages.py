"""Bad input never answers 500 on the pages either: odd values in every page's query string
and every form, signed in as an operator (who may use every form).

A value holding the NUL character is refused at the door with a 400 naming the parameter;
any other comes back as the page, with the error (if any) on the field it was given for.
"""

import pytest
from django.test import Client
from django.urls import reverse

from bidlog.buyer_pages.views import BuyerPageFilter
from bidlog.choices import Source
from bidlog.reports.bid_pages import BidListFilter
from bidlog.reports.call_pages import CallPageFilter
from bidlog.reports.forms import RangeForm, ReportRangeForm
from buyers.forms import BuyerForm, EligibilityForm
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

# "²" passes str.isdigit() and fails int(); "1~²" is a cursor ending in it.
ODD = [
    *("", "x", "-1", "0", "9" * 40, "2026-13-45", "1e999", "[]", "é😀", "x" * 5000),
    *("a\u0000b", "²", "1~²"),
]

RANGE = list(ReportRangeForm.base_fields)
# A listing's range control: its quick range and days (its filter has since and until).
LIST_RANGE = [name for name in RangeForm.base_fields if name not in ("since", "until")]

# Every parameter each page reads, taken from the forms and filters themselves.
PAGE_PARAMS = {
    "home": RANGE,
    "reports": [*RANGE, "export"],
    "bids:list": [*BidListFilter.base_filters, *LIST_RANGE, "before", "page", "export"],
    "calls:list": [*CallPageFilter.base_filters, *LIST_RANGE, "before"],
    "buyers:list": list(BuyerPageFilter.base_filters),
    "buyers:detail": [*EligibilityForm.base_fields, "test_bid"],
    "troubleshooting": ["x"],
}
FORM_FIELDS = list(BuyerForm.Meta.fields)


@pytest.fixture
def operator_client(bob) -> Client:
    return page_client(bob)


@pytest.fixture
def buyer(db):
    made = BuyerFactory()
    BidLogFactory(buyer=made, source=Source.TEST)
    return made


def _url(name: str, buyer) -> str:
    return reverse(name, args=[buyer.pk]) if name == "buyers:detail" else reverse(name)


# Errors a value may cause on another field than its own (an empty custom range asks for its
# start; an unknown export is about the whole request).
ALSO = {
    "range": {"since"},
    "export": {"__all__"},
    "to_date": {"from_date"},
    "page": {"__all__"},
}


def _form_errors(response) -> set[str]:
    context = response.context
    if "form" in context:
        return set(context["form"].errors)
    if "filter" in context:
        ranged = context.get("range_form")
        return set(context["filter"].form.errors) | set(ranged.errors if ranged else ())
    if "eligibility_form" in context:
        return set(context["eligibility_form"].errors)
    return set()


@pytest.mark.parametrize("name", list(PAGE_PARAMS))
def test_odd_query_values_never_crash_a_page(operator_client, buyer, name):
    for param in PAGE_PARAMS[name]:
        for value in ODD:
            response = operator_client.get(_url(name, buyer), {param: value})
            if "\x00" in value:
                assert response.status_code == 400, (name, param)
                assert response.content.decode() == (
                    f"Query parameter {param!r} must not contain the NUL character (\\u0000)."
                )
                continue
            assert response.status_code == 200, (name, param, value)
            assert _form_errors(response) <= {param} | ALSO.get(param, set()), (name, param, value)
        response = operator_client.get(_url(name, buyer), {param: ["a", "b"]})
        assert response.status_code == 200, (name, param, "two values")


@pytest.mark.parametrize("form", ["buyers:create", "buyers:edit"])
def test_odd_form_values_are_refused_on_the_page(operator_client, buyer, form):
    url = reverse(form, args=[buyer.pk]) if form == "buyers:edit" else reverse(form)
    for field in FORM_FIELDS:
        for value in ODD:
            response = operator_client.post(url, {field: value})
            # Every other field is missing too, so nothing can be saved: the form comes back.
            assert response.status_code == 200, (form, field, value)
            assert response.context["form"].errors


def test_odd_test_bid_values_never_crash(operator_client, buyer):
    url = reverse("buyers:test_bid", args=[buyer.pk])
    for field in ("test-caller_id", "test-state_code"):
        for value in ODD:
            # Refused next to its field on the buyer's page (400), or queued (an empty caller
            # ID is the buyer's test number) and back to the buyer's page.
            response = operator_client.post(url, {field: value})
            assert response.status_code in (302, 400), (field, value)
            if response.status_code == 400:
                assert response.context["test_bid_form"].errors, (field, value)


def test_odd_paid_out_values_never_crash(operator_client, buyer):
    call = CallFactory(winner=buyer, routed=True, bid_amount="30.00")
    url = reverse("calls:paid-out", args=[call.pk])
    for value in ODD:
        response = operator_client.post(url, {"paid_out": value})
        assert response.status_code == 302, value
    call.refresh_from_db()
    assert call.paid_out is True


def test_odd_status_values_never_crash(operator_client, buyer):
    url = reverse("buyers:status", args=[buyer.pk])
    for value in ODD:
        response = operator_client.post(url, {"status": value})
        assert response.status_code == 302, value
    buyer.refresh_from_db()
    assert buyer.status == "active"
