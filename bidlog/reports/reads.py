"""How a page's report reads run on PostgreSQL: in one transaction, without parallel workers.

A page reads a few dozen small aggregates (rollup rows and an hour or so of raw edges), each a
few milliseconds of work. Spread over a month's partitions, PostgreSQL's planner costs many of
them high enough to start parallel workers, and starting them took 20 to 30 ms a statement on
the two-core benchmark machine (``benchmarks/reports.py``), more than the statements
themselves. ``SET LOCAL`` ends with the transaction, so a pooled connection goes back to the
pool as it came; the rollup builds and the API's reports keep the server's setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def serial_reads() -> Iterator[None]:
    """Run the block's queries in one transaction without parallel workers (PostgreSQL; other
    databases run it as it is)."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        yield
