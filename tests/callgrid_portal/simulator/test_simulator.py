"""The CallGrid simulator: its answers, control endpoints, scenarios, rate limit and command."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from callgrid_portal.simulator import ScenarioError, Simulator, load_scenario

GRID = "cm97s8hmv000ijt06r4djmije"
OTHER = "cm97s8hmv000ijt06r4djzzzz"
ROOT = Path(__file__).resolve().parents[3]


def bid(simulator, grid=GRID, body=None, **kwargs) -> requests.Response:
    payload = {"CallerId": "3035551234", "InboundStateCode": "CO"} if body is None else body
    return requests.post(simulator.endpoint + grid, json=payload, timeout=5, **kwargs)


# --- answers ----------------------------------------------------------------------------------


def test_default_answer_is_an_acceptance_shaped_like_the_guide(simulator):
    response = bid(simulator)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()
    assert data["code"] == 1000
    assert data["message"] == "Bid accepted"
    assert data["destination"] == "13035551234"
    assert data["caller_id"] == "13035551234"
    assert data["state_code"] == "CO"
    assert data["timestamp"].endswith("Z")
    assert '"bid_amount": 25.50' in response.text  # an exact number literal, not a string


def test_rate_limit_answer_is_http_429_with_retry_after(simulator):
    simulator.configure(GRID, respond="rate_limit", retry_after=3)

    response = bid(simulator)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["code"] == 5001
    assert response.json()["message"] == "Rate limit exceeded"


def test_message_override_replaces_callgrid_text(simulator):
    simulator.configure(GRID, respond="decline", message="Not in our footprint")

    answer = bid(simulator).json()
    # One answer's own timestamp: a second bid may land in the next second.
    assert answer == {
        "code": 2000,
        "message": "Not in our footprint",
        "bid_amount": 0,
        "state_code": "CO",
        "timestamp": answer["timestamp"],
    }
    assert answer["timestamp"].endswith("Z")


def test_missing_or_formatted_caller_id_gets_4003(simulator):
    missing = bid(simulator, body={"InboundStateCode": "CO"})
    formatted = bid(simulator, body={"CallerId": "(303) 555-1234"})

    assert missing.json()["code"] == 4003
    assert formatted.json()["code"] == 4003
    assert formatted.json()["message"] == "Invalid caller ID"


def test_body_that_is_not_json_gets_4000_and_is_recorded_as_text(simulator):
    response = requests.post(simulator.endpoint + GRID, data=b"CallerId=3035551234", timeout=5)

    assert response.json()["code"] == 4000
    assert simulator.requests(GRID)[0]["body"] == "CallerId=3035551234"


def test_fail_then_accept_counts_per_grid(simulator):
    simulator.configure(GRID, respond="fail_then_accept", fail_times=2)
    simulator.configure(OTHER, respond="fail_then_accept", fail_times=1)

    codes = [bid(simulator).json()["code"] for _ in range(3)]
    other = [bid(simulator, OTHER).json()["code"] for _ in range(2)]

    assert codes == [5000, 5000, 1000]
    assert other == [5000, 1000]


def test_latency_delays_the_answer(simulator):
    simulator.configure(GRID, latency_ms=300)

    start = time.monotonic()
    bid(simulator)

    assert time.monotonic() - start >= 0.3


def _raw_bid(simulator, *, pause_before_body: float = 0.0) -> tuple[float, bytes, float]:
    """Send a bid over a bare socket, its body ``pause_before_body`` after the headers.

    Returns when the request line went out, the first ``recv`` of the answer, and its time.
    """
    body = json.dumps({"CallerId": "3035551234", "InboundStateCode": "CO"}).encode()
    host, port = simulator.host, simulator.port
    head = (
        f"POST /api/bid/{GRID} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.monotonic()
        sock.sendall(head)
        time.sleep(pause_before_body)
        sock.sendall(body)
        first = sock.recv(65536)
        return sent, first, time.monotonic()


def test_latency_counts_from_the_request_s_arrival(simulator):
    # A buyer's L is L from when the request reached it: time the server spends reading the
    # rest of the request, or its own work, is not added on top.
    simulator.configure(GRID, respond="accept", latency_ms=400)

    sent, _, answered = _raw_bid(simulator, pause_before_body=0.25)

    # At least the buyer's latency; that the pause is not added on top (under 0.65 s) is
    # measured in benchmarks/deadlines.py, where a busy machine cannot fail the suite.
    assert answered - sent >= 0.4


@pytest.mark.skipif(sys.platform != "linux", reason="arrival stamps come from the Linux kernel")
def test_latency_counts_from_when_the_bytes_arrived_not_when_a_thread_read_them(simulator):
    # Two pipelined bids on one connection: the second reaches the server at once but is
    # read only after the first is answered. Its L still counts from its arrival, as it
    # would for a buyer whose server reads at once; on a busy machine the handler threads
    # of an auction's bids reach their requests one after another in the same way.
    simulator.configure(GRID, respond="accept", latency_ms=300)
    body = json.dumps({"CallerId": "3035551234"}).encode()
    request = (
        f"POST /api/bid/{GRID} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((simulator.host, simulator.port), timeout=5) as sock:
        sent = time.monotonic()
        sock.sendall(request * 2)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
            received += sock.recv(65536)
        done = time.monotonic() - sent

    # Not 0.6 s: the second bid's 300 ms ran while the first's did (benchmarks/deadlines.py).
    assert done >= 0.3
    assert received.count(b'"code": 1000') == 2


def test_broken_answers_are_broken_in_the_promised_way(simulator):
    simulator.configure(GRID, respond="malformed")
    with pytest.raises(ValueError):
        bid(simulator).json()

    simulator.configure(GRID, respond="html_error")
    page = bid(simulator)
    assert page.status_code == 502
    assert page.headers["Content-Type"] == "text/html"

    simulator.configure(GRID, respond="oversized")
    assert len(bid(simulator).content) > 64 * 1024

    simulator.configure(GRID, respond="wrong_shape")
    assert isinstance(bid(simulator).json(), list)

    simulator.configure(GRID, respond="unknown_code")
    assert bid(simulator).json()["code"] == 7777


def test_dribble_sends_a_valid_answer_slowly(simulator):
    simulator.configure(GRID, respond="dribble", dribble_interval=0.01)

    start = time.monotonic()
    response = bid(simulator)

    assert response.json()["code"] == 1000
    assert time.monotonic() - start >= 0.01 * len(response.content) * 0.8


def test_configure_refuses_unknown_keys_and_answers(simulator):
    with pytest.raises(ScenarioError, match="unknown behaviour keys: latency"):
        simulator.configure(GRID, latency=100)
    with pytest.raises(ScenarioError, match="respond must be one of"):
        simulator.configure(GRID, respond="explode")
    with pytest.raises(ScenarioError, match="not a decimal"):
        simulator.configure(GRID, bid_amount="lots")


# --- per-grid rate limit ----------------------------------------------------------------------


def test_rate_limit_applies_per_grid_with_a_sliding_window(simulator):
    simulator.configure(GRID, rate_limit_per_minute=2)

    answers = [bid(simulator) for _ in range(3)]
    other = bid(simulator, OTHER)

    assert [a.json()["code"] for a in answers] == [1000, 1000, 5001]
    assert answers[2].status_code == 429
    assert 55 <= int(answers[2].headers["Retry-After"]) <= 60
    assert other.json()["code"] == 1000


# --- the Python interface ---------------------------------------------------------------------


def test_requests_are_recorded_per_grid_with_headers_and_time(simulator):
    before = time.time()
    bid(simulator, headers={"X-Test": "yes"})
    bid(simulator, OTHER)

    (mine,) = simulator.requests(GRID)
    assert mine["grid_id"] == GRID
    assert mine["body"] == {"CallerId": "3035551234", "InboundStateCode": "CO"}
    assert mine["headers"]["X-Test"] == "yes"
    assert before <= mine["received_at"] <= time.time()
    assert len(simulator.requests()) == 2


def test_reset_forgets_requests_counters_and_grid_changes():
    with Simulator({"grids": {GRID: {"respond": "decline"}}}) as sim:
        sim.configure(GRID, respond="fail_then_accept")
        sim.configure(OTHER, respond="paused")
        bid(sim)

        sim.reset()

        assert sim.requests() == []
        assert bid(sim).json()["code"] == 2000
        assert bid(sim, OTHER).json()["code"] == 1000


def test_set_default_changes_unconfigured_grids_only(simulator):
    simulator.configure(GRID, respond="accept")
    simulator.set_default(respond="no_capacity")

    assert bid(simulator).json()["code"] == 1000
    assert bid(simulator, OTHER).json()["code"] == 3000


def test_stop_closes_the_port():
    sim = Simulator().start()
    url = sim.url
    sim.stop()

    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_sim/health", timeout=2)


# --- control endpoints ------------------------------------------------------------------------


def test_health_endpoint_answers(simulator):
    response = requests.get(simulator.url + "/_sim/health", timeout=5)

    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_requests_endpoint_lists_bids_and_filters_by_grid(simulator):
    bid(simulator)
    bid(simulator, OTHER)

    everything = requests.get(simulator.url + "/_sim/requests", timeout=5).json()
    mine = requests.get(simulator.url + "/_sim/requests", params={"grid": GRID}, timeout=5).json()

    assert everything["count"] == 2
    assert mine["count"] == 1
    assert mine["requests"][0]["body"]["CallerId"] == "3035551234"


def test_put_grid_endpoint_replaces_behaviour(simulator):
    response = requests.put(
        simulator.url + f"/_sim/grids/{GRID}", json={"respond": "duplicate"}, timeout=5
    )

    assert response.status_code == 200
    assert response.json()["behaviour"]["respond"] == "duplicate"
    assert bid(simulator).json() == {
        "code": 4005,
        "message": "Duplicate. CallerId already paid out.",
        "bid_amount": 0,
        "state_code": "CO",
        "timestamp": bid(simulator).json()["timestamp"],
    }


def test_put_grid_endpoint_refuses_bad_behaviour(simulator):
    response = requests.put(
        simulator.url + f"/_sim/grids/{GRID}", json={"respond": "explode"}, timeout=5
    )

    assert response.status_code == 400
    assert "respond must be one of" in response.json()["error"]


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ({"respond": ["accept"]}, "respond must be one of"),
        ({"respond": {"a": 1}}, "respond must be one of"),
        ({"latency_ms": 1e308}, "latency_ms must be a number from 0 to 3,600,000"),
        ({"latency_jitter_ms": 2**70}, "latency_jitter_ms must be a number from 0"),
        ({"retry_after": -1}, "retry_after must be a number from 0"),
        ({"dribble_interval": float("inf")}, "dribble_interval must be a number from 0"),
    ],
)
def test_put_grid_endpoint_refuses_values_that_would_crash_a_handler(simulator, behaviour, message):
    # A list is unhashable and a sleep of 1e308 s overflows: the handler used to crash and
    # drop the connection, on the PUT or on the next bid.
    response = requests.put(
        simulator.url + f"/_sim/grids/{GRID}",
        data=json.dumps(behaviour),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert bid(simulator).json()["code"] == 1000  # the grid still answers as before


def test_reset_endpoint_clears_requests(simulator):
    bid(simulator)

    response = requests.post(simulator.url + "/_sim/reset", timeout=5)

    assert response.json() == {"ok": True}
    assert simulator.requests() == []


def test_unknown_path_is_404(simulator):
    assert requests.get(simulator.url + "/nothing", timeout=5).status_code == 404
    assert requests.post(simulator.endpoint, json={}, timeout=5).status_code == 404


# --- scenarios --------------------------------------------------------------------------------


def test_scenario_file_sets_default_and_grids(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(
        json.dumps(
            {
                "default": {"respond": "accept", "bid_amount": "40.00"},
                "grids": {GRID: {"respond": "no_numbers"}},
            }
        )
    )

    with Simulator(load_scenario(path)) as sim:
        assert bid(sim).json()["code"] == 4006
        assert '"bid_amount": 40.00' in bid(sim, OTHER).text


def test_yaml_scenario_file_is_read_when_pyyaml_is_installed(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "scenario.yaml"
    path.write_text(f"grids:\n  {GRID}:\n    respond: paused\n")

    with Simulator(load_scenario(path)) as sim:
        assert bid(sim).json()["code"] == 4002


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"grid": {}}', "unknown scenario keys: grid"),
        ('{"default": {"respond": "explode"}}', "respond must be one of"),
        ('{"grids": []}', "grids must map"),
    ],
)
def test_bad_scenario_file_is_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "scenario.json"
    path.write_text(content)

    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


# --- the management command -------------------------------------------------------------------


def test_management_command_serves_and_exits_cleanly_on_sigterm(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"grids": {GRID: {"respond": "decline"}}}))
    process = subprocess.Popen(
        [sys.executable, "manage.py", "callgrid_simulator", "--port", "0", "--scenario", scenario],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in banner
        url = banner.split("listening on ")[1].split()[0]

        answer = requests.post(f"{url}/api/bid/{GRID}", json={"CallerId": "3035551234"}, timeout=5)
        assert answer.json()["code"] == 2000

        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, stderr
    assert "stopped" in stdout


def test_management_command_refuses_a_missing_scenario_file(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "callgrid_simulator",
            "--port",
            "0",
            "--scenario",
            tmp_path / "nope.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert completed.returncode != 0
    assert "cannot load scenario" in completed.stderr
