"""The Celery app of the portal: workers run test bids, health checks and alert notices.

Configuration comes from Django's settings (the ``CELERY_*`` block of
``callgrid_portal/settings.py``), so one environment configures the web server, the workers
and beat alike. Tasks are found in each app's ``tasks.py`` (and ``report_tasks.py``).

Run a worker with ``celery -A callgrid_portal worker`` and the scheduler with
``celery -A callgrid_portal beat``; ``manage.py portal`` starts both for the embedded default.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")

app = Celery("callgrid_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(related_name="report_tasks")

# The one schedule of the portal: name -> (task, every N seconds, why). Beat runs
# django-celery-beat's DatabaseScheduler, so these become PeriodicTask rows that operators can
# change or disable in the admin; beat creates a missing row when it starts and never
# overwrites one that exists, so an edit in the admin survives a restart.
BEAT_SCHEDULE: dict[str, tuple[str, int, str]] = {
    "health checks: queue due buyers": (
        "bidlog.health_checks_enqueue",
        60,
        "health_check_minutes counts in minutes, so a tick a minute checks each buyer on "
        "time; the compare-and-set claim makes an extra tick or a second beat harmless.",
    ),
    "test bids: recover stranded": (
        "bidlog.test_bids_recover",
        60,
        "A test bid whose worker died, or whose message the embedded broker lost, is queued "
        "again once its claim is stale, so no row stays pending for ever.",
    ),
    "alerts: evaluate live traffic": (
        "bidlog.alerts_check",
        60,
        "Test bids and health checks evaluate alerts as they finish; live calls are many, so "
        "the rules run over them once a minute instead of after every call.",
    ),
    "reports: refresh rollups": (
        "bidlog.rollup_refresh",
        60,
        "Reports read raw rows for hours not rolled up yet; building the latest hours every "
        "minute keeps the dashboard fast, and a run takes well under a second.",
    ),
    "routes: replay the spool": (
        "bidlog.route_spool_replay",
        10,
        "Routes decided while PostgreSQL was away wait in files under ROUTE_SPOOL_DIR; "
        "replaying them soon after it returns keeps reports, caps and duplicate windows "
        "right. Exactly once whoever replays (route_key), so a second beat is harmless.",
    ),
    "retention: prune old bid logs": (
        "bidlog.retention_prune",
        3600,
        "Raw logs older than BIDLOG_RETENTION_DAYS go an hour at a time; aggregates stay. "
        "On PostgreSQL a month wholly past it is a partition dropped at once.",
    ),
    "partitions: create the coming months": (
        "bidlog.partitions_ensure",
        86400,
        "PostgreSQL only: the bid log and calls are partitioned by month; creating the next "
        "BIDLOG_PARTITION_MONTHS_AHEAD months daily keeps rows out of the default partition, "
        "and a missed day changes nothing. Idempotent (an advisory lock).",
    ),
}


def beat_schedule_install() -> list[str]:
    """Create the PeriodicTask rows of :data:`BEAT_SCHEDULE` that do not exist yet.

    Returns the names created. Existing rows are left exactly as they are, including any
    change an operator made in the admin.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = []
    for name, (task, seconds, reason) in BEAT_SCHEDULE.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        _, made = PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "description": reason}
        )
        if made:
            created.append(name)
    return created


@beat_init.connect
def _install_schedule(sender: Any = None, **kwargs: Any) -> None:
    # DatabaseScheduler notices new rows on its next tick (PeriodicTasks.last_update).
    beat_schedule_install()


# Set by ``manage.py portal`` for the worker it runs: the file to create once the worker is
# ready, so the portal's banner (and its one-time password) comes after the worker's output.
READY_FILE_VARIABLE = "PORTAL_WORKER_READY_FILE"


@worker_ready.connect
def _say_ready(sender: Any = None, **kwargs: Any) -> None:
    path = os.environ.get(READY_FILE_VARIABLE)
    if path:
        with open(path, "w", encoding="utf-8") as marker:
            marker.write(str(os.getpid()))
