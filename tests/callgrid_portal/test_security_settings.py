"""Headers and assets: Content-Security-Policy with no inline script or style on the pages,
HSTS over HTTPS, secure cookies from their own setting, Swagger UI served from the project,
schema and docs behind a login, and ``check --deploy`` clean with a production-like env."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from bidlog.choices import Outcome
from callgrid_portal.middleware import NOT_A_PAGE_POLICY
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

ROOT = Path(__file__).resolve().parents[2]


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SECURE_", "API_DOCS", "DEBUG", "SECRET_KEY"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="callgrid_portal.settings",
        DATA_DIR=str(tmp_path),
        DEBUG="false",
        SECRET_KEY="x7$k2!pQ9zL@v4#mN8&rT1^wY6*bE3(hJ5)uC0-aF_gD+sK" * 2,
        ALLOWED_HOSTS="portal.example.com",
        CSRF_TRUSTED_ORIGINS="https://portal.example.com",
        **extra,
    )
    return env


def _settings_under(env: dict[str, str], *names: str) -> dict[str, object]:
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_a_production_like_env(tmp_path):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=_production_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_hsts_and_secure_cookies_follow_https_by_default_and_their_own_settings(tmp_path):
    names = ("SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")
    https = _settings_under(_production_env(tmp_path), *names)
    assert https == {
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }
    # TLS ends at a proxy: no redirect here, yet the cookies stay secure and HSTS is on.
    behind_proxy = _settings_under(
        _production_env(
            tmp_path, SECURE_SSL_REDIRECT="false", SECURE_COOKIES="true", SECURE_HSTS_SECONDS="600"
        ),
        *names,
    )
    assert behind_proxy == {
        "SECURE_HSTS_SECONDS": 600,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }
    plain = _settings_under(_production_env(tmp_path, SECURE_SSL_REDIRECT="false"), *names)
    assert plain == {
        "SECURE_HSTS_SECONDS": 0,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


def test_hsts_is_sent_over_https(alice, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    response = page_client(alice).get(reverse("home"), secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=3600")
    assert "Strict-Transport-Security" not in page_client(alice).get(reverse("home"))


def test_pages_carry_a_policy_and_no_inline_script_or_style(alice, db):
    buyer = BuyerFactory(extra_params={"Publisher": "acme"}, notes="Call first")
    bid = BidLogFactory(buyer=buyer, outcome=Outcome.CAPACITY_CHECK_FAILED, code=4004)
    call = CallFactory()
    client = page_client(alice)
    for url in (
        reverse("home"),
        reverse("reports"),
        reverse("buyers:list"),
        reverse("buyers:detail", args=[buyer.pk]),
        reverse("bids:list"),
        reverse("bids:detail", args=[bid.pk]),
        reverse("calls:list"),
        reverse("calls:detail", args=[call.pk]),
        reverse("troubleshooting"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"<style\b", html), url
        assert not re.search(r"\sstyle=", html), url
    login = page_client(alice).get(reverse("login"))
    assert "Content-Security-Policy" in login


def test_answers_that_are_not_pages_allow_nothing(alice, viewer_api, db):
    BidLogFactory()
    json_answer = viewer_api.get("/api/v1/bids/")
    csv_file = page_client(alice).get(reverse("bids:list"), {"export": "csv"})
    for response in (json_answer, csv_file):
        assert response.status_code == 200
        assert response["Content-Security-Policy"] == NOT_A_PAGE_POLICY
    # An HTML page under /api/ keeps the pages' policy, with its nonce for the inline style.
    docs = viewer_api.get("/api/v1/docs/")
    assert docs["Content-Type"].startswith("text/html")
    assert "'nonce-" in docs["Content-Security-Policy"]


def test_schema_and_docs_need_a_login_unless_opened(api_client, viewer_api, settings):
    for url in ("/api/v1/schema/", "/api/v1/docs/"):
        assert api_client.get(url).status_code in (401, 403)
        assert viewer_api.get(url).status_code == 200
    settings.API_DOCS_PUBLIC = True
    assert api_client.get("/api/v1/schema/").status_code == 200
    assert api_client.get("/api/v1/docs/").status_code == 200


def test_swagger_ui_assets_come_from_the_project_not_a_cdn(viewer_api):
    page = viewer_api.get("/api/v1/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in page and "@latest" not in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
    # The start-up script is a file of its own (no inline script), served from the project.
    script = next(a for a in assets if "script=" in a)
    assert viewer_api.get(script).status_code == 200


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_the_pinned_swagger_files_are_served(asset, viewer_api):
    page = viewer_api.get("/api/v1/docs/").content.decode()
    url = next(a for a in re.findall(r'(?:src|href)="([^"]+)"', page) if a.endswith(asset))
    assert finders.find(url.removeprefix("/static/")) is not None


@pytest.mark.parametrize("rate", ["lots", "²/minute"])  # "²" passes str.isdigit(), not int()
def test_a_bad_throttle_rate_stops_the_start_naming_the_variable(tmp_path, rate):
    env = _production_env(tmp_path, CALLER_SEARCH_THROTTLE_RATE=rate)
    out = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "CALLER_SEARCH_THROTTLE_RATE must look like 30/hour" in out.stderr
