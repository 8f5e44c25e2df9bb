"""The call pages: the routing decisions, the bids behind each, and the paid-out mark."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import Call
from bidlog.routing.eligibility import eligibility_check
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

CALLER = "3035551234"


@pytest.fixture
def sold(db):
    """A call sold to Acme after Beta was skipped and Gamma declined."""
    acme = BuyerFactory(name="Acme", priority=1, duplicate_window_days=30)
    beta = BuyerFactory(name="Beta", priority=2)
    gamma = BuyerFactory(name="Gamma", priority=3)
    call = CallFactory(
        caller_id=CALLER,
        strategy="highest_bid",
        winner=acme,
        routed=True,
        bid_amount=Decimal("42.00"),
        destination="13035550142",
        params={"PublisherId": "pub-1", "Callback": CALLER},
        created_at=timezone.now() - timedelta(minutes=5),
    )
    BidLogFactory(call=call, buyer=acme, caller_id=CALLER, bid_amount=Decimal("42.00"))
    BidLogFactory(
        call=call,
        buyer=beta,
        caller_id=CALLER,
        outcome=Outcome.SKIPPED_HOURS,
        code=None,
        http_status=None,
        bid_amount=None,
        message="",
        error="outside operating hours (Sun 23:03 in America/Denver)",
    )
    BidLogFactory(
        call=call,
        buyer=gamma,
        caller_id=CALLER,
        outcome=Outcome.DECLINED,
        code=2000,
        bid_amount=None,
        message="Bid declined",
    )
    return call


@pytest.mark.parametrize("name, args", [("calls:list", []), ("calls:detail", [1])])
def test_visitors_are_sent_to_the_login_page(db, name, args):
    response = Client().get(reverse(name, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_user_without_a_role_is_refused(db):
    assert page_client(UserFactory(role=None)).get(reverse("calls:list")).status_code == 403


def test_the_list_shows_each_decision_newest_first(bob, sold):
    unsold = CallFactory(caller_id="7205559876", routed=False)
    response = page_client(bob).get(reverse("calls:list"))
    rows = response.context["rows"]
    assert [row["id"] for row in rows] == [unsold.pk, sold.pk]
    page = response.content.decode()
    assert "Not routed" in page and "Routed" in page
    assert f'href="{reverse("calls:detail", args=[sold.pk])}"' in page
    assert "$42.00" in page and CALLER in page


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"routed": "false"}, "unsold"),
        ({"routed": "true"}, "sold"),
        ({"paid_out": "false"}, None),
        ({"strategy": "highest_bid"}, "sold"),
        ({"caller_id": "(720) 555-9876"}, "unsold"),
    ],
)
def test_filters_pick_the_calls(alice, sold, query, expected):
    unsold = CallFactory(caller_id="7205559876", routed=False, strategy="waterfall")
    wanted = {"sold": [sold.pk], "unsold": [unsold.pk], None: []}[expected]
    rows = page_client(alice).get(reverse("calls:list"), query).context["rows"]
    assert [row["id"] for row in rows] == wanted


def test_the_winner_is_picked_by_name(alice, sold):
    CallFactory(routed=False)
    form = page_client(alice).get(reverse("calls:list")).context["filter"].form
    assert "Acme" in str(form["winner"])
    rows = page_client(alice).get(reverse("calls:list"), {"winner": sold.winner_id})
    assert [row["id"] for row in rows.context["rows"]] == [sold.pk]


def test_a_bad_filter_is_named_on_the_page(alice, sold):
    response = page_client(alice).get(reverse("calls:list"), {"since": "soon"})
    assert response.status_code == 200
    assert "since" in response.context["filter"].errors
    assert "Fix the filters above to see calls." in response.content.decode()


def test_pages_follow_a_cursor_and_a_broken_one_shows_the_newest(alice, db):
    start = timezone.now() - timedelta(hours=1)
    calls = [CallFactory(created_at=start + timedelta(seconds=i)) for i in range(53)]
    client = page_client(alice)
    first = client.get(reverse("calls:list"))
    assert [row["id"] for row in first.context["rows"]][:2] == [calls[-1].pk, calls[-2].pk]
    older = first.context["older"]
    assert older
    second = client.get(f"{reverse('calls:list')}?{older}")
    assert [row["id"] for row in second.context["rows"]] == [c.pk for c in calls[2::-1]]
    assert second.context["older"] == ""
    broken = client.get(reverse("calls:list"), {"before": "yesterday~x"})
    assert broken.context["broken_link"]
    assert len(broken.context["rows"]) == 50


def test_viewers_see_caller_ids_masked_in_the_list_and_the_call(alice, bob, sold):
    for url in (reverse("calls:list"), reverse("calls:detail", args=[sold.pk])):
        masked = page_client(alice).get(url).content.decode()
        assert CALLER not in masked
        assert "303***1234" in masked
        assert CALLER in page_client(bob).get(url).content.decode()


def test_a_call_shows_every_bid_behind_it_in_order_with_reasons(alice, sold):
    response = page_client(alice).get(reverse("calls:detail", args=[sold.pk]))
    assert [bid["buyer_name"] for bid in response.context["bids"]] == ["Acme", "Beta", "Gamma"]
    page = response.content.decode()
    assert "outside operating hours (Sun 23:03 in America/Denver)" in page
    assert "Bid declined" in page
    assert "PublisherId=pub-1" in page
    assert page.count("<strong>won</strong>") == 1
    # The destination is phone-like: masked for viewers like every number (SPEC §6).
    assert "1303***0142" in page and "13035550142" not in page
    # Viewers read; only operators get the paid-out button.
    assert "Mark not paid out" not in page


def test_a_missing_call_is_404(alice):
    assert page_client(alice).get(reverse("calls:detail", args=[999999])).status_code == 404
    assert page_client(alice).get("/calls/x/").status_code == 404


def test_viewer_cannot_change_paid_out(alice, sold):
    response = page_client(alice).post(
        reverse("calls:paid-out", args=[sold.pk]), {"paid_out": "false"}
    )
    assert response.status_code == 403
    sold.refresh_from_db()
    assert sold.paid_out is True


def test_marking_not_paid_out_frees_the_caller_for_that_buyer(bob, sold):
    acme = sold.winner

    def blocked() -> bool:
        (answer,) = eligibility_check(
            buyers=[acme], caller_id=CALLER, state_code="CO", now=timezone.now()
        )
        return any(block.outcome == Outcome.SKIPPED_DUPLICATE for block in answer.blocks)

    assert blocked()
    client = page_client(bob)
    detail = reverse("calls:detail", args=[sold.pk])
    assert "Mark not paid out" in client.get(detail).content.decode()
    response = client.post(reverse("calls:paid-out", args=[sold.pk]), {"paid_out": "false"})
    assert response.status_code == 302 and response["Location"] == detail
    sold.refresh_from_db()
    assert sold.paid_out is False
    assert not blocked()
    page = client.get(detail).content.decode()
    assert "is marked not paid out: its caller may be sent to this buyer again" in page
    assert "Mark paid out" in page

    client.post(reverse("calls:paid-out", args=[sold.pk]), {"paid_out": "true"})
    sold.refresh_from_db()
    assert sold.paid_out is True
    assert blocked()


@pytest.mark.parametrize(
    "routed, value, message",
    [
        (False, "false", "Paid out: Only a routed call can be marked paid out."),
        (True, "maybe", "Paid out: choose true or false."),
    ],
)
def test_a_refused_paid_out_change_is_said_and_nothing_changes(bob, routed, value, message):
    call = CallFactory(routed=routed, winner=BuyerFactory() if routed else None)
    client = page_client(bob)
    response = client.post(reverse("calls:paid-out", args=[call.pk]), {"paid_out": value})
    assert response.status_code == 302
    assert message in client.get(response["Location"]).content.decode()
    assert Call.objects.get(pk=call.pk).paid_out is True


def test_a_bid_links_to_its_call(alice, sold):
    bid = sold.bids.first()
    page = page_client(alice).get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert f'href="{reverse("calls:detail", args=[sold.pk])}"' in page
