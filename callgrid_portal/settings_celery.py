"""Celery's worker and queueing settings: retries, acknowledgements and time limits.

Read from the environment only; ``callgrid_portal/settings.py`` imports every name here, next
to the broker it chooses (which depends on ``DATA_DIR``), so Django sees one settings module.
"""

from django.core.exceptions import ImproperlyConfigured

from callgrid_portal.env import env_float, env_int

# The worker and beat keep trying to reach the broker for as long as it is away, however
# long: Celery's default gives up after 100 tries (about 45 minutes) and the process exits.
# Each try waits 2 s more than the one before, up to 30 s.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A task running when the connection drops is left to finish, not cancelled mid-send; if its
# acknowledgement is lost with the connection, the message comes back after
# visibility_timeout and finds its work done (every task here is safe to run twice). Said
# explicitly: Celery 6 changes the default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing gives up quickly when the broker is down, so the test-bid API answers 503 at once.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 3.0, minimum=0.1)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# No result backend: every task writes what it did to the database (a BidLog row, an Alert).
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# A task is acknowledged only once it has finished, and a worker that dies mid-task gives the
# message back, so a crash never loses a test bid; the tasks are written to run twice safely.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per worker process: a slow buyer must not hold other bids hostage.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One bid takes at most timeout_seconds (10 s) per attempt, three attempts with backoff;
# the limits sit well above that, so only a stuck task is ever stopped.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 45, minimum=15)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60, minimum=20)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be above CELERY_TASK_SOFT_TIME_LIMIT")
# Tasks are queued for real in every environment; tests run a real worker instead.
CELERY_TASK_ALWAYS_EAGER = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The schedule lives in the database, editable in the admin; its entries and the reason for
# each are BEAT_SCHEDULE in callgrid_portal/celery.py, installed when beat starts.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# A test bid claimed this long ago by a worker that never finished it is taken over by the
# next worker, and re-queued by the recovery sweep. Must exceed the hard time limit.
TEST_BID_STALE_SECONDS = env_int("TEST_BID_STALE_SECONDS", CELERY_TASK_TIME_LIMIT + 15, minimum=1)
