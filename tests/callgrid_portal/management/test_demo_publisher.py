"""The demo publisher: calls to the demo buyers only, health checks on every demo buyer, and
``manage.py portal`` filling the call log by itself with the password printed last."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bidlog.choices import Source
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from buyers.models import Buyer
from callgrid_portal.management.commands import portal
from callgrid_portal.management.commands.demo_publisher import fiction_caller_id
from callgrid_portal.management.commands.seed_demo import demo_buyers_seed, demo_grid_ids
from tests.factories import BuyerFactory
from tests.portal_process import REPO, PortalBrowser, portal_argv, wait_for
from tests.servers import free_port


def test_fiction_numbers_stay_in_the_555_01xx_block():
    rng = random.Random(7)
    for _ in range(200):
        number = fiction_caller_id(rng)
        assert re.fullmatch(r"[2-9]\d\d55501\d\d", number), number


def test_publisher_routes_only_to_demo_buyers_and_checks_every_one(transactional_db, simulator):
    demo_buyers_seed(endpoint_url=simulator.endpoint)
    outsider = BuyerFactory(name="A real buyer", endpoint_url=simulator.endpoint, priority=0)
    for buyer in Buyer.objects.all():
        limits.limits_reset(grid_id=buyer.grid_id)
        simulator.configure(buyer.grid_id, respond="accept", bid_amount="30.00")

    call_command("demo_publisher", interval=0.01, count=3, seed=1)

    assert Call.objects.count() == 3
    live = BidLog.objects.filter(source=Source.LIVE)
    assert live.exists()
    assert set(live.values_list("buyer__grid_id", flat=True)) <= set(demo_grid_ids())
    assert simulator.requests(outsider.grid_id) == []
    checked = set(
        BidLog.objects.filter(source=Source.HEALTH).values_list("buyer__grid_id", flat=True)
    )
    assert checked == set(demo_grid_ids())
    # Every caller is a fictional number.
    assert all("55501" in caller for caller in Call.objects.values_list("caller_id", flat=True))


def test_publisher_is_off_unless_given_a_pace(db, settings):
    settings.DEMO_TRAFFIC_SECONDS = 0
    with pytest.raises(CommandError, match="demo traffic is off"):
        call_command("demo_publisher", count=1)
    with pytest.raises(CommandError, match="--interval"):
        call_command("demo_publisher", interval=-1, count=1)
    with pytest.raises(CommandError, match="--count"):
        call_command("demo_publisher", interval=1, count=-1)
    assert not Call.objects.exists()


def test_with_no_active_demo_buyer_the_publisher_routes_nothing_and_goes_on(db, settings):
    call_command("demo_publisher", interval=0.01, count=2)
    assert not Call.objects.exists()


def test_portal_runs_the_publisher_only_when_asked():
    with_demo = portal.child_commands(
        host="127.0.0.1", port=1, sim_port=2, simulator=True, publisher=True
    )
    names = [child.name for child in with_demo]
    assert "publisher" in names and names[-1] == "web"
    without = portal.child_commands(host="127.0.0.1", port=1, sim_port=2, simulator=True)
    assert "publisher" not in [child.name for child in without]


def test_the_password_frame_is_a_box_around_the_password():
    account = portal.AdminAccount(username="admin", created=True, password="s3cret-Pass")
    frame = portal.password_frame(account)
    assert frame[0] == frame[-1] and set(frame[0]) == {"#"}
    assert all(len(line) == len(frame[0]) for line in frame)
    assert any("Password: s3cret-Pass" in line for line in frame)


@pytest.mark.integration
def test_portal_demo_fills_the_call_log_by_itself_and_prints_the_password_last(tmp_path):
    port, sim_port = free_port(), free_port()
    dropped = {"DATABASE_URL", "REDIS_URL", "CACHE_URL", "CELERY_BROKER_URL"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    for name in ("DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_USERNAME", "DEMO_TRAFFIC_SECONDS"):
        env.pop(name, None)
    for name in ("CALLGRID_ENDPOINT_ALLOWLIST", "CALLGRID_INSECURE_HOSTS", "SECURE_SSL_REDIRECT"):
        env.pop(name, None)
    env.update(DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1", DEMO_TRAFFIC_SECONDS="1")
    log = tmp_path / "portal.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            portal_argv(port, sim_port), cwd=REPO, env=env, stdout=out, stderr=out, text=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/v1/health/", process)
        # The frame comes once every child is ready; the Celery worker may be ready well after
        # the web server, so wait as long as the portal itself waits for its children.
        deadline = time.monotonic() + portal.READY_TIMEOUT_SECONDS
        while "#  Password:" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        password = _password_printed_last(log)
        browser = PortalBrowser(base)
        browser.get("/accounts/login/")
        browser.post_form(
            "/accounts/login/",
            {
                "username": "admin",
                "password": password,
                "csrfmiddlewaretoken": browser.cookie("csrftoken"),
            },
        )
        calls = _calls_within(browser, seconds=45)
        assert len(calls) >= 2, calls
        status, page = browser.get("/live/")
        assert status == 200 and page.count("data-call-id=") >= 2, page[:500]
        # Still last, now that every child has long started.
        assert _password_printed_last(log) == password
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()


BANNER_MARKS = ("celery beat v", "celery@", "[config]", "[queues]", "Listening at", "simulator")


def _password_printed_last(log: Path) -> str:
    """The one-time password, from a frame after which no start-up banner was printed."""
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if set(line) == {"#"}]
    assert frames, f"no password frame was printed:\n{text}"
    frame_end = max(frames)
    assert "Press Ctrl-C" in "\n".join(lines[:frame_end]), text
    late = [line for line in lines[frame_end + 1 :] if any(m in line for m in BANNER_MARKS)]
    assert not late, text
    match = re.search(r"#  Password: (\S+)", text)
    assert match, text
    return match.group(1)


def _calls_within(browser: PortalBrowser, *, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    rows: list[dict] = []
    while time.monotonic() < deadline:
        status, body = browser.get("/api/v1/calls/")
        if status == 200:
            data = json.loads(body)
            rows = data["results"] if isinstance(data, dict) else data
            if len(rows) >= 2:
                return rows
        time.sleep(1)
    return rows
