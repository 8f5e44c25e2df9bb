"""Send one test bid to a buyer right now and print what came back.

Usage::

    python manage.py send_test_bid BUYER [--caller-id 3035551234] [--state CO] [--param K=V ...]

BUYER is a buyer's id, Grid ID or name. The bid goes out in this process (no Celery), within
the grid's shared limits as every bid does (a grid at its rate limit or concurrency cap logs
the skip instead), is logged with source ``test`` as one row (every attempt in its trace),
and the command exits
non-zero when the buyer is unknown or the caller ID is invalid (the local 4003 refusal is
still logged).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from bidlog.choices import Outcome, Source
from bidlog.filters import MAX_ID
from bidlog.models import BidLog
from bidlog.monitoring.testbids import DEFAULT_TEST_CALLER_ID, caller_id_for_test_bids
from bidlog.routing.eligibility import Block
from bidlog.routing.record import bid_result_record, bid_skip_record
from bidlog.routing.send import bid_send
from buyers.models import Buyer
from buyers.validators import US_STATE_CODES
from callgrid_portal.text import whole_number_upto


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--param expects KEY=VALUE, got {text!r}")
    return key.strip(), value


def _find_buyer(key: str) -> Buyer:
    """The buyer whose id, Grid ID or name is ``key``."""
    lookup = Q(grid_id=key) | Q(name=key)
    if (pk := whole_number_upto(key, MAX_ID)) is not None:
        lookup |= Q(pk=pk)
    matches = list(Buyer.objects.filter(lookup)[:2])
    if not matches:
        raise CommandError(f"No buyer with id, Grid ID or name {key!r}.")
    if len(matches) > 1:
        # Only possible when one buyer's name is another's id or Grid ID; the id wins.
        by_id = [buyer for buyer in matches if str(buyer.pk) == key]
        if by_id:
            return by_id[0]
        raise CommandError(f"{key!r} matches more than one buyer; use the buyer's id.")
    return matches[0]


class Command(BaseCommand):
    help = "Send one test bid to a buyer now, log it and print the result."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("buyer", help="buyer id, Grid ID or name")
        parser.add_argument(
            "--caller-id",
            help=(
                "caller ID to send (default: the buyer's health-check caller ID, "
                f"else {DEFAULT_TEST_CALLER_ID})"
            ),
        )
        parser.add_argument("--state", default="", help="two-letter InboundStateCode, e.g. CO")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="an extra request parameter; repeat for more",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        buyer = _find_buyer(options["buyer"].strip())
        caller_id = options["caller_id"] or caller_id_for_test_bids(buyer)
        state = (options["state"] or "").strip().upper()
        if state and state not in US_STATE_CODES:
            raise CommandError(f"--state {options['state']!r} is not a US state code such as CO.")
        params = dict(_param(item) for item in options["param"])

        sent = bid_send(buyer=buyer, caller_id=caller_id, state_code=state, params=params or None)
        if isinstance(sent, Block):
            final = bid_skip_record(
                buyer=buyer,
                outcome=sent.outcome,
                source=Source.TEST,
                caller_id=caller_id,
                state_code=state,
                reason=sent.reason,
            )
        else:
            final = bid_result_record(buyer=buyer, result=sent, source=Source.TEST)
        self.stdout.write(self._describe(buyer, final))
        if final.outcome == Outcome.INVALID_CALLER_ID:
            raise CommandError(
                f"Invalid caller ID {caller_id!r}: {final.error or final.message} "
                f"(logged as bid {final.pk})."
            )

    def _describe(self, buyer: Buyer, final: BidLog) -> str:
        attempts = [entry for entry in final.trace if not entry.get("lost")]
        lines = [
            f"Buyer:       {buyer.name} ({buyer.grid_id})",
            f"Outcome:     {final.outcome} ({final.get_outcome_display()}, "
            f"class {final.outcome_class})",
            f"Code:        {final.code if final.code is not None else '-'}",
            f"Message:     {final.message or '-'}",
            f"HTTP status: {final.http_status if final.http_status is not None else '-'}",
            f"Bid amount:  {final.bid_amount if final.bid_amount is not None else '-'}",
            f"Destination: {final.destination or '-'}",
            f"Duration:    {sum(entry['duration_ms'] or 0 for entry in attempts)} ms",
            f"Attempts:    {len(attempts)}",
        ]
        for entry in attempts if len(attempts) > 1 else []:
            code = entry["code"] if entry["code"] is not None else "-"
            lines.append(
                f"  #{entry['attempt']}: {entry['outcome']} (code {code}) "
                f"in {entry['duration_ms']} ms{': ' + entry['error'] if entry['error'] else ''}"
            )
        if final.error:
            lines.append(f"Error:       {final.error}")
        lines.append(f"BidLog id:   {final.pk}")
        return "\n".join(lines)
