"""Safer buyer edits (issue 20, items 5 and 6), through the pages' real forms and views:
overlapping hours refused naming both windows, every bad line reported, new buyers paused,
clone, bulk pause and activate with their confirmation and role, and the buyer page's figures.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import AlertRule
from bidlog.models import Alert
from buyers.forms import BuyerForm
from buyers.hours import HoursSyntaxError, parse_hours_text
from buyers.models import Buyer
from buyers.validators import overlapping_windows, validate_operating_hours
from tests.buyer_data import page_create, page_fields
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory


def _errors(form: BuyerForm, name: str) -> list[str]:
    assert not form.is_valid()
    return [str(error) for error in form.errors[name]]


# --- operating hours ------------------------------------------------------------------------


def test_overlapping_windows_are_refused_naming_both(db):
    form = BuyerForm(data=page_fields(operating_hours="mon-fri 08:00-12:00\nmon 11:00-14:00"))
    assert _errors(form, "operating_hours") == [
        "mon: windows 08:00-12:00 and 11:00-14:00 overlap; join them into one window or move "
        "one of them."
    ]


def test_windows_that_only_touch_are_accepted(db):
    form = BuyerForm(data=page_fields(operating_hours="mon 08:00-12:00, 12:00-24:00"))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["operating_hours"] == {"mon": [["08:00", "12:00"], ["12:00", "24:00"]]}


def test_the_api_shape_is_refused_for_overlaps_too():
    with pytest.raises(ValidationError) as caught:
        validate_operating_hours(
            {"tue": [["09:00", "17:00"], ["16:00", "18:00"], ["10:00", "11:00"]]}
        )
    assert caught.value.messages == [
        "tue: windows 09:00-17:00 and 10:00-11:00 overlap; join them into one window or move "
        "one of them.",
        "tue: windows 09:00-17:00 and 16:00-18:00 overlap; join them into one window or move "
        "one of them.",
    ]


def test_overlapping_windows_pairs_every_overlap_once():
    windows = [("08:00", "20:00"), ("09:00", "10:00"), ("20:00", "21:00"), ("19:00", "24:00")]
    assert overlapping_windows(windows) == [
        (("08:00", "20:00"), ("09:00", "10:00")),
        (("08:00", "20:00"), ("19:00", "24:00")),
        (("19:00", "24:00"), ("20:00", "21:00")),
    ]


def test_every_bad_hours_line_is_reported_not_only_the_first():
    text = "mon 09:00-17:00\nfunday 09:00-17:00\ntue 9-5\nwed 18:00-08:00, 25:00-26:00"
    with pytest.raises(HoursSyntaxError) as caught:
        parse_hours_text(text)
    problems = caught.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("\"funday 09:00-17:00\": 'funday' is not a day")
    assert problems[1].startswith("\"tue 9-5\": '9' is not a time")
    assert problems[2].startswith('"wed 18:00-08:00, 25:00-26:00": 18:00-08:00 closes before')
    assert problems[3].startswith("\"wed 18:00-08:00, 25:00-26:00\": '25:00' is not a time")


def test_the_form_lists_every_bad_line_of_each_box(db):
    form = BuyerForm(
        data=page_fields(
            operating_hours="funday 09:00-17:00\ntue 9-5",
            extra_params="PublisherId\nA=1\nA=2\n=x",
            accepted_states="co, zz, qq, tx, co",
        )
    )
    assert not form.is_valid()
    assert len(form.errors["operating_hours"]) == 2
    assert list(form.errors["extra_params"]) == [
        '"PublisherId": write each parameter as Name=value, one per line.',
        "A is given twice.",
        '"=x": write each parameter as Name=value, one per line.',
    ]
    assert list(form.errors["accepted_states"]) == [
        "Not US state codes: 'ZZ', 'QQ'. Use two upper-case letters like CO.",
        "Each state may appear only once: CO appear more than once.",
    ]


def test_the_edit_page_shows_every_error_with_the_error_style(bob):
    response = page_client(bob).post(
        reverse("buyers:create"),
        page_fields(operating_hours="mon 08:00-12:00\nmon 11:00-13:00", min_bid="-1"),
    )
    page = response.content.decode()
    assert response.status_code == 200 and not Buyer.objects.exists()
    assert "windows 08:00-12:00 and 11:00-13:00 overlap" in page
    hours = _tag(page, "textarea", "operating_hours")
    assert 'class="invalid"' in hours and 'aria-invalid="true"' in hours
    min_bid = _tag(page, "input", "min_bid")
    assert 'class="invalid"' in min_bid and 'aria-invalid="true"' in min_bid
    assert "invalid" not in _tag(page, "input", "name")


def _tag(page: str, tag: str, name: str) -> str:
    """The opening ``<tag>`` named ``name`` in ``page``."""
    at = page.index(f'name="{name}"')
    return page[page.rindex(f"<{tag}", 0, at) : page.index(">", at) + 1]


def test_a_buyer_saved_with_overlapping_hours_can_still_be_paused(bob):
    buyer = BuyerFactory()
    # Saved before the rule existed (the rule is the model's, so write around it).
    Buyer.objects.filter(pk=buyer.pk).update(
        operating_hours={"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}
    )
    response = page_client(bob).post(
        reverse("buyers:status", args=[buyer.pk]), {"status": "paused", "confirm": "yes"}
    )
    assert response.status_code == 302
    buyer.refresh_from_db()
    assert buyer.status == "paused"


# --- new buyers, clone ------------------------------------------------------------------------


def test_the_new_buyer_form_starts_paused(bob):
    page = page_client(bob).get(reverse("buyers:create")).content.decode()
    assert '<option value="paused" selected>Paused</option>' in page
    assert "A new buyer starts paused" in page


def test_the_admin_add_form_starts_paused_too_and_edits_keep_the_status(admin_client):
    page = admin_client.get(reverse("admin:buyers_buyer_add")).content.decode()
    assert '<option value="paused" selected>Paused</option>' in page
    buyer = BuyerFactory()
    form = BuyerForm(instance=buyer)
    assert form["status"].value() == "active"


def test_a_new_buyer_is_active_only_when_the_user_chooses_it(bob):
    _response, buyer = page_create(page_client(bob), status="paused")
    assert buyer is not None and buyer.status == "paused"


def test_clone_asks_for_a_name_and_grid_id_and_starts_paused(bob):
    source = BuyerFactory(
        name="Acme Auto",
        min_bid=Decimal("14.00"),
        daily_cap=50,
        monthly_cap=900,
        accepted_states=["CO", "TX"],
        operating_hours={"mon": [["09:00", "17:00"]]},
    )
    client = page_client(bob)
    form = client.get(reverse("buyers:clone", args=[source.pk])).content.decode()
    assert 'value="Acme Auto (copy)"' in form
    response = client.post(
        reverse("buyers:clone", args=[source.pk]),
        {"name": "Acme Auto West", "grid_id": "cm97s8hmv000999ijt06r4dj"},
    )
    copy = Buyer.objects.get(name="Acme Auto West")
    assert response["Location"] == reverse("buyers:detail", args=[copy.pk])
    assert copy.status == "paused" and copy.grid_id == "cm97s8hmv000999ijt06r4dj"
    assert (copy.min_bid, copy.daily_cap, copy.monthly_cap) == (Decimal("14.00"), 50, 900)
    assert copy.accepted_states == ["CO", "TX"]
    assert copy.operating_hours == {"mon": [["09:00", "17:00"]]}
    assert copy.history.latest().history_user == bob


def test_clone_refuses_a_taken_name_next_to_the_field(bob):
    source = BuyerFactory(name="Acme Auto")
    response = page_client(bob).post(
        reverse("buyers:clone", args=[source.pk]),
        {"name": "Acme Auto", "grid_id": "not a grid id"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Buyer with this Name already exists." in page
    assert 'value="not a grid id"' in page
    assert Buyer.objects.count() == 1


def test_viewers_cannot_clone(alice):
    source = BuyerFactory()
    assert page_client(alice).get(reverse("buyers:clone", args=[source.pk])).status_code == 403


# --- bulk status --------------------------------------------------------------------------------


def test_bulk_pause_asks_first_then_pauses_every_ticked_buyer(bob):
    first, second, untouched = BuyerFactory(name="A"), BuyerFactory(name="B"), BuyerFactory()
    client = page_client(bob)
    asked = client.post(
        reverse("buyers:bulk_status"), {"buyers": [first.pk, second.pk], "status": "paused"}
    )
    page = asked.content.decode()
    assert asked.status_code == 200 and "Pause 2 buyers?" in page
    assert {b.status for b in Buyer.objects.all()} == {"active"}
    done = client.post(
        reverse("buyers:bulk_status"),
        {"buyers": [first.pk, second.pk], "status": "paused", "confirm": "yes"},
        follow=True,
    )
    assert "Now paused: A, B." in done.content.decode()
    statuses = dict(Buyer.objects.values_list("name", "status"))
    assert statuses == {"A": "paused", "B": "paused", untouched.name: "active"}
    assert Buyer.objects.get(pk=first.pk).history.latest().history_user == bob


def test_bulk_activate_needs_no_confirmation(bob):
    buyer = BuyerFactory(status="paused")
    page_client(bob).post(reverse("buyers:bulk_status"), {"buyers": [buyer.pk], "status": "active"})
    buyer.refresh_from_db()
    assert buyer.status == "active"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"status": "paused"}, "Buyers: Tick at least one buyer."),
        ({"buyers": ["999999999"], "status": "paused"}, "Select a valid choice."),
        ({"buyers": ["x"], "status": "paused"}, "is not a valid value"),
        ({"buyers": ["1"], "status": "disabled"}, "Status: Select a valid choice."),
    ],
)
def test_bulk_action_with_bad_input_names_the_field(bob, data, message):
    BuyerFactory()
    response = page_client(bob).post(reverse("buyers:bulk_status"), data, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert {b.status for b in Buyer.objects.all()} == {"active"}


def test_viewers_cannot_bulk_pause_and_see_no_checkboxes(alice):
    buyer = BuyerFactory()
    client = page_client(alice)
    assert 'name="buyers"' not in client.get(reverse("buyers:list")).content.decode()
    response = client.post(
        reverse("buyers:bulk_status"), {"buyers": [buyer.pk], "status": "paused", "confirm": "yes"}
    )
    assert response.status_code == 403
    buyer.refresh_from_db()
    assert buyer.status == "active"


# --- the buyer page's figures ------------------------------------------------------------------


def test_the_buyer_page_shows_its_figures_gauges_and_open_alerts_first(alice):
    buyer = BuyerFactory(name="Acme Auto", daily_cap=4, monthly_cap=100, timeout_seconds=2)
    for duration in (100, 300, 900):
        BidLogFactory(buyer=buyer, duration_ms=duration)
    BidLogFactory(buyer=buyer, outcome="declined", code=2000, bid_amount=None, duration_ms=200)
    for _ in range(3):
        CallFactory(winner=buyer, routed=True, bid_amount=Decimal("25.50"))
    Alert.objects.create(
        buyer=buyer, rule=AlertRule.TIMEOUTS, priority="immediate", title="Timeouts too high"
    )
    response = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk]))
    page = response.content.decode()
    figures = response.context["figures"]
    assert figures["bids"] == 4 and figures["acceptance"] == "75%"
    assert figures["revenue"] == Decimal("76.50") and figures["routed_calls"] == 3
    assert figures["p95"] is not None and figures["timeout_ms"] == 2000
    gauges = {gauge["key"]: gauge for gauge in figures["gauges"]}
    assert gauges["daily-cap"]["text"] == "3 of 4 routed calls (75%)"
    assert gauges["monthly-cap"]["text"] == "3 of 100 routed calls (3%)"
    assert '<meter id="gauge-daily-cap" min="0" max="4" value="3"' in page
    # Open alerts and the figures come before the forms and the settings.
    assert page.index("Open alerts") < page.index("Last 24 hours") < page.index("Test bid")
    assert page.index("Timeouts too high") < page.index("Could this caller be sent now?")
    assert f'href="/bids/?buyer={buyer.pk}"' in page
    assert timezone.now()  # the page reads the last 24 hours up to now
