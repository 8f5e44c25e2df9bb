"""Monthly partitions of the bid log and the calls on PostgreSQL: created ahead, listed, dropped.

On PostgreSQL ``bidlog_bidlog`` and ``bidlog_call`` are partitioned by range of ``created_at``
(migration ``0008_partitions``): one partition per UTC month, named ``<table>_pYYYYMM``, and a
default partition ``<table>_pdefault`` that takes any row no month partition holds (a bid from
long ago in a test, a month the beat task has not created yet), so an insert is never refused.
Beat runs :func:`partitions_ensure` daily to create the coming months; retention drops whole
months with :func:`partitions_drop_before`. SQLite keeps plain tables, and every function here
does nothing there: callers take the same path on both.

https://www.postgresql.org/docs/15/ddl-partitioning.html
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from bidlog.models import BidLog, Call
from callgrid_portal.text import ascii_digits

logger = logging.getLogger(__name__)

# The partitioned tables, by model: both are partitioned on created_at.
PARTITIONED_TABLES: tuple[str, ...] = (BidLog._meta.db_table, Call._meta.db_table)
DEFAULT_SUFFIX = "_pdefault"
# DDL on a partitioned table takes a strong lock on it; waiting behind a long report query
# would queue every live insert behind the DDL. Give up after this and try on the next run.
LOCK_TIMEOUT = "2s"
# One key for every partition change, so two beat runs (or beat and retention) never race.
_ADVISORY_KEY = (4242, 8)


def month_floor(moment: datetime) -> datetime:
    """The start of the UTC month holding ``moment``."""
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_next(month: datetime) -> datetime:
    """The start of the UTC month after the one starting at ``month``."""
    if month.month == 12:
        return month.replace(year=month.year + 1, month=1)
    return month.replace(month=month.month + 1)


def partition_name(table: str, month: datetime) -> str:
    """The name of ``table``'s partition of the UTC month starting at ``month``."""
    return f"{table}_p{month:%Y%m}"


def is_partitioned(table: str) -> bool:
    """Whether ``table`` is a partitioned table (PostgreSQL after the migration)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def partition_months(table: str) -> list[datetime]:
    """The months ``table`` has a partition for, oldest first (the default one left out)."""
    if not is_partitioned(table):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = f"{table}_p"
    months = []
    for name in names:
        suffix = name.removeprefix(prefix)
        if name.startswith(prefix) and len(suffix) == 6 and ascii_digits(suffix):
            months.append(datetime(int(suffix[:4]), int(suffix[4:]), 1, tzinfo=UTC))
    return sorted(months)


def _literal(moment: datetime) -> str:
    # A bound of our own making (a month start), never a value from outside.
    return f"'{moment.astimezone(UTC).isoformat()}'"


def _exclusive(cursor: CursorWrapper) -> None:
    """Take the partitions' advisory lock, and give up on a table lock after LOCK_TIMEOUT."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(_ADVISORY_KEY))
    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")


def partition_default_create(table: str) -> bool:
    """Create ``table``'s default partition if it has none; whether it was created."""
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        _exclusive(cursor)
        cursor.execute("SELECT to_regclass(%s)", [quote(table + DEFAULT_SUFFIX)])
        if cursor.fetchone()[0] is not None:
            return False
        cursor.execute(
            f"CREATE TABLE {quote(table + DEFAULT_SUFFIX)} PARTITION OF {quote(table)} DEFAULT"
        )
    return True


def partition_create(*, table: str, month: datetime) -> bool:
    """Create ``table``'s partition of ``month`` if missing; whether it was created.

    Rows of that month already in the default partition move into the new one (PostgreSQL
    refuses to create a partition whose rows sit in the default one): the partition is made
    as a table of its own, the rows moved, and it is attached. Idempotent and safe to run
    concurrently (an advisory lock); a no-op unless ``table`` is partitioned.
    """
    if not is_partitioned(table):
        return False
    quote = connection.ops.quote_name
    month = month_floor(month)
    name = quote(partition_name(table, month))
    parent, default = quote(table), quote(table + DEFAULT_SUFFIX)
    bounds = f"FOR VALUES FROM ({_literal(month)}) TO ({_literal(month_next(month))})"
    with transaction.atomic(), connection.cursor() as cursor:
        _exclusive(cursor)
        cursor.execute("SELECT to_regclass(%s), to_regclass(%s)", [name, default])
        exists, has_default = cursor.fetchone()
        if exists is not None:
            return False
        in_range = "created_at >= %s AND created_at < %s"
        moved = False
        if has_default is not None:
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {in_range})",
                [month, month_next(month)],
            )
            moved = bool(cursor.fetchone()[0])
        if not moved:
            cursor.execute(f"CREATE TABLE {name} PARTITION OF {parent} {bounds}")
            return True
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE {in_range} RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            [month, month_next(month)],
        )
        cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {name} {bounds}")
        logger.info("partition %s created with %d rows from the default", name, cursor.rowcount)
    return True


def partitions_ensure(*, now: datetime | None = None, ahead: int | None = None) -> list[str]:
    """Create this month's and the next ``ahead`` months' partitions of every partitioned
    table (``BIDLOG_PARTITION_MONTHS_AHEAD`` by default), and the default partitions.

    Returns the partitions created; nothing on SQLite. Run daily by beat: a month is created
    months before its first row, and a missed run changes nothing.
    """
    now = now or datetime.now(UTC)
    ahead = settings.BIDLOG_PARTITION_MONTHS_AHEAD if ahead is None else ahead
    created = []
    for table in PARTITIONED_TABLES:
        if not is_partitioned(table):
            continue
        if partition_default_create(table):
            created.append(table + DEFAULT_SUFFIX)
        month = month_floor(now)
        for _ in range(ahead + 1):
            if partition_create(table=table, month=month):
                created.append(partition_name(table, month))
            month = month_next(month)
    if created:
        logger.info("partitions created: %s", ", ".join(created))
    return created


def partitions_drop_before(*, table: str, cutoff: datetime) -> list[str]:
    """Detach and drop ``table``'s month partitions that end at or before ``cutoff``.

    Dropping a month is a catalog change (milliseconds), where deleting its rows would write
    every one of them to the WAL and leave the space to vacuum. Rows before ``cutoff`` in a
    month that straddles it, or in the default partition, are the caller's to delete.
    Returns the partitions dropped; nothing on SQLite.
    """
    quote = connection.ops.quote_name
    dropped = []
    for month in partition_months(table):
        if month_next(month) > cutoff:
            break
        name = partition_name(table, month)
        with transaction.atomic(), connection.cursor() as cursor:
            _exclusive(cursor)
            cursor.execute(f"ALTER TABLE {quote(table)} DETACH PARTITION {quote(name)}")
            cursor.execute(f"DROP TABLE {quote(name)}")
        dropped.append(name)
    if dropped:
        logger.info("partitions dropped: %s", ", ".join(dropped))
    return dropped
