"""Create the demo buyers, pointed at the local CallGrid simulator: ``manage.py seed_demo``.

Each demo buyer has a grid in ``callgrid_portal/demo_scenario.json`` that gives it its own
behaviour in the simulator (a decliner, a flaky one, a rate-limited one, accepts at different
amounts, a slow one), so the dashboard has something to show from the first minute.

Safe to run at every start: buyers are matched by Grid ID. A new one gets every demo value;
an existing one only has its endpoint moved to the simulator's current address, so edits made
in the admin survive a restart. ``--reset`` puts every demo value back.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from buyers.choices import BuyerStatus
from buyers.models import Buyer
from buyers.services import buyer_create, buyer_update

DEMO_SCENARIO = Path(__file__).resolve().parents[2] / "demo_scenario.json"

_WEEKDAYS_8_TO_8 = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}

# Ordered as the waterfall asks them, so one demo call meets a decline, retries, a rate limit
# and finally a bid. 555-01xx numbers are reserved for fiction: health checks never reach a
# real caller. Every demo buyer has health checks on, so the health column fills at once.
DEMO_BUYERS: tuple[dict[str, Any], ...] = (
    {
        "name": "Northwind Financial (demo)",
        "grid_id": "cgdemo01northwindfinancial",
        "health_check_minutes": 5,
        "health_check_caller_id": "3035550103",
        "vertical": "financial",
        "min_bid": Decimal("25.00"),
        "priority": 1,
        "timezone": "America/Denver",
        "operating_hours": _WEEKDAYS_8_TO_8,
        "notes": "Demo: declines every call (2000).",
    },
    {
        "name": "Harbor Insurance Group (demo)",
        "grid_id": "cgdemo02harborinsurance",
        "vertical": "insurance",
        "min_bid": Decimal("20.00"),
        "priority": 2,
        "health_check_minutes": 10,
        "health_check_caller_id": "3035550101",
        "notes": "Demo: its first two answers are 5000 system errors, then it bids $33.00.",
    },
    {
        "name": "Peak Rate Leads (demo)",
        "grid_id": "cgdemo03peakrateleads",
        "health_check_minutes": 10,
        "health_check_caller_id": "3035550104",
        "vertical": "other",
        "min_bid": Decimal("10.00"),
        "priority": 3,
        "daily_cap": 200,
        "notes": "Demo: bids $27.25 but allows only 6 requests a minute (5001 / HTTP 429).",
    },
    {
        "name": "Acme Insurance Direct (demo)",
        "grid_id": "cgdemo04acmeinsurance",
        "vertical": "insurance",
        "min_bid": Decimal("30.00"),
        "priority": 4,
        "health_check_minutes": 5,
        "health_check_caller_id": "3035550102",
        "notes": "Demo: bids $42.00 in about 200 ms.",
    },
    {
        "name": "Summit Home Pros (demo)",
        "grid_id": "cgdemo05summithomepros",
        "health_check_minutes": 5,
        "health_check_caller_id": "7205550105",
        "vertical": "home_services",
        "min_bid": Decimal("12.00"),
        "priority": 5,
        "accepted_states": ["AZ", "CO", "NM", "UT"],
        "notes": "Demo: bids $18.50; takes Four Corners states only.",
    },
    {
        "name": "Lakeside Solar (demo)",
        "grid_id": "cgdemo06lakesidesolar",
        "health_check_minutes": 5,
        "health_check_caller_id": "3035550106",
        "vertical": "solar",
        "min_bid": Decimal("40.00"),
        "priority": 6,
        "timeout_seconds": 5,
        "notes": "Demo: bids $55.00 but answers in 3 to 7 s, so some bids time out.",
    },
)


def demo_endpoint(*, host: str = "127.0.0.1", port: int = 8099) -> str:
    """The Bid API base URL of the simulator at ``host:port``."""
    return f"http://{host}:{port}/api/bid/"


def demo_grid_ids() -> list[str]:
    """Grid IDs the demo scenario gives a behaviour to."""
    scenario = json.loads(DEMO_SCENARIO.read_text(encoding="utf-8"))
    return list(scenario.get("grids", {}))


@transaction.atomic
def demo_buyers_seed(*, endpoint_url: str, reset: bool = False) -> list[tuple[Buyer, bool]]:
    """Create or refresh the demo buyers and return each with whether it was created.

    Writes go through the buyers services, so every demo buyer passes the same validation as
    one typed into the admin; an endpoint the SSRF guard refuses stops the whole seed with the
    validator's message and nothing half-written.
    """
    seeded: list[tuple[Buyer, bool]] = []
    for spec in DEMO_BUYERS:
        buyer = Buyer.objects.filter(grid_id=spec["grid_id"]).first()
        try:
            if buyer is None:
                buyer = buyer_create(**spec, endpoint_url=endpoint_url)
                seeded.append((buyer, True))
                continue
            changes: dict[str, Any] = {"endpoint_url": endpoint_url}
            if reset:
                changes.update(spec, status=BuyerStatus.ACTIVE)
            buyer = buyer_update(buyer=buyer, **changes)
        except ValidationError as exc:
            by_field = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" if field else " ".join(messages)
                for field, messages in by_field.items()
            )
            raise CommandError(f"demo buyer {spec['name']!r} is not valid: {problems}") from None
        seeded.append((buyer, False))
    return seeded


class Command(BaseCommand):
    help = "Create (or refresh) the demo buyers, pointed at the local CallGrid simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sim-host", default="127.0.0.1", help="Simulator host.")
        parser.add_argument("--sim-port", type=int, default=8099, help="Simulator port.")
        parser.add_argument(
            "--endpoint",
            help="Full Bid API base URL instead of host and port "
            "(e.g. http://simulator:8099/api/bid/ under docker compose).",
        )
        parser.add_argument(
            "--reset", action="store_true", help="Put every demo value back, not just the URL."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        endpoint = options["endpoint"] or demo_endpoint(
            host=options["sim_host"], port=options["sim_port"]
        )
        seeded = demo_buyers_seed(endpoint_url=endpoint, reset=options["reset"])
        created = sum(1 for _buyer, was_created in seeded if was_created)
        self.stdout.write(
            f"Demo buyers: {created} created, {len(seeded) - created} refreshed, "
            f"endpoint {endpoint}"
        )
