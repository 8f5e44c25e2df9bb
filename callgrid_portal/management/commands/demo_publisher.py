"""A demo traffic source: ``manage.py demo_publisher`` routes demo calls every few seconds.

``manage.py portal`` starts it with the simulator (``DEMO_TRAFFIC_SECONDS``, 5 there, 0 and
so off anywhere else), so the overview, the charts and the live call log have something to
show within a minute of the first start. Calls go only to the demo buyers (the Grid IDs of
``demo_scenario.json``), never to a buyer someone added, and come from fictional numbers
(555-0100 to 555-0199). Right after its first call it runs every due health check, which
``seed_demo`` turns on for every demo buyer; beat keeps them going after that.

A failed round is logged and the next one goes on: the portal stops everything when a child
exits, and a demo must not take the portal down with it.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bidlog.models import Call
from bidlog.monitoring.checks import health_check_run, health_checks_claim
from bidlog.routing.strategies import call_route
from buyers.choices import BuyerStatus
from buyers.models import Buyer
from callgrid_portal.management.commands.seed_demo import demo_grid_ids

logger = logging.getLogger(__name__)

AREA_CODES = ("303", "720", "719", "602", "480", "505", "801", "512", "415", "305")
STATES = ("CO", "CO", "AZ", "NM", "UT", "TX", "CA", "FL")
STRATEGIES = ("waterfall", "waterfall", "highest_bid")
# The longest pause between calls the command takes (an hour); a demo wants seconds.
MAX_INTERVAL_SECONDS = 3600.0


def fiction_caller_id(rng: random.Random) -> str:
    """A 10-digit number in the 555-01xx block, which is reserved for fiction."""
    return f"{rng.choice(AREA_CODES)}55501{rng.randrange(100):02d}"


def demo_call_route(*, rng: random.Random) -> Call | None:
    """Route one call to the active demo buyers; ``None`` when none is active."""
    buyer_ids = list(
        Buyer.objects.filter(grid_id__in=demo_grid_ids(), status=BuyerStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not buyer_ids:
        return None
    return call_route(
        caller_id=fiction_caller_id(rng),
        state_code=rng.choice(STATES),
        strategy=rng.choice(STRATEGIES),
        buyer_ids=buyer_ids,
        params={"PublisherId": "demo-publisher"},
    )


def health_round() -> int:
    """Run every health check that is due now (the claim makes a beat tick alongside harmless)."""
    ran = 0
    for buyer_id, due_at in health_checks_claim():
        try:
            health_check_run(buyer_id=buyer_id, due_at=due_at)
            ran += 1
        except Exception:
            logger.exception("demo publisher: health check of buyer %s failed", buyer_id)
    return ran


class Command(BaseCommand):
    help = "Route a demo call to the simulator's demo buyers every few seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between calls (default: DEMO_TRAFFIC_SECONDS).",
        )
        parser.add_argument(
            "--count",
            type=int,
            default=0,
            help="Stop after this many calls (0: never).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for tests.")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if interval is None:
            interval = float(settings.DEMO_TRAFFIC_SECONDS)
        if not 0 < interval <= MAX_INTERVAL_SECONDS:
            raise CommandError(
                f"--interval (or DEMO_TRAFFIC_SECONDS) must be above 0 and at most "
                f"{MAX_INTERVAL_SECONDS:.0f} seconds, not {interval:g}: demo traffic is off."
            )
        count = options["count"]
        if count < 0:
            raise CommandError(f"--count must be 0 (no limit) or more, not {count}.")
        rng = random.Random(options["seed"])
        routed = 0
        while True:
            self._round(rng, first=routed == 0)
            routed += 1
            if count and routed >= count:
                break
            time.sleep(interval)

    def _round(self, rng: random.Random, *, first: bool) -> None:
        try:
            call = demo_call_route(rng=rng)
            if call is None:
                logger.warning("demo publisher: no active demo buyer; nothing routed")
        except Exception:
            logger.exception("demo publisher: routing a demo call failed")
        if first:
            health_round()
