"""Hostile buyers during an auction another buyer wins: each answer is classified in time.

The hostile buyer runs as its own process (tests/hostile_buyer.py) on loopback; the auction
runs here, as in a web worker, so this process's memory is the web process's.
"""

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bidlog.choices import Outcome, RoutingStrategy
from bidlog.models import BidLog
from bidlog.routing.strategies import call_route
from tests.factories import BuyerFactory
from tests.hostile_buyer import MODES

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_SECONDS = 2
CALLER = "3035550142"

# What each hostile answer must be read as, and a word its error must carry.
EXPECTED = {
    "code-exponent": (Outcome.BAD_RESPONSE, "60002 characters"),
    "code-exponent-million": (Outcome.BAD_RESPONSE, "KiB"),
    "code-5000-digits": (Outcome.BAD_RESPONSE, "5000 characters"),
    "code-digit-string": (Outcome.BAD_RESPONSE, "no integer code"),
    "amount-5000-digits": (Outcome.BAD_RESPONSE, "5000 characters"),
    "amount-1e999": (Outcome.BAD_RESPONSE, "out of range"),
    "amount-tiny-exponent": (Outcome.BAD_RESPONSE, "exponent"),
    "amount-nan": (Outcome.BAD_RESPONSE, "NaN is not a number"),
    "amount-infinity": (Outcome.BAD_RESPONSE, "Infinity is not a number"),
    "amount-string-exponent": (Outcome.BAD_RESPONSE, "is not a number"),
    "destination-number": (Outcome.BAD_RESPONSE, "exponent"),
    "message-huge-int": (Outcome.BAD_RESPONSE, "5000 characters"),
    "retry-after-absurd": (Outcome.RATE_LIMITED, "too long to wait"),
    "deep-nesting": (Outcome.BAD_RESPONSE, "nested more than"),
    "not-utf8": (Outcome.BAD_RESPONSE, "not UTF-8"),
    "duplicate-keys": (Outcome.BAD_RESPONSE, "more than once"),
    "endless-headers": (Outcome.BAD_RESPONSE, "headers"),
    "endless-header-line": (Outcome.BAD_RESPONSE, "header line too large"),
    "endless-body": (Outcome.BAD_RESPONSE, "KiB cap"),
    "endless-chunks": (Outcome.BAD_RESPONSE, "KiB cap"),
    "slow-headers": (Outcome.TIMEOUT, "within 2.0 s"),
    "gzip-bomb": (Outcome.BAD_RESPONSE, "not valid JSON"),
    "not-http": (Outcome.BAD_RESPONSE, "not an HTTP answer"),
}


def test_every_hostile_mode_has_an_expectation():
    assert set(EXPECTED) == set(MODES)


@pytest.fixture(scope="module")
def hostile_port():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile_buyer"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait(timeout=10)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def honest(sim_buyer):
    return sim_buyer(name="honest", priority=2, bid_amount="25.50", timeout_seconds=5)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_a_hostile_answer_costs_its_buyer_only_and_in_time(hostile_port, honest, mode):
    hostile = BuyerFactory(
        name=f"hostile {mode}",
        priority=1,
        endpoint_url=f"http://127.0.0.1:{hostile_port}/{mode}/",
        timeout_seconds=TIMEOUT_SECONDS,
    )
    before = _rss_mb()

    call = call_route(caller_id=CALLER, strategy=RoutingStrategy.HIGHEST_BID)

    grown = _rss_mb() - before
    row = BidLog.objects.get(call=call, buyer=hostile, attempt=1)
    outcome, word = EXPECTED[mode]
    assert call.winner == honest
    assert row.outcome == outcome, row.error
    assert word in row.error, row.error
    # Within the buyer's timeout plus a second, as the route and the row each measured it.
    assert row.duration_ms <= (TIMEOUT_SECONDS + 1) * 1000
    assert call.duration_ms <= (TIMEOUT_SECONDS + 1) * 1000
    assert grown < 50, f"the web process grew {grown:.0f} MB"
    assert BidLog.objects.filter(call=call, buyer=honest, outcome=Outcome.ACCEPTED).exists()


def test_all_hostile_answers_together_keep_the_process_small(hostile_port, honest):
    for mode in MODES:
        BuyerFactory(
            name=f"hostile {mode}",
            endpoint_url=f"http://127.0.0.1:{hostile_port}/{mode}/",
            timeout_seconds=TIMEOUT_SECONDS,
        )
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = _rss_mb()

    calls = [
        call_route(caller_id=f"30355501{n:02d}", strategy=RoutingStrategy.HIGHEST_BID)
        for n in range(3)
    ]

    assert all(call.winner == honest for call in calls)
    assert BidLog.objects.filter(call__in=calls).count() == 3 * (len(MODES) + 1)
    assert all(call.duration_ms <= (TIMEOUT_SECONDS + 1) * 1000 for call in calls)
    assert _rss_mb() - before < 50
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before < 50
