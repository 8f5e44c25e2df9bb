"""The auction's one-thread fan-out, over real HTTP and TLS to the simulator and raw servers."""

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests
import trustme

from callgrid_portal.bidapi.client import (
    MAX_BODY_BYTES,
    BidAttempt,
    BidTarget,
    build_request,
    new_session,
    send_bid,
)
from callgrid_portal.bidapi.fanout import FanOut
from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.simulator import Simulator

CALLER = "3035551234"
GRIDS = ["fan-grid-a", "fan-grid-b", "fan-grid-c"]


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A session of the test's own, so it starts with no kept-alive connections."""
    own = new_session()
    yield own
    own.close()


def targets(endpoint: str, *, timeout: float = 5.0) -> list[BidTarget]:
    return [
        BidTarget(grid_id=g, endpoint_url=endpoint, timeout_seconds=timeout, min_bid=Decimal(10))
        for g in GRIDS
    ]


def warm(simulator: Simulator, session: requests.Session, bids: list[BidTarget]) -> None:
    """Leave one idle kept-alive connection per bid in the session's pool.

    The bids overlap in time (each answer takes 100 ms), so each opens its own connection.
    """
    for target in bids:
        simulator.configure(target.grid_id, latency_ms=100)
    with ThreadPoolExecutor(len(bids)) as threads:
        list(threads.map(lambda t: send_bid(t, CALLER, session=session), bids))
    simulator.reset()


def fan_out(
    session: requests.Session, bids: list[BidTarget], *, deadline: float | None = None
) -> tuple[list[bool], dict[int, BidAttempt], list[int]]:
    """Add every bid and run; what ``add`` said, the attempts by index, the answering threads."""
    fan = FanOut(session=session, deadline=deadline)
    added = [
        fan.add(i, t, build_request(t, CALLER, "CO", {}), caller_id=CALLER, state_code="CO")
        for i, t in enumerate(bids)
    ]
    attempts: dict[int, BidAttempt] = {}
    threads: list[int] = []

    def answered(key: object, attempt: BidAttempt) -> None:
        attempts[key] = attempt  # type: ignore[index]
        threads.append(threading.get_ident())

    fan.run(answered)
    return added, attempts, threads


def test_every_bid_goes_out_and_comes_back_on_the_calling_thread(simulator, session):
    bids = targets(simulator.endpoint)
    warm(simulator, session, bids)
    simulator.configure(GRIDS[0], latency_ms=300, bid_amount="31.25")
    simulator.configure(GRIDS[1], latency_ms=300, respond="decline")
    simulator.configure(GRIDS[2], latency_ms=300, respond="accept", bid_amount="9.99")

    added, attempts, threads = fan_out(session, bids)

    assert added == [True, True, True]
    # All three waited out their 300 ms at once, on this thread alone: every request reached
    # the simulator before the first answer could leave it (how long the whole took is
    # measured in benchmarks/deadlines.py).
    arrivals = [simulator.requests(grid)[-1]["received_at"] for grid in GRIDS[:3]]
    assert max(arrivals) < min(arrivals) + 0.3
    assert set(threads) == {threading.get_ident()}
    assert [attempts[i].outcome for i in range(3)] == [
        Outcome.ACCEPTED,
        Outcome.DECLINED,
        Outcome.BELOW_MIN_BID,
    ]
    first = attempts[0]
    assert (first.bid_amount, first.destination, first.http_status) == (
        Decimal("31.25"),
        "13035551234",
        200,
    )
    assert (first.caller_id, first.state_code, first.attempt) == (CALLER, "CO", 1)
    assert first.duration_ms >= 300
    sent = simulator.requests(GRIDS[0])
    assert sent[0]["body"] == {"CallerId": CALLER, "InboundStateCode": "CO"}
    assert sent[0]["headers"]["Content-Type"] == "application/json"
    assert sent[0]["headers"]["Accept"] == "application/json"
    assert sent[0]["headers"]["Host"] == f"127.0.0.1:{simulator.port}"
    assert sent[0]["headers"]["User-Agent"]


def test_work_given_for_the_wait_runs_once_every_bid_is_out(simulator, session):
    bids = targets(simulator.endpoint)
    warm(simulator, session, bids)
    for grid in (GRIDS[0], GRIDS[2]):
        simulator.configure(grid, latency_ms=1500)
    # GRIDS[1] answers at once, while the caller is still busy.
    fan = FanOut(session=session, deadline=None)
    for i, t in enumerate(bids):
        fan.add(i, t, build_request(t, CALLER, "CO", {}), caller_id=CALLER, state_code="CO")
    seen: list[tuple[object, ...]] = []

    def waiting(sent: list[tuple[Any, BidAttempt]]) -> None:
        # Nothing is sent from here on: every request the simulator gets was out already.
        until = time.monotonic() + 5
        while len(simulator.requests()) < 3 and time.monotonic() < until:
            time.sleep(0.01)
        time.sleep(0.3)  # long enough for GRIDS[1]'s answer to be in
        seen.append(
            (
                threading.get_ident(),
                len(simulator.requests()),
                [(key, attempt.outcome) for key, attempt in sent],
            )
        )

    answers: list[tuple[object, BidAttempt]] = []
    fan.run(lambda key, attempt: answers.append((key, attempt)), waiting=waiting)

    # Once, on this thread, with every bid sent and none of them answered yet.
    assert seen == [(threading.get_ident(), 3, [(i, Outcome.TIMEOUT) for i in range(3)])]
    # The answer that came in during the wait was read after it, then the others.
    assert answers[0][0] == 1
    assert [attempt.outcome for _, attempt in answers] == [Outcome.ACCEPTED] * 3


def test_a_bid_without_an_idle_connection_is_left_to_the_caller(simulator, session):
    bids = targets(simulator.endpoint)

    added, attempts, _ = fan_out(session, bids)

    assert added == [False, False, False]
    assert attempts == {}
    assert simulator.requests() == []


def test_slow_and_dribbling_buyers_end_at_the_deadline_without_holding_up_the_others(
    simulator, session
):
    bids = targets(simulator.endpoint)
    warm(simulator, session, bids)
    simulator.configure(GRIDS[0], respond="accept")
    simulator.configure(GRIDS[1], respond="dribble", dribble_interval=0.2)
    simulator.configure(GRIDS[2], latency_ms=5000)

    started = time.monotonic()
    added, attempts, _ = fan_out(session, bids, deadline=started + 0.8)

    assert added == [True, True, True]
    assert attempts[0].outcome == Outcome.ACCEPTED
    dribbled, silent = attempts[1], attempts[2]
    # Read as soon as it came, not at the deadline the other two ran into.
    assert attempts[0].duration_ms < min(dribbled.duration_ms, silent.duration_ms)
    assert dribbled.outcome == Outcome.TIMEOUT
    assert "no complete answer within 0.8 s (" in dribbled.error
    assert dribbled.http_status == 200
    assert silent.outcome == Outcome.TIMEOUT
    assert silent.error == f"no answer from 127.0.0.1:{simulator.port} within 0.8 s"
    # The cut-off connections were closed, not given back: the next bids read clean answers.
    simulator.reset()
    again = [send_bid(t, CALLER, session=session) for t in bids]
    assert [r.outcome for r in again] == [Outcome.ACCEPTED] * 3


def test_headers_dribbled_past_the_deadline_are_a_timeout(simulator, session):
    bids = targets(simulator.endpoint)[:1]
    warm(simulator, session, bids)
    simulator.configure(GRIDS[0], respond="dribble_headers", dribble_interval=0.1)

    started = time.monotonic()
    _, attempts, _ = fan_out(session, bids, deadline=started + 0.5)

    assert attempts[0].outcome == Outcome.TIMEOUT
    assert "within 0.5 s" in attempts[0].error
    assert attempts[0].error.startswith("no answer from 127.0.0.1:")


@pytest.mark.parametrize(
    ("respond", "outcome", "http_status"),
    [
        ("oversized", Outcome.BAD_RESPONSE, 200),
        ("malformed", Outcome.BAD_RESPONSE, 200),
        ("html_error", Outcome.SYSTEM_ERROR, 502),
        ("rate_limit", Outcome.RATE_LIMITED, 429),
        ("no_capacity", Outcome.NO_CAPACITY, 200),
    ],
)
def test_answers_are_read_as_the_threaded_client_reads_them(
    simulator, session, respond, outcome, http_status
):
    bids = targets(simulator.endpoint)[:1]
    warm(simulator, session, bids)
    simulator.configure(GRIDS[0], respond=respond, retry_after=3)

    _, attempts, _ = fan_out(session, bids)
    threaded = send_bid(bids[0], CALLER, "CO", session=session, sleep=lambda _s: None)

    attempt = attempts[0]
    assert (attempt.outcome, attempt.http_status) == (outcome, http_status)
    first = threaded.attempts[0]
    assert (attempt.outcome, attempt.code, attempt.error, attempt.raw_response) == (
        first.outcome,
        first.code,
        first.error,
        first.raw_response,
    )
    if respond == "oversized":
        assert f"{MAX_BODY_BYTES // 1024} KiB cap" in attempt.error
    if respond == "rate_limit":
        assert attempt.retry_after == 3  # from the Retry-After header


def test_a_retried_answer_carries_on_from_the_fan_outs_attempt(simulator, session):
    bids = targets(simulator.endpoint)[:1]
    warm(simulator, session, bids)
    simulator.configure(GRIDS[0], respond="fail_then_accept", fail_times=1)
    waits: list[float] = []

    _, attempts, _ = fan_out(session, bids)
    result = send_bid(
        bids[0], CALLER, "CO", session=session, sleep=waits.append, earlier=attempts[0]
    )

    assert [a.outcome for a in result.attempts] == [Outcome.SYSTEM_ERROR, Outcome.ACCEPTED]
    assert [a.attempt for a in result.attempts] == [1, 2]
    assert result.attempts[0] is attempts[0]
    assert waits == [0.25]
    assert len(simulator.requests(GRIDS[0])) == 2


# --- raw servers: what the simulator never does -------------------------------------------

ANSWER = b'{"code": 1000, "message": "ok", "bid_amount": 20, "destination": "13035550000"}'


def _raw_server(second: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    """A server answering its connection's first request properly and the second with
    ``second``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            reader = conn.makefile("rb")
            _read_request(reader)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
            )
            _read_request(reader)
            second(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _read_request(reader: Any) -> None:
    """Read one whole request: the head, then a body of its Content-Length."""
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)


def _closes(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def _garbage(conn: socket.socket) -> None:
    conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    time.sleep(0.3)


def _second_answer(
    session: requests.Session, second: Callable[[socket.socket], None]
) -> tuple[BidAttempt, bool]:
    """Fan out a bid to a raw server whose kept-alive connection answers it with ``second``.

    Returns the attempt, and whether the connection was back in the pool for another bid.
    """
    port, server = _raw_server(second)
    target = BidTarget(grid_id="raw", endpoint_url=f"http://127.0.0.1:{port}/api/bid/")
    assert send_bid(target, CALLER, session=session).outcome == Outcome.ACCEPTED

    _, attempts, _ = fan_out(session, [target], deadline=time.monotonic() + 2)
    again, _, _ = fan_out(session, [target], deadline=time.monotonic() + 2)

    server.join(timeout=5)
    return attempts[0], again[0]


@pytest.mark.parametrize(
    ("second", "error"),
    [
        (_closes, "the server closed the connection without answering"),
        (_garbage, "not a valid HTTP answer: "),
    ],
)
def test_a_connection_that_breaks_is_a_network_error(session, second, error):
    attempt, kept = _second_answer(session, second)

    assert attempt.outcome == Outcome.NETWORK_ERROR
    assert attempt.error.startswith(error)
    assert not kept


# --- TLS ----------------------------------------------------------------------------------


@pytest.fixture
def tls_simulator(tmp_path) -> Iterator[tuple[Simulator, str]]:
    """The simulator over HTTPS with a certificate from a CA of the test's own."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Simulator(tls=server_context) as sim:
        yield sim, str(ca_file)


def test_bids_over_tls_are_read_from_the_encrypted_stream(tls_simulator, session):
    simulator, ca_file = tls_simulator
    session.verify = ca_file
    bids = targets(simulator.endpoint)
    assert simulator.endpoint.startswith("https://")
    warm(simulator, session, bids)
    simulator.configure(GRIDS[1], bid_amount="42.00", latency_ms=50)
    simulator.configure(GRIDS[2], respond="oversized")

    added, attempts, _ = fan_out(session, bids)

    assert added == [True, True, True]
    assert attempts[0].outcome == Outcome.ACCEPTED
    assert attempts[1].bid_amount == Decimal("42.00")
    assert attempts[2].outcome == Outcome.BAD_RESPONSE
    assert len(simulator.requests()) == 3


def test_an_untrusted_certificate_never_reaches_the_fan_out(tls_simulator, session):
    simulator, _ca_file = tls_simulator  # the session does not trust this CA
    target = targets(simulator.endpoint)[0]

    first = send_bid(target, CALLER, session=session)
    added, _, _ = fan_out(session, [target])

    assert first.outcome == Outcome.NETWORK_ERROR
    assert first.final.error.startswith("TLS error: ")
    assert added == [False]


def test_an_answer_ended_by_closing_the_connection_is_read_and_the_connection_dropped(session):
    def close_delimited(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + ANSWER)
        conn.shutdown(socket.SHUT_RDWR)

    attempt, kept = _second_answer(session, close_delimited)

    assert attempt.outcome == Outcome.ACCEPTED
    assert attempt.bid_amount == Decimal("20.00")
    assert not kept  # that connection is gone, not back in the pool


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(session):
    def chunked(conn: socket.socket) -> None:
        half = len(ANSWER) // 2
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (half, ANSWER[:half])
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ANSWER) - half, ANSWER[half:])
        )
        time.sleep(0.3)  # hold the connection open while the client looks at it

    attempt, kept = _second_answer(session, chunked)

    assert attempt.outcome == Outcome.ACCEPTED
    assert attempt.destination == "13035550000"
    assert kept  # a complete answer leaves the connection reusable


def test_an_interim_answer_is_skipped_for_the_real_one(session):
    def continue_first(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
        )
        time.sleep(0.3)

    attempt, kept = _second_answer(session, continue_first)

    assert (attempt.outcome, attempt.http_status) == (Outcome.ACCEPTED, 200)
    assert kept


def test_bytes_after_the_answer_keep_it_but_drop_the_connection(session):
    def then_more(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\n" % (len(ANSWER), ANSWER)
        )
        time.sleep(0.3)

    attempt, kept = _second_answer(session, then_more)

    assert attempt.outcome == Outcome.ACCEPTED
    assert not kept  # the next bid would have read the stray bytes as its answer


def test_a_request_head_that_cannot_be_written_is_left_to_the_caller(simulator, session, settings):
    bids = targets(simulator.endpoint)[:1]
    warm(simulator, session, bids)
    settings.CALLGRID_USER_AGENT = "Portal\r\nX-Injected: 1"

    added, attempts, _ = fan_out(session, bids)

    assert added == [False]
    assert attempts == {}
    assert simulator.requests() == []
