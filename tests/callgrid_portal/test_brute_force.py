"""Login and token brute force: wrong passwords lock the username and the client address
(django-axes), a rotated X-Forwarded-For does not reset the count, and failed API token
logins are throttled per address."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from callgrid_portal.throttles import client_address
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
ATTACKER = "198.51.100.7"


@pytest.fixture
def victim(db):
    return UserFactory(username="victim", role="viewer")


def _login(username: str, password: str, address: str, forwarded: str | None = None) -> int:
    # The connection's address as the test client's WSGI environ carries it.
    client = Client(REMOTE_ADDR=address)
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    response = client.post(
        reverse("login"), {"username": username, "password": password}, headers=headers
    )
    return response.status_code


def test_sixty_wrong_passwords_lock_the_username_even_with_the_right_one(victim):
    answers = [_login("victim", f"guess-{n}", ATTACKER) for n in range(60)]
    # Wrong passwords are answered by the form (200) until the limit, then refused (429).
    assert answers[0] == 200
    assert answers[-1] == 429
    assert answers.count(429) >= 50
    assert _login("victim", PASSWORD, ATTACKER) == 429
    # From another address too: the username itself is locked.
    assert _login("victim", PASSWORD, "203.0.113.9") == 429


def test_a_rotated_x_forwarded_for_does_not_reset_the_count(victim, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    answers = [
        _login(f"nobody{n}", "guess", ATTACKER, forwarded=f"10.0.{n // 250}.{n % 250}")
        for n in range(60)
    ]
    # Each try names another user and another forwarded address: the connection's address
    # is what counts, and it is locked.
    assert answers[-1] == 429
    assert answers.count(429) >= 50


def test_a_correct_login_of_another_user_still_works(victim, db):
    UserFactory(username="colleague", role="viewer")
    for n in range(60):
        _login("victim", f"guess-{n}", ATTACKER)
    assert _login("colleague", PASSWORD, "203.0.113.9") == 302


def test_failed_token_logins_are_throttled_per_address(api_client, db, settings):
    settings.TOKEN_FAILURE_THROTTLE_RATE = "5/hour"
    answers = [
        api_client.get(
            "/api/v1/bids/",
            HTTP_AUTHORIZATION=f"Token {n:064x}",
            REMOTE_ADDR=ATTACKER,
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}",
        )
        for n in range(8)
    ]
    assert [answer.status_code for answer in answers] == [401] * 5 + [429] * 3
    assert int(answers[-1]["Retry-After"]) > 0
    # Another address still gets its answer.
    other = api_client.get(
        "/api/v1/bids/", HTTP_AUTHORIZATION="Token " + "f" * 64, REMOTE_ADDR="203.0.113.9"
    )
    assert other.status_code == 401


def test_behind_trusted_proxies_the_address_they_appended_counts(settings, rf):
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7")
    assert client_address(request) == "10.0.0.1"  # no trusted proxy: the header is ignored
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "198.51.100.7"  # what our one proxy appended
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_address(request) == "1.2.3.4"
    settings.TRUSTED_PROXY_COUNT = 3  # fewer entries than proxies: the connection's address
    assert client_address(request) == "10.0.0.1"
