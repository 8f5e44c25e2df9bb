"""Celery tasks for reports: keep rollups current and prune old raw logs (thin wrappers).

Suggested beat schedule (the one schedule lives in callgrid_portal/celery.py):

- ``bidlog.rollup_refresh`` every 60 s: reports read raw rows for hours not rolled up yet, so
  the sooner an hour is built the faster the dashboard; a run rebuilds the last two hours and
  anything marked stale by imports, which takes well under a second.
- ``bidlog.retention_prune`` hourly: deletes whole hours older than ``BIDLOG_RETENTION_DAYS``
  in batches, so each run has about one hour of rows to delete.
"""

from celery import shared_task

from bidlog.ingest.retention import retention_prune
from bidlog.reports.rollups import rollup_refresh


@shared_task(name="bidlog.rollup_refresh", ignore_result=True)
def rollup_refresh_task() -> int:
    """Build missing and stale rollup hours and days; returns the hours built."""
    return rollup_refresh()


@shared_task(name="bidlog.retention_prune", ignore_result=True)
def retention_prune_task() -> int:
    """Delete raw bid logs past the retention period; returns the rows deleted."""
    return retention_prune()
