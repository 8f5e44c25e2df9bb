"""Settings for CallGrid Portal, read from the environment (12-factor).

With no environment set, everything runs on one machine: SQLite (WAL) in ``DATA_DIR``, a
file-system cache and Celery broker. ``DATABASE_URL``, ``REDIS_URL``/``CACHE_URL`` and
``CELERY_BROKER_URL`` move each piece to a real server. Every variable is listed in
``.env.example`` and in the README's configuration table.
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from callgrid_portal.env import env_bool, env_float, env_int, env_list, env_rate, env_str

# Celery's worker settings (retries, acknowledgements, time limits) have a module of their own;
# Django's documented way of composing settings modules is this import of every name.
from callgrid_portal.settings_celery import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent

# Where the embedded default keeps its files. Only read here: `manage.py portal` creates it
# (callgrid_portal/datadir.py), so importing the settings writes nothing.
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
# Django's signing key. Unset, `manage.py portal` hands its children the key it keeps in
# DATA_DIR/secret_key; a web server started any other way refuses to start without it
# (callgrid_portal/wsgi.py), and commands that sign nothing run as usual.
SECRET_KEY = env_str("SECRET_KEY")
REQUIRE_SECRET_KEY = env_bool("REQUIRE_SECRET_KEY", False)
if not SECRET_KEY and not DEBUG and REQUIRE_SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set (REQUIRE_SECRET_KEY is on)")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "simple_history",
    "django_celery_beat",
    "callgrid_portal",
    "buyers",
    "bidlog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "callgrid_portal.middleware.nul_query_guard",
    # A view failing on an unreachable database, Redis or broker answers 503, not 500.
    "callgrid_portal.outage.ServiceUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "callgrid_portal.urls"
WSGI_APPLICATION = "callgrid_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "callgrid_portal.navigation.nav_items",
                "bidlog.monitoring.pages.alert_badge",
            ],
        },
    },
]
# Every form field with an error gets the error style (aria-invalid and the invalid class).
FORM_RENDERER = "callgrid_portal.formrender.PortalFormRenderer"

# Database: SQLite in WAL mode by default, PostgreSQL (psycopg 3) from DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL")
# PostgreSQL: each process keeps a pool of connections (Django's OPTIONS["pool"], psycopg_pool)
# that requests and tasks borrow and give back: at least DB_POOL_MIN_SIZE open, at most
# DB_POOL_MAX_SIZE. A thread that finds none free waits DB_CONNECT_TIMEOUT seconds, then fails
# its request (503), as a server that does not answer does.
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 2, minimum=1)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=1)
if DB_POOL_MAX_SIZE < DB_POOL_MIN_SIZE:
    raise ImproperlyConfigured(
        f"DB_POOL_MAX_SIZE ({DB_POOL_MAX_SIZE}) must be at least DB_POOL_MIN_SIZE "
        f"({DB_POOL_MIN_SIZE})"
    )
DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 5, minimum=2)
# On PostgreSQL, statements are bound on the server and psycopg prepares each one a connection
# has run 5 times (psycopg's own default prepare_threshold), so the route's buyers read and
# log insert are parsed and planned once per pooled connection. Turn off behind a pooler in
# transaction mode that does not keep prepared statements (PgBouncer before 1.21, or without
# max_prepared_statements): Django's defaults then apply (client-side binding, nothing
# prepared).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
if DATABASE_URL:
    # A pooled connection goes back to the pool when Django closes it (at the end of each
    # request and task), so it is never kept past a request as CONN_MAX_AGE would.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # The pool checks each connection as it lends it (one empty query), so a connection a
        # restarted server dropped is replaced before a request meets it.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {
                # A server that does not answer fails the request (503) instead of holding it.
                "connect_timeout": DB_CONNECT_TIMEOUT,
                "pool": {
                    "min_size": DB_POOL_MIN_SIZE,
                    "max_size": DB_POOL_MAX_SIZE,
                    "timeout": DB_CONNECT_TIMEOUT,
                    "name": "callgrid",
                },
                "server_side_binding": DB_PREPARED_STATEMENTS,
                "prepare_threshold": 5 if DB_PREPARED_STATEMENTS else None,
            }
        )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            # SQLITE_PATH lets a helper process (a test's Celery worker) open another file
            # with the same WAL options.
            "NAME": env_str("SQLITE_PATH", str(DATA_DIR / "portal.sqlite3")),
            # Tests that run a real worker need a database another process can open: a file
            # instead of Django's in-memory default, named per test process so concurrent
            # runs never share (or delete) each other's.
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"callgrid-test-{os.getpid()}.db")},
            "OPTIONS": {
                # WAL lets the web server, the worker and beat read while one of them writes;
                # IMMEDIATE transactions take the write lock up front instead of failing
                # half-way with "database is locked".
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: shared limits live here, so every process of a fleet must see the same one.
REDIS_URL = env_str("REDIS_URL")
CACHE_URL = env_str("CACHE_URL") or REDIS_URL
if CACHE_URL:
    CACHES = {
        "default": {
            # Django's Redis cache, answering as an empty cache while Redis is away.
            "BACKEND": "callgrid_portal.cache.FailOpenRedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "callgrid"),
            # A Redis that stops answering fails a command after this long instead of holding
            # the request (the limits then fall back to a process-local limiter).
            "OPTIONS": {
                "socket_connect_timeout": env_float("CACHE_TIMEOUT_SECONDS", 1.0, minimum=0.05),
                "socket_timeout": env_float("CACHE_TIMEOUT_SECONDS", 1.0, minimum=0.05),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Security: HTTPS redirect on by default outside DEBUG; turn it off behind a proxy that
# terminates TLS, or when serving on loopback (the embedded default does).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Secure cookies and HSTS: see "Privacy and access" at the end (SECURE_COOKIES).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Email (alerts). Django's standard variables; console backend unless configured.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "callgrid-portal@localhost")

# REST framework: deny by default; every view states who may use it.
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "6000/minute")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "callgrid_portal.authentication.PortalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["callgrid_portal.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "callgrid_portal.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "callgrid_portal.api.PortalAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_RATE},
    "EXCEPTION_HANDLER": "callgrid_portal.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

# A bid import takes up to 5,000 records in one body; Django's default of 2.5 MB refused
# full batches with long messages or raw answers.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 16 * 1024 * 1024, minimum=1024)
API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 365, minimum=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Token",
    # 0 means tokens never expire; they can still be revoked.
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS) if API_TOKEN_TTL_DAYS else None,
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CallGrid Portal API",
    "DESCRIPTION": "Buyers, bids, routing and reports for CallGrid pay-per-call publishers.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# CallGrid: where buyers' endpoints may point (server-side request forgery guard).
CALLGRID_DEFAULT_ENDPOINT = env_str(
    "CALLGRID_DEFAULT_ENDPOINT", "https://bid.callgrid.com/api/bid/"
)
CALLGRID_ENDPOINT_ALLOWLIST = env_list("CALLGRID_ENDPOINT_ALLOWLIST", "bid.callgrid.com")
CALLGRID_INSECURE_HOSTS = env_list("CALLGRID_INSECURE_HOSTS")
CALLGRID_USER_AGENT = env_str("CALLGRID_USER_AGENT", "CallGridPortal/0.1")

# Bid log and alerts.
BIDLOG_RETENTION_DAYS = env_int("BIDLOG_RETENTION_DAYS", 90, minimum=1)
# PostgreSQL: how many months of bid log and call partitions beat keeps created ahead of now
# (bidlog.partitions); a row beyond them lands in the default partition, never refused.
BIDLOG_PARTITION_MONTHS_AHEAD = env_int("BIDLOG_PARTITION_MONTHS_AHEAD", 3, minimum=1)
ALERT_EMAILS = env_list("ALERT_EMAILS")
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")

# The demo publisher (manage.py demo_publisher): one call to the demo buyers every this many
# seconds. 0, the default, is off; `manage.py portal` sets 5 when it runs the simulator.
DEMO_TRAFFIC_SECONDS = env_int("DEMO_TRAFFIC_SECONDS", 0, minimum=0)

# --- Call routing (bidlog.routing) ------------------------------------------------------
# The strategy a route request gets when it names none: waterfall (priority order, first
# acceptable bid) or highest_bid (parallel auction).
ROUTING_DEFAULT_STRATEGY = env_str("ROUTING_DEFAULT_STRATEGY", "waterfall")
if ROUTING_DEFAULT_STRATEGY not in ("waterfall", "highest_bid"):
    raise ImproperlyConfigured(
        "ROUTING_DEFAULT_STRATEGY must be waterfall or highest_bid, "
        f"not {ROUTING_DEFAULT_STRATEGY!r}"
    )
# One deadline per call, in seconds; routing never waits longer than the largest timeout of
# the buyers it asks (at most 10 s), whatever this says.
ROUTING_DEADLINE_SECONDS = env_float("ROUTING_DEADLINE_SECONDS", 10.0, minimum=0.1)
# Threads per process for highest_bid auctions (shared by every request of the process).
# Lock files that make limit updates atomic on caches without atomic operations (file cache).
LIMITS_LOCK_DIR = Path(env_str("LIMITS_LOCK_DIR", str(DATA_DIR / "locks")))
# Whether the answer to a route waits until PostgreSQL has flushed the call's log rows to disk
# (on, the default: SPEC §3 wants nothing lost). Off, the commit returns before the flush
# (SET LOCAL synchronous_commit TO OFF, for the routing transaction only): a crash of the
# portal or of PostgreSQL itself loses nothing, but a crash of the machine's OS or its power
# can lose the calls committed in the last ~0.6 s (3 x wal_writer_delay) even though their
# answers went out. It saves the wait for one disk flush per call. No effect on SQLite.
ROUTING_SYNCHRONOUS_COMMIT = env_bool("ROUTING_SYNCHRONOUS_COMMIT", True)
# The log write of a route is tried this many times, each on a fresh connection (0.1 s, then
# 0.2 s, 0.4 s... apart); if the database is still away, the decision is spooled to files in
# ROUTE_SPOOL_DIR and replayed into the log, exactly once, when it is back (bidlog/spool.py).
ROUTE_WRITE_ATTEMPTS = env_int("ROUTE_WRITE_ATTEMPTS", 3, minimum=1)
ROUTE_SPOOL_DIR = Path(env_str("ROUTE_SPOOL_DIR", str(DATA_DIR / "spool")))
# How often each web process looks for spooled decisions to replay (it looks at once after
# spooling one itself); beat also runs bidlog.route_spool_replay every 10 s.
ROUTE_SPOOL_CHECK_SECONDS = env_float("ROUTE_SPOOL_CHECK_SECONDS", 5.0, minimum=0.0)
# How long a process trusts an API token it has just checked for POST /api/v1/route/, the
# live path (every other endpoint checks on each request). A revoked token, or a user made
# inactive or given another role, takes effect on routes within this many seconds; an expired
# token is refused at once. 0 checks on every route.
ROUTE_TOKEN_CACHE_SECONDS = env_float("ROUTE_TOKEN_CACHE_SECONDS", 1.0, minimum=0.0)
# While Redis is unreachable the shared limits run on a process-local limiter and the cache
# answers empty; this long after a failure the next request tries Redis again, and the first
# that works brings both back to it.
REDIS_RETRY_SECONDS = env_float("REDIS_RETRY_SECONDS", 2.0, minimum=0.0)
# --- end of call routing -------------------------------------------------------------------

# --- Celery (callgrid_portal/celery.py, bidlog/tasks.py) -------------------------------------
# The broker comes from CELERY_BROKER_URL (redis://... or amqp://...). Without one, kombu's
# filesystem transport passes messages through folders of DATA_DIR, so the embedded default
# needs no server: producers write message files into broker/in and workers take them from
# there. `manage.py portal` creates the folders before it starts any process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if not CELERY_BROKER_URL:
    # The host names nothing (the folders below do); given, kombu does not warn it is missing.
    CELERY_BROKER_URL = "filesystem://localhost//"
    # kombu's filesystem transport, publishing each message whole (callgrid_portal/broker.py).
    CELERY_BROKER_TRANSPORT = "callgrid_portal.broker:Transport"
    CELERY_BROKER_DIR = Path(env_str("CELERY_BROKER_DIR", str(DATA_DIR / "broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # One folder for both directions: what a producer writes is what a worker reads.
        "data_folder_in": str(CELERY_BROKER_DIR / "in"),
        "data_folder_out": str(CELERY_BROKER_DIR / "in"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        # Broadcasts (remote control of workers) also go through files, kept out of the cwd.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        # How often an idle worker looks for new files (seconds).
        "polling_interval": env_float("CELERY_BROKER_POLL_SECONDS", 0.2, minimum=0.01),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A message a dead worker took but never acknowledged returns to the queue after this long;
    # it must exceed the hard time limit below. Test bids a crash leaves pending are also
    # picked up by the recovery sweep (bidlog.tasks.test_bids_recover), usually sooner.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 300,
        # A Redis that stops answering (a frozen host, a dropped route: no reset ever comes)
        # must not hold a publish for ever (kombu's default): a read times out after 3 s, the
        # connection counts as lost, and the test-bid API answers 503 instead of hanging.
        # Every command the portal sends Redis answers in milliseconds, and the worker's
        # BRPOP is sent with a 1 s server-side timeout, so 3 s is never a slow answer.
        "socket_connect_timeout": 3,
        "socket_timeout": 3,
        "socket_keepalive": True,
        # kombu pings a connection idle this long before using it, and drops a BRPOP whose
        # reply is this much overdue, so a worker on a half-open connection reconnects.
        "health_check_interval": 25,
    }
# Retries, acknowledgements and time limits of the worker: see settings_celery (imported above).
# Alert threshold (bidlog/alerts.py): the share of timeouts among a buyer's recent bids.
ALERT_TIMEOUT_RATE = env_float("ALERT_TIMEOUT_RATE", 0.2, minimum=0.01)
# --- end of Celery ----------------------------------------------------------------------------

# The Retry-After of the 503 answered while the database, Redis or the broker is unreachable.
OUTAGE_RETRY_AFTER_SECONDS = env_int("OUTAGE_RETRY_AFTER_SECONDS", 5, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Privacy and access (callgrid_portal/privacy.py, throttles.py; README "Security") ---------
# Searches by caller ID (bids, calls, eligibility; API and pages) a viewer may make: each one
# counts, found or not, so the masked middle of a number cannot be guessed by trying them all.
CALLER_SEARCH_THROTTLE_RATE = env_rate("CALLER_SEARCH_THROTTLE_RATE", "30/hour")
# Failed API token logins a client address may make before it is refused for a while.
TOKEN_FAILURE_THROTTLE_RATE = env_rate("TOKEN_FAILURE_THROTTLE_RATE", "20/hour")
# How many proxies of ours stand in front of the portal and append to X-Forwarded-For. 0 (the
# default) reads the client's address from the connection (REMOTE_ADDR) only: a header the
# client writes itself must never decide which address a lockout counts against.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    *REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"],
    "callgrid_portal.throttles.CallerSearchThrottle",
]

# Login brute force (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username,
# or from one client address, further logins for it are refused (429) for LOGIN_LOCKOUT_MINUTES.
# The address is the one client_address reads (REMOTE_ADDR unless TRUSTED_PROXY_COUNT is set),
# so rotating X-Forwarded-For does not start a fresh count.
INSTALLED_APPS.append("axes")
# Axes last, as its documentation asks: it answers the lockout after the others ran.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "callgrid_portal.throttles.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Headers (django-csp): scripts, styles and everything else from the portal itself only; the
# pages keep no inline script or style (static files), and the Swagger UI page's own inline
# style carries the request's nonce. Responses that are not pages (JSON, CSV, static files)
# get a fixed policy that allows nothing (callgrid_portal.middleware.PageCSPMiddleware).
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "callgrid_portal.middleware.PageCSPMiddleware",
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# HSTS: browsers keep to HTTPS for this many seconds once they saw it over HTTPS. On (a year)
# by default when the portal redirects to HTTPS; 0 turns it off.
SECURE_HSTS_SECONDS = env_int(
    "SECURE_HSTS_SECONDS", 31_536_000 if SECURE_SSL_REDIRECT else 0, minimum=0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # The browsers' preload list is a commitment a deployment opts into (SECURE_HSTS_PRELOAD),
    # not a default; check --deploy's reminder of it (W021) is silenced until then.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Session and CSRF cookies only over HTTPS: their own setting, on by default when the portal
# redirects to HTTPS; set it on behind a proxy that terminates TLS and redirects itself.
SECURE_COOKIES = env_bool("SECURE_COOKIES", SECURE_SSL_REDIRECT)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES

# API docs: Swagger UI's files come from the project (drf-spectacular-sidecar, pinned with the
# package), never from a CDN. The schema and the docs need a signed-in user with a role unless
# API_DOCS_PUBLIC opens them to anyone.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", False)
INSTALLED_APPS.append("drf_spectacular_sidecar")
SPECTACULAR_SETTINGS.update(
    {
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        "SERVE_PERMISSIONS": ["callgrid_portal.permissions.ApiDocsPermission"],
    }
)
# --- end of privacy and access -----------------------------------------------------------------
