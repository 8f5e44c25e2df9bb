"""Celery tasks for reports: keep rollups current and prune old raw logs (thin wrappers).

Suggested beat schedule (the one schedule lives in callgrid_portal/celery.py):

- ``bidlog.rollup_refresh`` every 60 s: reports read raw rows for hours not rolled up yet, so
  the sooner an hour is built the faster the dashboard; a run rebuilds the last two hours and
  anything marked stale by imports, which takes well under a second.
- ``bidlog.retention_prune`` hourly: removes whole hours older than ``BIDLOG_RETENTION_DAYS``
  (on PostgreSQL whole months are dropped as partitions, the hours at the edge deleted), so
  each run has about one hour of rows to delete.
- ``bidlog.partitions_ensure`` daily: creates the bid log's and the calls' partitions of the
  coming months on PostgreSQL (nothing on SQLite).
"""

from celery import shared_task

from bidlog.ingest.retention import retention_prune
from bidlog.partitions import partitions_ensure
from bidlog.reports.rollups import rollup_refresh


@shared_task(name="bidlog.rollup_refresh", ignore_result=True)
def rollup_refresh_task() -> int:
    """Build missing and stale rollup hours and days; returns the hours built."""
    return rollup_refresh()


@shared_task(name="bidlog.retention_prune", ignore_result=True)
def retention_prune_task() -> dict[str, object]:
    """Remove raw bid logs past the retention period; returns rows deleted, months dropped."""
    result = retention_prune()
    return {"deleted": result.deleted, "dropped": result.dropped}


@shared_task(name="bidlog.partitions_ensure", ignore_result=True)
def partitions_ensure_task() -> list[str]:
    """Create the coming months' partitions (PostgreSQL); returns the partitions created."""
    return partitions_ensure()
