"""The buyer pages: who may see and change what, the forms' messages and the eligibility check."""

import re
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus, Outcome, Source
from bidlog.models import Alert, BidLog
from callgrid_portal.roles import ROLES
from tests.buyer_data import page_create, page_fields
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

CALLER = "3035551234"


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("buyers:list", {}),
        ("buyers:create", {}),
        ("buyers:detail", {"pk": 1}),
        ("buyers:edit", {"pk": 1}),
    ],
)
def test_visitors_are_sent_to_the_login_page(db, name, kwargs):
    response = Client().get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_login_page_signs_in_and_goes_to_the_buyers(alice):
    client = Client()
    assert client.get(reverse("login")).status_code == 200
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery staple"}
    )
    assert response["Location"] == reverse("home")
    assert client.get(reverse("buyers:list")).status_code == 200


def test_a_user_without_a_role_is_refused(db):
    response = page_client(UserFactory(username="norole")).get(reverse("buyers:list"))
    assert response.status_code == 403


def test_viewer_sees_the_list_in_priority_order_without_edit_links(alice):
    BuyerFactory(name="Second", priority=2)
    BuyerFactory(name="First", priority=1)
    page = page_client(alice).get(reverse("buyers:list")).content.decode()
    assert page.index("First") < page.index("Second")
    assert "unknown" in page  # no answers yet: the health badge says so
    assert reverse("buyers:create") not in page


def test_operator_sees_the_add_and_edit_links(bob):
    buyer = BuyerFactory()
    client = page_client(bob)
    assert reverse("buyers:create") in client.get(reverse("buyers:list")).content.decode()
    detail = client.get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    assert reverse("buyers:edit", args=[buyer.pk]) in detail
    assert f"<title>{buyer.name} · CallGrid Portal</title>" in detail


def test_viewer_cannot_create_or_edit(alice):
    buyer = BuyerFactory(name="Kept")
    client = page_client(alice)
    refused = client.get(reverse("buyers:create"))
    assert refused.status_code == 403
    assert "This page needs the operator role." in refused.content.decode()
    response = client.post(reverse("buyers:edit", args=[buyer.pk]), page_fields(name="Taken"))
    assert response.status_code == 403
    buyer.refresh_from_db()
    assert buyer.name == "Kept"


def test_recent_bids_show_caller_ids_in_full_only_to_operators(alice, bob):
    buyer = BuyerFactory()
    number = "7205559876"
    BidLogFactory(
        buyer=buyer,
        caller_id=number,
        outcome=Outcome.BAD_RESPONSE,
        error=f"answered for caller {number} with no destination",
    )
    url = reverse("buyers:detail", args=[buyer.pk])
    viewer_page = page_client(alice).get(url).content.decode()
    assert "720***9876" in viewer_page
    assert number not in viewer_page
    assert viewer_page.count("720***9876") == 2  # the caller column and the error text
    assert number in page_client(bob).get(url).content.decode()


def test_operator_creates_a_buyer_recorded_with_its_author(bob):
    response, buyer = page_create(page_client(bob))
    assert buyer is not None
    assert response.status_code == 302
    assert response["Location"] == reverse("buyers:detail", args=[buyer.pk])
    assert buyer.min_bid == Decimal("12.50")
    assert buyer.accepted_states == ["CO", "TX"]
    assert buyer.history.latest().history_user == bob


def test_bad_values_are_shown_next_to_their_fields_and_nothing_changes(bob):
    buyer = BuyerFactory(name="Steady", min_bid=Decimal("10.00"))
    response = page_client(bob).post(
        reverse("buyers:edit", args=[buyer.pk]),
        page_fields(
            name="Steady",
            grid_id=buyer.grid_id,
            min_bid="-1",
            extra_params="{not json",
            accepted_states="CO, XX",
            timeout_seconds="60",
        ),
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"min_bid", "extra_params", "accepted_states", "timeout_seconds"}
    page = response.content.decode()
    assert "Please correct the errors below." in page
    assert "Enter valid JSON" in page
    buyer.refresh_from_db()
    assert buyer.min_bid == Decimal("10.00")


def test_a_new_buyer_form_starts_with_empty_boxes_not_null(bob):
    form = page_client(bob).get(reverse("buyers:create")).context["form"]
    assert form["extra_params"].value() == ""
    assert form["operating_hours"].value() == ""
    page = page_client(bob).get(reverse("buyers:create")).content.decode()
    assert ">null<" not in page
    assert '<option value="America/Denver">' in page  # the time-zone picker


def test_hours_and_parameters_are_typed_as_text_and_shown_back_the_same_way(bob):
    client = page_client(bob)
    response, buyer = page_create(
        client,
        extra_params="PublisherId = pub-123\nCampaignType=auto",
        operating_hours="weekdays 8:00-20:00; sat 10:00-14:00",
    )
    assert response.status_code == 302 and buyer is not None
    assert buyer.extra_params == {"PublisherId": "pub-123", "CampaignType": "auto"}
    weekday = [["08:00", "20:00"]]
    assert buyer.operating_hours == {
        "mon": weekday,
        "tue": weekday,
        "wed": weekday,
        "thu": weekday,
        "fri": weekday,
        "sat": [["10:00", "14:00"]],
    }
    form = client.get(reverse("buyers:edit", args=[buyer.pk])).context["form"]
    assert form["operating_hours"].value() == "mon-fri 08:00-20:00\nsat 10:00-14:00"
    assert form["extra_params"].value() == "PublisherId=pub-123\nCampaignType=auto"
    detail = client.get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    assert "Mon-Fri 08:00-20:00; Sat 10:00-14:00; closed Sun" in detail
    assert "<code>PublisherId=pub-123</code>" in detail


def test_the_api_json_pasted_into_the_form_is_taken_as_it_is(bob):
    response, buyer = page_create(
        page_client(bob),
        extra_params='{"PublisherId": "pub-9"}',
        operating_hours='{"sun": [["10:00", "14:00"]]}',
    )
    assert response.status_code == 302 and buyer is not None
    assert buyer.extra_params == {"PublisherId": "pub-9"}
    assert buyer.operating_hours == {"sun": [["10:00", "14:00"]]}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("operating_hours", "fri 22:00-02:00", "open the next day at 00:00"),
        ("operating_hours", "someday 09:00-17:00", "&#x27;someday&#x27; is not a day"),
        ("operating_hours", '{"mon": [["17:00", "09:00"]]}', "must open before it closes"),
        ("extra_params", "PublisherId", "write each parameter as Name=value"),
        ("extra_params", "CallerId=3035551234", "CallerId is set per call"),
        ("extra_params", "A=1\nA=2", "A is given twice"),
    ],
)
def test_unreadable_hours_or_parameters_are_named_and_nothing_is_saved(bob, field, value, message):
    buyer = BuyerFactory(name="Steady", operating_hours={}, extra_params={})
    response = page_client(bob).post(
        reverse("buyers:edit", args=[buyer.pk]),
        page_fields(name="Steady", grid_id=buyer.grid_id, **{field: value}),
    )
    assert response.status_code == 200
    assert list(response.context["form"].errors) == [field]
    page = response.content.decode()
    assert message in page
    assert value.replace('"', "&quot;") in page  # what was typed is still in the box
    buyer.refresh_from_db()
    assert buyer.operating_hours == {} and buyer.extra_params == {}


def test_edit_of_a_missing_buyer_is_404(bob):
    assert page_client(bob).get(reverse("buyers:edit", args=[999999])).status_code == 404
    assert page_client(bob).get("/buyers/x/").status_code == 404


def test_eligibility_says_yes_for_a_caller_nothing_blocks(alice):
    buyer = BuyerFactory(name="Open")
    url = reverse("buyers:detail", args=[buyer.pk])
    page = page_client(alice).get(url, {"caller_id": "(303) 555-1234", "state_code": "co"})
    assert "Open can be sent this caller now." in page.content.decode()


def test_eligibility_names_the_duplicate_window_and_when_it_ends(alice):
    buyer = BuyerFactory(name="Dup", duplicate_window_days=30)
    paid = timezone.now() - timedelta(days=2)
    CallFactory(winner=buyer, routed=True, paid_out=True, caller_id=CALLER, created_at=paid)
    until = (paid + timedelta(days=30)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    url = reverse("buyers:detail", args=[buyer.pk])
    page = page_client(alice).get(url, {"caller_id": CALLER}).content.decode()
    assert "Dup cannot be sent this caller now" in page
    assert f"duplicate window (30 days) until {until}" in page
    assert f"It can be sent from {until}." in page


def test_eligibility_of_a_paused_buyer_has_no_end(alice):
    buyer = BuyerFactory(name="Napping", status="paused")
    page = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk]), {"caller_id": CALLER})
    text = page.content.decode()
    assert "buyer is paused" in text
    assert "It can be sent from" not in text


@pytest.mark.parametrize(
    "query, message",
    [
        ({"caller_id": "123"}, "Invalid caller ID"),
        ({"caller_id": "abc"}, "Invalid caller ID"),
        ({"caller_id": ""}, "This field is required."),
        ({"caller_id": CALLER, "state_code": "ZZ"}, "is not a US state code"),
        ({"caller_id": "9" * 500}, "at most 40 characters"),
    ],
)
def test_bad_eligibility_input_is_named_on_the_page(alice, query, message):
    buyer = BuyerFactory()
    response = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk]), query)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert "eligibility" not in response.context


def test_a_nul_in_the_query_is_refused_not_a_crash(alice):
    buyer = BuyerFactory()
    response = page_client(alice).get(
        reverse("buyers:detail", args=[buyer.pk]), {"caller_id": "303\x00555"}
    )
    assert response.status_code == 400
    assert "caller_id" in response.content.decode()


# --- test bids from the page ----------------------------------------------------------------


def test_viewer_cannot_send_a_test_bid(alice):
    buyer = BuyerFactory()
    response = page_client(alice).post(reverse("buyers:test_bid", args=[buyer.pk]))
    assert response.status_code == 403
    assert not BidLog.objects.exists()


def test_a_bad_test_caller_is_shown_next_to_its_field_with_what_was_typed(bob):
    buyer = BuyerFactory()
    response = page_client(bob).post(
        reverse("buyers:test_bid", args=[buyer.pk]),
        {"test-caller_id": "555-1234", "test-state_code": "zz"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    # The buyer's page itself, with both errors under their fields and the text kept.
    assert f"<h1>{buyer.name} " in page
    caller = _input(page, "test-caller_id")
    assert 'value="555-1234"' in caller
    assert 'aria-invalid="true"' in caller and "invalid" in caller
    assert "Invalid caller ID" in page
    assert 'value="zz"' in _input(page, "test-state_code")
    assert "is not a US state code" in page
    assert not BidLog.objects.exists()


def _input(page: str, name: str) -> str:
    """The ``<input>`` tag named ``name`` in ``page``."""
    start = page.index(f'name="{name}"')
    return page[page.rindex("<input", 0, start) : page.index(">", start) + 1]


def test_operator_queues_a_test_bid_and_the_page_waits_for_it(bob):
    buyer = BuyerFactory(health_check_caller_id="7205550100")
    response = page_client(bob).post(
        reverse("buyers:test_bid", args=[buyer.pk]), {"test-caller_id": "", "test-state_code": ""}
    )
    bid = BidLog.objects.get()
    assert (bid.source, bid.outcome, bid.caller_id) == (Source.TEST, Outcome.PENDING, "7205550100")
    page_url = reverse("buyers:detail", args=[buyer.pk])
    assert response["Location"] == f"{page_url}?test_bid={bid.pk}#test-bid"
    page = page_client(bob).get(page_url, {"test_bid": bid.pk}).content.decode()
    assert "waiting for CallGrid" in page
    assert f'data-poll="{reverse("api:bid-detail", args=[bid.pk])}"' in page


def test_the_answer_of_a_test_bid_is_shown(alice, bob):
    buyer = BuyerFactory()
    bid = BidLogFactory(
        buyer=buyer,
        source=Source.TEST,
        outcome=Outcome.ACCEPTED,
        code=1000,
        bid_amount=Decimal("31.25"),
        destination="13035550000",
        duration_ms=48,
    )
    url = reverse("buyers:detail", args=[buyer.pk])
    text = page_client(alice).get(url, {"test_bid": bid.pk}).content.decode()
    # A viewer reads the destination masked, like every phone-like value (SPEC §6).
    assert (
        "Answer: <strong>Accepted</strong> (code 1000), bid $31.25 to 1303***0000, in 48 ms" in text
    )
    full = page_client(bob).get(url, {"test_bid": bid.pk}).content.decode()
    assert "bid $31.25 to 13035550000, in 48 ms" in full
    assert 'data-poll="' not in text


@pytest.mark.parametrize("wanted", ["x", "-1", "9" * 40, "0"])
def test_a_test_bid_parameter_that_names_nothing_is_ignored(alice, wanted):
    buyer = BuyerFactory()
    other = BidLogFactory(source=Source.TEST, outcome=Outcome.ACCEPTED)  # another buyer's
    url = reverse("buyers:detail", args=[buyer.pk])
    for value in (wanted, str(other.pk)):
        response = page_client(alice).get(url, {"test_bid": value})
        assert response.status_code == 200
        assert response.context["test_bid"] is None


def test_broker_down_says_so_and_leaves_no_pending_row(transactional_db, broker_down):
    # Committed data, as in production: the task is published as the row commits.
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    operator = UserFactory(username="olga", role="operator")
    buyer = BuyerFactory()
    response = page_client(operator).post(reverse("buyers:test_bid", args=[buyer.pk]), follow=True)
    assert "The task queue is not reachable" in response.content.decode()
    assert not BidLog.objects.exists()


def test_the_buyer_page_shows_its_health_check_history(alice):
    buyer = BuyerFactory(health_check_minutes=15)
    BidLogFactory(
        buyer=buyer,
        source=Source.HEALTH,
        outcome=Outcome.TIMEOUT,
        code=None,
        error="no answer within 5.0 s",
    )
    BidLogFactory(buyer=buyer, source=Source.LIVE, message="a live one")
    response = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk]))
    [check] = response.context["health_checks"]
    assert check["error"] == "no answer within 5.0 s"
    assert "Every 15 minutes" in response.content.decode()


@pytest.mark.parametrize(
    "query, expected",
    [
        ({}, ["Acme Auto", "Sunny Solar", "Quiet Home"]),
        ({"q": "solar"}, ["Sunny Solar"]),
        ({"q": "cgquiet"}, ["Quiet Home"]),
        ({"status": "paused"}, ["Quiet Home"]),
        ({"vertical": "insurance"}, ["Acme Auto"]),
        ({"q": "nothing like it"}, []),
    ],
)
def test_the_list_searches_and_narrows(alice, query, expected):
    BuyerFactory(name="Acme Auto", priority=1, vertical="insurance")
    BuyerFactory(name="Sunny Solar", priority=2, vertical="solar")
    BuyerFactory(
        name="Quiet Home",
        priority=3,
        vertical="home_services",
        status="paused",
        grid_id="cgquiet00000000000000000",
    )
    response = page_client(alice).get(reverse("buyers:list"), query)
    assert [buyer.name for buyer, *_ in response.context["rows"]] == expected
    if not expected:
        assert "No buyer matches." in response.content.decode()


@pytest.mark.parametrize("role", ["alice", "bob"])
def test_the_list_rows_show_each_buyers_settings_escaped(role, alice, bob):
    user = {"alice": alice, "bob": bob}[role]
    odd = BuyerFactory(
        name='<b>"Odd" & co</b>',
        priority=12,
        min_bid=Decimal("7.50"),
        max_concurrency=4,
        rate_limit_per_minute=90,
        duplicate_window_days=0,
        status="paused",
    )
    plain = BuyerFactory(name="Plain", priority=13, duplicate_window_days=30)
    for minutes in (5, 70):
        BidLogFactory(buyer=plain, created_at=timezone.now() - timedelta(minutes=minutes))

    page = page_client(user).get(reverse("buyers:list")).content.decode()

    rows = re.findall(r"<tr><td>.*?</tr>", re.sub(r">\s+<", "><", page), flags=re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row, flags=re.S) for row in rows]
    pick = [
        f'<input type="checkbox" name="buyers" value="{odd.pk}" id="pick-{odd.pk}" '
        'aria-label="Select &lt;b&gt;&quot;Odd&quot; &amp; co&lt;/b&gt;">'
    ]
    first = cells[0][1:] if role == "bob" else cells[0]
    assert cells[0][:1] == (pick if role == "bob" else ["12"])
    assert first[:5] == [
        "12",
        f'<a href="{reverse("buyers:detail", args=[odd.pk])}">'
        "&lt;b&gt;&quot;Odd&quot; &amp; co&lt;/b&gt;</a>",
        f"<code>{odd.grid_id}</code>",
        '<span class="badge paused">Paused</span>',
        '<span class="badge unknown">unknown</span>',
    ]
    assert "0 bids in the last 24 hours" in first[5]
    assert first[6:] == ["$7.50", "4 at once, 90/min"]
    second = cells[1][1:] if role == "bob" else cells[1]
    assert "2 bids in the last 24 hours, at most 1 in one hour" in second[5]
    assert second[7].endswith("/min, 30-day duplicate window")


def test_a_bad_list_filter_is_named_not_a_crash(alice):
    BuyerFactory()
    response = page_client(alice).get(reverse("buyers:list"), {"status": "asleep"})
    assert response.status_code == 200
    assert "status" in response.context["filter"].errors
    assert "Fix the filters above to see buyers." in response.content.decode()


def test_operator_pauses_and_activates_a_buyer_from_its_page(bob):
    buyer = BuyerFactory(name="Acme Auto")
    client = page_client(bob)
    page = client.get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    assert 'value="paused" data-confirm="Pause Acme Auto? It will get no calls' in page
    assert 'value="active">Activate</button>' not in page  # already active
    # Without a confirmation the answer asks first and changes nothing (no JavaScript).
    asked = client.post(reverse("buyers:status", args=[buyer.pk]), {"status": "paused"})
    assert asked.status_code == 200
    assert "Pause Acme Auto? It will get no calls until someone activates it again." in (
        asked.content.decode()
    )
    assert '<input type="hidden" name="confirm" value="yes">' in asked.content.decode()
    buyer.refresh_from_db()
    assert buyer.status == "active"
    response = client.post(
        reverse("buyers:status", args=[buyer.pk]), {"status": "paused", "confirm": "yes"}
    )
    assert response.status_code == 302
    buyer.refresh_from_db()
    assert buyer.status == "paused"
    assert buyer.history.latest().history_user == bob
    page = client.get(response["Location"]).content.decode()
    assert "Acme Auto is now paused." in page
    assert 'value="active">Activate</button>' in page
    client.post(reverse("buyers:status", args=[buyer.pk]), {"status": "active"})
    buyer.refresh_from_db()
    assert buyer.status == "active"


def test_viewer_cannot_change_a_status_and_sees_no_buttons(alice):
    buyer = BuyerFactory()
    client = page_client(alice)
    assert (
        "Pause</button>"
        not in client.get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    )
    response = client.post(reverse("buyers:status", args=[buyer.pk]), {"status": "paused"})
    assert response.status_code == 403
    buyer.refresh_from_db()
    assert buyer.status == "active"


def test_an_unknown_status_is_said_and_nothing_changes(bob):
    buyer = BuyerFactory()
    client = page_client(bob)
    response = client.post(reverse("buyers:status", args=[buyer.pk]), {"status": "asleep"})
    assert (
        "Status: choose active, paused, disabled."
        in client.get(response["Location"]).content.decode()
    )
    buyer.refresh_from_db()
    assert buyer.status == "active"


def test_the_buyer_page_lists_its_alerts_open_first_with_guidance(alice):
    buyer = BuyerFactory(name="Acme Auto")
    other = BuyerFactory(name="Other")
    now = timezone.now()
    resolved = Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.TIMEOUTS,
        priority="review",
        title="Acme Auto: slow answers",
        status=AlertStatus.RESOLVED,
        opened_at=now - timedelta(hours=1),
        resolved_at=now - timedelta(minutes=30),
    )
    opened = Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.DISABLED,
        code=4001,
        priority="immediate",
        title="Acme Auto: campaign disabled",
        detail="Reactivate the campaign in CallGrid.",
        opened_at=now - timedelta(hours=3),
    )
    Alert.objects.create(buyer=other, rule=AlertRule.DISABLED, priority="immediate", title="x")
    Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.DECLINES,
        priority="normal",
        title="Acme Auto: long ago",
        status=AlertStatus.RESOLVED,
        opened_at=now - timedelta(days=30),
        resolved_at=now - timedelta(days=20),
    )
    response = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk]))
    assert [alert.pk for alert in response.context["alerts"]] == [opened.pk, resolved.pk]
    page = response.content.decode()
    assert "Reactivate the campaign in CallGrid." in page
    assert 'href="/troubleshooting/#code-4001"' in page
    assert "resolved " in page


def test_a_buyer_without_alerts_says_so(alice):
    buyer = BuyerFactory()
    page = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    assert "No open alerts, and none resolved in the last week." in page


def test_the_buyer_page_shows_who_changed_what(bob):
    client = page_client(bob)
    _response, buyer = page_create(client)
    assert buyer is not None
    client.post(
        reverse("buyers:edit", args=[buyer.pk]),
        page_fields(min_bid="14.00", operating_hours="mon-fri 09:00-17:00", auto_pause="on"),
    )
    client.post(reverse("buyers:status", args=[buyer.pk]), {"status": "paused", "confirm": "yes"})
    response = client.get(reverse("buyers:detail", args=[buyer.pk]))
    changes = response.context["changes"]
    assert [change["who"] for change in changes] == ["bob", "bob", "bob"]
    assert changes[0]["fields"] == [("Status", "Active", "Paused")]
    assert set(changes[1]["fields"]) == {
        ("Minimum bid", "12.50", "14.00"),
        ("Operating hours", "always open", "Mon-Fri 09:00-17:00; closed Sat, Sun"),
        ("Pause on immediate alerts", "no", "yes"),
    }
    assert changes[2]["kind"] == "Created" and changes[2]["fields"] == []
    assert "Minimum bid: 12.50 → <strong>14.00</strong>" in response.content.decode()
