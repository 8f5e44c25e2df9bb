"""``manage.py portal`` and ``manage.py seed_demo``: the one-command embedded default."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from buyers.models import Buyer
from callgrid_portal.management.commands import portal
from callgrid_portal.management.commands.seed_demo import (
    DEMO_BUYERS,
    demo_buyers_seed,
    demo_endpoint,
    demo_grid_ids,
)
from callgrid_portal.simulator import load_scenario
from tests.portal_process import REPO, PortalBrowser, alive, descendants, portal_argv, wait_for
from tests.servers import free_port

# --- seed_demo -------------------------------------------------------------------------------


def test_demo_scenario_gives_every_demo_buyer_its_own_behaviour():
    scenario = load_scenario(REPO / "callgrid_portal" / "demo_scenario.json")
    grids = scenario["grids"]
    assert [spec["grid_id"] for spec in DEMO_BUYERS] == demo_grid_ids()
    behaviours = {grids[spec["grid_id"]]["respond"] for spec in DEMO_BUYERS}
    assert {"accept", "decline", "fail_then_accept"} <= behaviours
    assert any(b.get("rate_limit_per_minute") for b in grids.values())
    assert any(b.get("latency_ms", 0) >= 2000 for b in grids.values())
    amounts = {grids[g]["bid_amount"] for g in grids if grids[g]["respond"] == "accept"}
    assert len(amounts) >= 3


def test_seed_demo_creates_valid_buyers_pointed_at_the_simulator(db):
    out = io.StringIO()
    call_command("seed_demo", sim_port=9123, stdout=out)
    assert f"{len(DEMO_BUYERS)} created" in out.getvalue()
    buyers = Buyer.objects.filter(grid_id__in=demo_grid_ids())
    assert buyers.count() == len(DEMO_BUYERS)
    for buyer in buyers:
        assert buyer.endpoint_url == "http://127.0.0.1:9123/api/bid/"
        buyer.full_clean()  # raises if any demo value breaks a rule


def test_seed_demo_twice_keeps_one_buyer_per_grid_and_keeps_admin_edits(db):
    demo_buyers_seed(endpoint_url=demo_endpoint(port=8099))
    acme = Buyer.objects.get(grid_id="cgdemo04acmeinsurance")
    acme.min_bid = Decimal("35.00")
    acme.save()

    seeded = demo_buyers_seed(endpoint_url=demo_endpoint(port=8100))

    assert not any(created for _buyer, created in seeded)
    assert Buyer.objects.filter(grid_id__in=demo_grid_ids()).count() == len(DEMO_BUYERS)
    acme.refresh_from_db()
    assert acme.min_bid == Decimal("35.00")
    assert acme.endpoint_url == "http://127.0.0.1:8100/api/bid/"


def test_seed_demo_reset_puts_demo_values_back(db):
    demo_buyers_seed(endpoint_url=demo_endpoint())
    Buyer.objects.filter(grid_id="cgdemo04acmeinsurance").update(
        min_bid=Decimal("99.00"), status="paused"
    )
    demo_buyers_seed(endpoint_url=demo_endpoint(), reset=True)
    acme = Buyer.objects.get(grid_id="cgdemo04acmeinsurance")
    assert acme.min_bid == Decimal("30.00")
    assert acme.status == "active"


def test_seed_demo_refuses_simulator_outside_the_allowlist_and_writes_nothing(db, settings):
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com"]
    with pytest.raises(CommandError, match="CALLGRID_ENDPOINT_ALLOWLIST"):
        call_command("seed_demo")
    assert not Buyer.objects.filter(grid_id__in=demo_grid_ids()).exists()


# --- portal's pieces -------------------------------------------------------------------------


def test_admin_account_is_created_once_with_a_random_password(db):
    first = portal.admin_account_ensure(username="admin", password=None)
    second = portal.admin_account_ensure(username="admin", password=None)
    assert first.created and first.password and len(first.password) >= 12
    assert not second.created and second.password is None
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(first.password)


def test_admin_account_uses_the_given_password_and_never_changes_an_existing_one(db):
    portal.admin_account_ensure(username="ops", password="first-Password-1")
    portal.admin_account_ensure(username="ops", password="second-Password-2")
    assert get_user_model().objects.get(username="ops").check_password("first-Password-1")


def test_embedded_defaults_fill_only_unset_variables():
    environ = {"CALLGRID_INSECURE_HOSTS": "sim.internal"}
    filled = portal.apply_embedded_defaults(environ)
    assert environ["CALLGRID_INSECURE_HOSTS"] == "sim.internal"
    assert "127.0.0.1" in environ["CALLGRID_ENDPOINT_ALLOWLIST"].split(",")
    assert environ["SECURE_SSL_REDIRECT"] == "false"
    assert set(filled) == {"CALLGRID_ENDPOINT_ALLOWLIST", "SECURE_SSL_REDIRECT"}


def test_child_commands_skip_the_simulator_when_asked():
    with_sim = portal.child_commands(host="127.0.0.1", port=1, sim_port=2, simulator=True)
    without = portal.child_commands(host="127.0.0.1", port=1, sim_port=2, simulator=False)
    # Other children (the Celery worker and beat) may come and go; these two are the contract.
    assert with_sim[0].name == "simulator"
    assert "simulator" not in [c.name for c in without]
    assert with_sim[-1].name == without[-1].name == "web"
    assert all(child.argv[0] == sys.executable for child in with_sim)


# --- the real thing ------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# What the portal is supposed to fill in itself, and what would take the suite's services
# instead of the embedded default (SQLite and a file cache in its own DATA_DIR).
_NOT_GIVEN_TO_THE_PORTAL = {
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SUPERUSER_PASSWORD",
    "DJANGO_SUPERUSER_USERNAME",
    "CALLGRID_ENDPOINT_ALLOWLIST",
    "CALLGRID_INSECURE_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECRET_KEY",
}


def _first_start_password(output: str, data_dir: Path) -> str:
    """The admin password the banner printed, once the first start made the database and a
    signing key only its owner can read."""
    password = re.search(r"Password:\s+(\S+)", output)
    assert password, output
    assert (data_dir / "portal.sqlite3").exists()
    key_file = data_dir / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text().strip()) >= 50
    return password.group(1)


def _sign_in_to_the_admin(browser: PortalBrowser, password: str) -> None:
    status, _page = browser.get("/admin/login/")
    assert status == 200
    status, landed = browser.post_form(
        "/admin/login/?next=/admin/",
        {
            "username": "admin",
            "password": password,
            "csrfmiddlewaretoken": browser.cookie("csrftoken"),
            "next": "/admin/",
        },
    )
    # A wrong password shows the login form again; the right one lands on the index.
    assert status == 200 and urllib.parse.urlsplit(landed).path == "/admin/", landed


def _demo_buyers_on_the_simulator(browser: PortalBrowser, sim_port: int) -> dict[str, dict]:
    """The demo buyers the API lists, by grid id; each points at the embedded simulator."""
    status, body = browser.get("/api/v1/buyers/")
    assert status == 200, body
    data = json.loads(body)
    rows = data["results"] if isinstance(data, dict) else data
    demo = {row["grid_id"]: row for row in rows if row["grid_id"] in set(demo_grid_ids())}
    assert set(demo) == set(demo_grid_ids())
    expected = f"http://127.0.0.1:{sim_port}/api/bid/"
    assert all(row["endpoint_url"] == expected for row in demo.values())
    return demo


def _wait_until_gone(children: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_portal_runs_everything_and_stops_every_child_on_sigint(tmp_path):
    port, sim_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in _NOT_GIVEN_TO_THE_PORTAL}
    # A DATA_DIR that does not exist yet: portal creates it, the database and the signing key.
    data_dir = tmp_path / "data"
    env.update(DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    log = tmp_path / "portal.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            portal_argv(port, sim_port),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/v1/health/", process)
        # The banner comes after every child is ready; give it a moment to be written.
        deadline = time.monotonic() + 10
        while "Press Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        password = _first_start_password(log.read_text(), data_dir)

        browser = PortalBrowser(base)
        _sign_in_to_the_admin(browser, password)
        demo = _demo_buyers_on_the_simulator(browser, sim_port)

        # The same session opens the pages, served by gunicorn like everything else.
        status, body = browser.get("/")
        assert status == 200 and "Overview" in body, body[:500]
        status, body = browser.get("/buyers/")
        assert status == 200 and all(row["name"] in body for row in demo.values()), body[:500]

        status, body = PortalBrowser(f"http://127.0.0.1:{sim_port}").get("/_sim/health")
        assert status == 200, body

        children = descendants(process.pid)
        assert len(children) >= 3, "simulator, gunicorn master and its workers"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()

    assert returncode == 0, log.read_text()
    _wait_until_gone(children, 10)
    assert not [pid for pid in children if alive(pid)], "orphaned children"
    assert not _port_open(port) and not _port_open(sim_port)
    assert "Stopped" in log.read_text()


@pytest.mark.integration
def test_portal_exits_non_zero_when_a_child_cannot_start(tmp_path):
    port = free_port()
    # Something already listens on the simulator's port, so the simulator exits at once.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        sim_port = blocker.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
        env.update(DATA_DIR=str(tmp_path), DJANGO_SUPERUSER_PASSWORD="not-used-Password-1")
        result = subprocess.run(
            portal_argv(port, sim_port),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert "simulator exited unexpectedly" in result.stderr
    assert not _port_open(port)
