"""API authentication: tokens from ``issue_api_token``, roles, and the open endpoints."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from buyers.models import Buyer
from tests.factories import BuyerFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/buyers/"


def issue_token(*args: str) -> str:
    """Run the command as a script would and return what it printed."""
    out, err = StringIO(), StringIO()
    call_command("issue_api_token", *args, stdout=out, stderr=err)
    return out.getvalue()


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def new_buyer() -> dict[str, str]:
    return {"name": "Token Buyer", "grid_id": "cm97s8hmv000ijt06r4djmije"}


# Anonymous ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_request_to_buyers_is_refused(api_client, method):
    response = getattr(api_client, method)(URL, {}, format="json")
    # 401 rather than 403: the token scheme is advertised in WWW-Authenticate.
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


def test_anonymous_request_to_buyer_detail_is_refused(api_client):
    buyer = BuyerFactory()
    assert api_client.get(f"{URL}{buyer.pk}/").status_code == 401
    assert api_client.delete(f"{URL}{buyer.pk}/").status_code == 401


def test_health_stays_open_to_anonymous(api_client):
    assert api_client.get("/api/v1/health/").status_code == 200


def test_openapi_schema_renders_with_buyer_paths(viewer_api):
    # Signed in: the schema is not public unless API_DOCS_PUBLIC says so.
    response = viewer_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/buyers/" in schema["paths"]
    assert "/api/v1/buyers/{id}/" in schema["paths"]
    assert "health" in schema["components"]["schemas"]["Buyer"]["properties"]


def test_interactive_docs_are_served(viewer_api):
    response = viewer_api.get("/api/v1/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


# Tokens -------------------------------------------------------------------------------------


def test_command_prints_only_a_token_that_the_api_accepts(alice):
    printed = issue_token("alice")
    token = printed.strip()
    assert printed == token + "\n"
    assert " " not in token and len(token) >= 32
    BuyerFactory()
    response = token_client(token).get(URL)
    assert response.status_code == 200
    assert len(response.json()) == 1


def test_command_stores_token_hashed_with_default_expiry(alice, settings):
    token = issue_token("alice").strip()
    stored = AuthToken.objects.get(user=alice)
    assert token not in (stored.digest, stored.token_key)
    assert stored.expiry is not None
    assert stored.expiry > timezone.now() + timedelta(days=364)


def test_command_sets_expiry_in_days_and_zero_means_never(alice):
    issue_token("alice", "--expires-days", "2")
    issue_token("alice", "--expires-days", "0")
    expiries = sorted(
        AuthToken.objects.filter(user=alice).values_list("expiry", flat=True),
        key=lambda e: (e is None, e),
    )
    assert expiries[0] < timezone.now() + timedelta(days=2, minutes=1)
    assert expiries[1] is None


def test_command_refuses_unknown_user(db):
    with pytest.raises(CommandError, match="nobody"):
        issue_token("nobody")


def test_command_refuses_negative_expiry(alice):
    with pytest.raises(CommandError, match="expires-days"):
        issue_token("alice", "--expires-days", "-1")


def test_command_refuses_inactive_user(db):
    UserFactory(username="gone", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        issue_token("gone")


def test_revoked_token_is_refused(alice):
    token = issue_token("alice").strip()
    assert token_client(token).get(URL).status_code == 200
    printed = issue_token("alice", "--revoke-all")
    assert printed == ""
    assert not AuthToken.objects.filter(user=alice).exists()
    assert token_client(token).get(URL).status_code == 401


def test_revoke_all_leaves_other_users_tokens(alice, bob):
    issue_token("alice")
    bob_token = issue_token("bob").strip()
    issue_token("alice", "--revoke-all")
    assert token_client(bob_token).get(URL).status_code == 200


def test_expired_token_is_refused(alice):
    token = issue_token("alice", "--expires-days", "1").strip()
    AuthToken.objects.filter(user=alice).update(expiry=timezone.now() - timedelta(seconds=1))
    assert token_client(token).get(URL).status_code == 401


def test_malformed_token_is_refused(alice):
    assert token_client("not-a-token").get(URL).status_code == 401


# Roles over tokens ----------------------------------------------------------------------------


def test_viewer_token_reads_but_cannot_write(alice):
    client = token_client(issue_token("alice").strip())
    assert client.get(URL).status_code == 200
    response = client.post(URL, new_buyer(), format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Your role does not allow this."


def test_operator_token_creates_and_updates_but_cannot_delete(bob):
    client = token_client(issue_token("bob").strip())
    created = client.post(URL, new_buyer(), format="json")
    assert created.status_code == 201, created.json()
    detail = f"{URL}{created.json()['id']}/"
    assert client.patch(detail, {"priority": 3}, format="json").status_code == 200
    assert client.delete(detail).status_code == 403
    assert Buyer.objects.get().priority == 3


def test_admin_token_deletes(charlie):
    buyer = BuyerFactory()
    client = token_client(issue_token("charlie").strip())
    assert client.delete(f"{URL}{buyer.pk}/").status_code == 204
    assert not Buyer.objects.exists()


def test_superuser_counts_as_admin(admin_user):
    buyer = BuyerFactory()
    client = token_client(issue_token(admin_user.username).strip())
    assert client.delete(f"{URL}{buyer.pk}/").status_code == 204


def test_token_write_is_recorded_with_its_user(bob):
    client = token_client(issue_token("bob").strip())
    buyer = BuyerFactory()
    response = client.patch(f"{URL}{buyer.pk}/", {"notes": "via token"}, format="json")
    assert response.status_code == 200
    assert buyer.history.first().history_user == bob
