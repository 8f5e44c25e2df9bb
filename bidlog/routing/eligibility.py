"""Whether a caller may be sent to a buyer now, and if not, why and until when.

Routing asks this before any request goes out, so a buyer that would refuse the call anyway
(paused, wrong state, closed, capped, inside its duplicate window, cooling down after a 3000)
costs a log row and no HTTP request. The eligibility API asks the same questions and shows
every answer, with the moment each block lifts.

Order of the checks: the configuration first (status, state, hours), then what the database
knows (caps, duplicate window), then the shared cache (cooldown). Routing logs the first block
only; the eligibility API lists them all. The rate limit and concurrency cap are consumed
atomically at send time (:mod:`bidlog.routing.limits`); here they are only peeked at for display.

Operating hours and caps are read on the buyer's wall clock (``Buyer.timezone``) so "09:00" and
"today" mean what the buyer means across daylight-saving changes; every instant returned is
aware UTC.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from bidlog.choices import Outcome
from bidlog.models import Call
from bidlog.routing import limits
from bidlog.routing.blocks import (
    Block,
    concurrency_block,
    cooldown_block,
    in_flight_duplicate_block,
    rate_limit_block,
    show_utc,
)
from buyers.choices import BuyerStatus
from buyers.hours import hours_next_open, hours_open
from buyers.models import Buyer


@dataclass
class Eligibility:
    """A buyer and every block between it and the caller (none: it may be sent now)."""

    buyer: Buyer
    blocks: list[Block] = field(default_factory=list)
    caps: tuple[int, int] | None = None  # (day, month) routed calls, for capped buyers

    @property
    def eligible(self) -> bool:
        return not self.blocks

    @property
    def first(self) -> Block | None:
        return self.blocks[0] if self.blocks else None


# --- caps ---------------------------------------------------------------------------------


def local_day_bounds(*, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the buyer's calendar day containing ``now``."""
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_month_bounds(*, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the buyer's calendar month containing ``now``."""
    day = now.astimezone(tz).date()
    first = day.replace(day=1)
    following = first + timedelta(days=calendar.monthrange(first.year, first.month)[1])
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(following, time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def cap_counts(*, buyers: Sequence[Buyer], now: datetime) -> dict[int, tuple[int, int]]:
    """Routed calls so far in each capped buyer's own day and month: ``{pk: (day, month)}``.

    One query for every buyer with a cap: each buyer's day and month start differ (its own
    time zone), so the conditions are OR-ed per buyer inside one grouped count. Buyers without
    caps are left out. Counts routed calls, paid out or not: the cap is about volume delivered.
    """
    capped = [b for b in buyers if b.daily_cap is not None or b.monthly_cap is not None]
    if not capped:
        return {}
    in_month = Q(pk__in=[])
    in_day = Q(pk__in=[])
    for buyer in capped:
        tz = ZoneInfo(buyer.timezone)
        day_start = local_day_bounds(tz=tz, now=now)[0]
        # A buyer with a daily cap only needs today's calls, not the month's.
        since = (
            local_month_bounds(tz=tz, now=now)[0] if buyer.monthly_cap is not None else day_start
        )
        in_month |= Q(winner_id=buyer.pk, created_at__gte=since)
        in_day |= Q(winner_id=buyer.pk, created_at__gte=day_start)
    rows = (
        Call.objects.filter(in_month, routed=True, created_at__lte=now)
        .values("winner_id")
        .annotate(month=Count("id"), day=Count("id", filter=in_day))
    )
    counts = {row["winner_id"]: (row["day"], row["month"]) for row in rows}
    return {b.pk: counts.get(b.pk, (0, 0)) for b in capped}


def cap_block(
    *, buyer: Buyer, now: datetime, counts: tuple[int, int] | None = None
) -> Block | None:
    """A ``skipped_cap`` block when the buyer's routed calls reached its daily or monthly cap.

    ``counts`` is the buyer's ``(day, month)`` from :func:`cap_counts`; without it this buyer's
    own counts are read.
    """
    if buyer.daily_cap is None and buyer.monthly_cap is None:
        return None
    tz = ZoneInfo(buyer.timezone)
    day, month = counts if counts is not None else cap_counts(buyers=[buyer], now=now)[buyer.pk]
    if buyer.monthly_cap is not None and month >= buyer.monthly_cap:
        month_end = local_month_bounds(tz=tz, now=now)[1]
        return Block(
            Outcome.SKIPPED_CAP,
            f"monthly cap of {buyer.monthly_cap} routed calls reached "
            f"(resets {show_utc(month_end)})",
            month_end,
        )
    if buyer.daily_cap is not None and day >= buyer.daily_cap:
        day_end = local_day_bounds(tz=tz, now=now)[1]
        return Block(
            Outcome.SKIPPED_CAP,
            f"daily cap of {buyer.daily_cap} routed calls reached (resets {show_utc(day_end)})",
            day_end,
        )
    return None


def cap_counters(
    *, buyer: Buyer, now: datetime, counts: tuple[int, int] | None
) -> tuple[limits.CapCounter, ...]:
    """The buyer's caps as shared counters to reserve against, month first like the block.

    Keys name the buyer's own calendar day or month, so midnight in its zone starts a fresh
    counter (seeded from ``counts``, the database's ``(day, month)``) without any reset job.
    A key lives one day past its period, so it is never seeded twice within the period.
    """
    if buyer.daily_cap is None and buyer.monthly_cap is None:
        return ()
    tz = ZoneInfo(buyer.timezone)
    local = now.astimezone(tz)
    day, month = counts or (0, 0)
    counters: list[limits.CapCounter] = []
    if buyer.monthly_cap is not None:
        end = local_month_bounds(tz=tz, now=now)[1]
        counters.append(
            limits.CapCounter(
                key=limits.cap_key(buyer_id=buyer.pk, period=f"m{local:%Y-%m}"),
                limit=buyer.monthly_cap,
                seed=month,
                ttl_seconds=(end - now).total_seconds() + 86400,
            )
        )
    if buyer.daily_cap is not None:
        end = local_day_bounds(tz=tz, now=now)[1]
        counters.append(
            limits.CapCounter(
                key=limits.cap_key(buyer_id=buyer.pk, period=f"d{local:%Y-%m-%d}"),
                limit=buyer.daily_cap,
                seed=day,
                ttl_seconds=(end - now).total_seconds() + 86400,
            )
        )
    return tuple(counters)


def reserved_cap_block(*, buyer: Buyer, now: datetime, cap_index: int, total: int) -> Block:
    """The ``skipped_cap`` block of a cap found full at admission, routes in flight counted."""
    monthly_first = buyer.monthly_cap is not None
    is_month = monthly_first and cap_index == 0
    counts = (0, total) if is_month else (total, 0)
    block = cap_block(buyer=buyer, now=now, counts=counts)
    if block is None:  # the cap changed in between; say what was seen
        return Block(Outcome.SKIPPED_CAP, f"cap reached with {total} calls routed or in flight")
    return _with_routes_in_flight(block)


def _with_routes_in_flight(block: Block) -> Block:
    return Block(
        block.outcome,
        block.reason.replace(" reached", " reached with routes in flight"),
        block.until,
    )


# --- duplicate window ---------------------------------------------------------------------


def last_paid_calls(
    *, caller_id: str, buyers: Sequence[Buyer], now: datetime
) -> dict[int, datetime]:
    """The latest routed, paid-out call of ``caller_id`` per buyer inside the longest window.

    One query for all buyers; it follows the partial index on (winner, caller_id, created_at)
    of routed calls.
    """
    windows = [b.duplicate_window_days for b in buyers if b.duplicate_window_days]
    if not windows or not caller_id:
        return {}
    rows = (
        Call.objects.filter(
            routed=True,
            paid_out=True,
            caller_id=caller_id,
            winner_id__in=[b.pk for b in buyers],
            created_at__gt=now - timedelta(days=max(windows)),
            created_at__lte=now,
        )
        .values("winner_id")
        .annotate(last=Max("created_at"))
    )
    return {row["winner_id"]: row["last"] for row in rows}


def buyers_with_last_paid(
    *, buyer_ids: Collection[int] | None, caller_id: str, now: datetime
) -> list[Buyer]:
    """Buyers (all, or ``buyer_ids``) in priority order, each with ``last_paid_at``: this
    caller's latest paid call with it.

    Routing reads the buyers and the duplicate window in one query (:func:`eligible_buyers_sql`).
    On PostgreSQL the driver already gives every column in its Python type and Django's
    backend adds no converter of its own, so each row goes to ``Buyer.from_db`` after the
    fields' own ``from_db_value`` (the JSON fields): 0.16 ms for three buyers, where
    ``Buyer.objects.raw()`` took 0.34 ms finding the columns and converters again on every
    route. Other backends (SQLite stores decimals and moments as text) read through ``raw()``.
    """
    ids = sorted(set(buyer_ids)) if buyer_ids is not None else None
    if ids == []:
        return []
    sql, params = eligible_buyers_sql(buyer_ids=ids, caller_id=caller_id, now=now)
    if connection.vendor == "postgresql":
        buyers = _buyers_from_rows(sql, params)
    else:
        buyers = list(Buyer.objects.raw(sql, params))
    for buyer in buyers:
        buyer.last_paid_at = _aware(buyer.last_paid_at)  # type: ignore[attr-defined]
    return buyers


def _buyers_from_rows(sql: str, params: list[Any]) -> list[Buyer]:
    """Buyers from the rows of :func:`eligible_buyers_sql`: its columns, then last_paid_at."""
    names, decoded = _buyer_columns()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    buyers = []
    for row in rows:
        values = list(row[: len(names)])
        for position, column in decoded:
            values[position] = column.from_db_value(values[position], column, connection)
        buyer = Buyer.from_db(connection.alias, names, values)
        buyer.last_paid_at = row[len(names)]  # type: ignore[attr-defined]
        buyers.append(buyer)
    return buyers


@functools.cache
def _buyer_columns() -> tuple[list[str], list[tuple[int, Any]]]:
    """The buyer's columns in the order the query selects them, and those whose field turns
    the stored value into its own (``from_db_value``: the JSON fields)."""
    fields = Buyer._meta.concrete_fields
    decoded = [(i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    return [f.attname for f in fields], decoded


def eligible_buyers_sql(
    *, buyer_ids: Sequence[int] | None, caller_id: str, now: datetime
) -> tuple[str, list[Any]]:
    """The route's first query and its parameters: the buyers with the caller's last paid call.

    Each buyer's ``last_paid_at`` is a correlated subquery that walks the partial index on
    (winner, caller_id, created_at) of routed calls backwards and stops at the first paid-out
    one; the latest paid call is enough, since an earlier one can only end its window sooner.
    The text depends only on how many buyers are asked for, so PostgreSQL prepares it once per
    connection and shape (``DB_PREPARED_STATEMENTS``). Written by hand because it runs before
    every route's first bid: the ORM compiled the same statement afresh on every route.
    """
    moment = Call._meta.get_field("created_at").get_db_prep_value(now, connection)
    # Only a call inside the buyer's window can block (duplicate_block). Saying so on
    # PostgreSQL lets each buyer's lookup skip the month partitions before its window, instead
    # of probing every month's index; SQLite has no partitions (and no interval arithmetic).
    in_window = connection.vendor == "postgresql"
    params: list[Any] = [caller_id, moment, *([moment] if in_window else [])]
    if buyer_ids is not None:
        params.extend(buyer_ids)
    id_count = None if buyer_ids is None else len(buyer_ids)
    return _eligible_buyers_text(id_count, in_window=in_window), params


@functools.cache
def _eligible_buyers_text(id_count: int | None, *, in_window: bool) -> str:
    quote = connection.ops.quote_name
    buyer_table, call_table = quote(Buyer._meta.db_table), quote(Call._meta.db_table)
    # The columns in the model's order, which _buyers_from_rows relies on (b.* would give
    # the table's, which migrations may have appended in another order).
    columns = ", ".join(f"b.{quote(cast(str, f.column))}" for f in Buyer._meta.concrete_fields)
    # routed and paid_out are literals, not parameters: a generic plan may then use the
    # partial index, whose condition is "routed".
    where = "" if id_count is None else f"WHERE b.id IN ({', '.join(['%s'] * id_count)}) "
    window = (
        "AND c.created_at > %s - make_interval(days => b.duplicate_window_days) "
        if in_window
        else ""
    )
    return (
        f"SELECT {columns}, (SELECT c.created_at FROM {call_table} c "
        "WHERE c.winner_id = b.id AND c.caller_id = %s AND c.routed AND c.paid_out "
        f"AND c.created_at <= %s {window}ORDER BY c.created_at DESC LIMIT 1) "
        f"AS last_paid_at FROM {buyer_table} b {where}ORDER BY b.priority, b.name, b.id"
    )


def _aware(value: datetime | str | None) -> datetime | None:
    """A moment read from a raw column: SQLite gives the text Django stored, in UTC."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def duplicate_block(*, buyer: Buyer, last_paid: datetime | None, now: datetime) -> Block | None:
    """A ``skipped_duplicate`` block when the caller was paid out to this buyer in its window."""
    if last_paid is None or not buyer.duplicate_window_days:
        return None
    until = last_paid + timedelta(days=buyer.duplicate_window_days)
    if until <= now:
        return None
    return Block(
        Outcome.SKIPPED_DUPLICATE,
        f"caller already paid out to this buyer on {show_utc(last_paid)}; "
        f"duplicate window ({buyer.duplicate_window_days} days) until {show_utc(until)}",
        until,
    )


# --- everything together ------------------------------------------------------------------


def config_blocks(*, buyer: Buyer, state_code: str, now: datetime) -> list[Block]:
    """Blocks that need nothing but the buyer's configuration: status, state, hours."""
    blocks: list[Block] = []
    if buyer.status != BuyerStatus.ACTIVE:
        blocks.append(Block(Outcome.SKIPPED_STATUS, f"buyer is {buyer.status}"))
    accepted = buyer.accepted_states or []
    if accepted and state_code not in accepted:
        shown = ", ".join(accepted[:10]) + (" ..." if len(accepted) > 10 else "")
        what = f"state {state_code}" if state_code else "a call without a state"
        blocks.append(Block(Outcome.SKIPPED_STATE, f"{what} is not accepted (only {shown})"))
    tz = ZoneInfo(buyer.timezone)
    hours = buyer.operating_hours or {}
    if not hours_open(hours=hours, tz=tz, now=now):
        opens = hours_next_open(hours=hours, tz=tz, now=now)
        local = now.astimezone(tz)
        when = f"opens {show_utc(opens)}" if opens else "no opening hours set"
        blocks.append(
            Block(
                Outcome.SKIPPED_HOURS,
                f"outside operating hours ({local:%a %H:%M} in {buyer.timezone}); {when}",
                opens,
            )
        )
    return blocks


def eligibility_check(
    *,
    buyers: Iterable[Buyer],
    caller_id: str,
    state_code: str = "",
    now: datetime | None = None,
    include_limits: bool = False,
    check_cooldown: bool = True,
    last_paid: Mapping[int, datetime | None] | None = None,
) -> list[Eligibility]:
    """Every block between ``caller_id`` (normalized, 10 digits) and each buyer, in order.

    ``include_limits`` also peeks at the shared rate limit and concurrency cap without taking
    anything, for the eligibility page. Routing passes ``check_cooldown=False`` because its
    atomic admission at send time (:func:`limits.admit`) checks the cooldown in the same
    round trip as the slot and the token. ``last_paid`` (buyer pk to the caller's latest
    paid-out call, from :func:`buyers_with_last_paid`) spares the duplicate-window query.
    """
    now = now or timezone.now()
    buyers = list(buyers)
    if last_paid is None:
        last_paid = last_paid_calls(caller_id=caller_id, buyers=buyers, now=now)
    caps = cap_counts(buyers=buyers, now=now)
    answers: list[Eligibility] = []
    for buyer in buyers:
        blocks = config_blocks(buyer=buyer, state_code=state_code, now=now)
        for block in (
            cap_block(buyer=buyer, now=now, counts=caps.get(buyer.pk)),
            duplicate_block(buyer=buyer, last_paid=last_paid.get(buyer.pk), now=now),
        ):
            if block is not None:
                blocks.append(block)
        cooling = (
            limits.cooldown_until(grid_id=buyer.grid_id, now=now.timestamp())
            if check_cooldown
            else None
        )
        if cooling is not None:
            blocks.append(cooldown_block(cooling))
        if include_limits:
            blocks.extend(_in_flight_blocks(buyer, caller_id, now, caps.get(buyer.pk), blocks))
            blocks.extend(_limit_blocks(buyer))
        answers.append(Eligibility(buyer=buyer, blocks=blocks, caps=caps.get(buyer.pk)))
    return answers


def _in_flight_blocks(
    buyer: Buyer,
    caller_id: str,
    now: datetime,
    counts: tuple[int, int] | None,
    found: list[Block],
) -> list[Block]:
    """Blocks that routes running right now (in any process) would add to the database's.

    A cap counts the places those routes hold, and a caller another route is selling to the
    buyer is taken until that route ends. Read from the shared store without taking anything.
    """
    seen = {block.outcome for block in found}
    blocks: list[Block] = []
    if counts is not None and Outcome.SKIPPED_CAP not in seen:
        in_flight = limits.cap_in_flight(buyer_id=buyer.pk, now=now.timestamp())
        if in_flight:
            day, month = counts
            block = cap_block(buyer=buyer, now=now, counts=(day + in_flight, month + in_flight))
            if block is not None:
                blocks.append(_with_routes_in_flight(block))
    if buyer.duplicate_window_days and Outcome.SKIPPED_DUPLICATE not in seen:
        holder = limits.duplicate_holder(buyer_id=buyer.pk, caller_id=caller_id)
        if limits.duplicate_in_flight(holder):
            blocks.append(in_flight_duplicate_block())
    return blocks


def _limit_blocks(buyer: Buyer) -> list[Block]:
    blocks: list[Block] = []
    rate = limits.rate_limit_peek(grid_id=buyer.grid_id, per_minute=buyer.rate_limit_per_minute)
    if not rate.allowed:
        blocks.append(rate_limit_block(buyer, retry_after=rate.retry_after))
    if limits.concurrency_in_flight(grid_id=buyer.grid_id) >= buyer.max_concurrency:
        blocks.append(concurrency_block(buyer))
    return blocks
