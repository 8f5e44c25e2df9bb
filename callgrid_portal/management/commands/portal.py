"""Run the whole portal on one machine: ``manage.py portal``.

Prepares the database and static files, makes sure an admin user exists, seeds the demo
buyers, then runs the CallGrid simulator, gunicorn, a Celery worker and beat as child
processes until Ctrl-C, SIGTERM, SIGHUP or SIGQUIT (sent to the portal or to its process
group), when it stops them all: each child and everything it forked is gone within 10 s
(asked with SIGTERM, killed after ``STOP_TIMEOUT_SECONDS``). If one child dies on its own,
the others are stopped too and the command exits non-zero, so a supervisor (systemd, a
container runtime) notices.

The embedded default needs no server and no configuration. So that the demo buyers (plain
http on loopback) pass the endpoint guard, variables left unset are filled in for this process
and its children:

- ``CALLGRID_ENDPOINT_ALLOWLIST``: ``bid.callgrid.com,127.0.0.1,localhost``
- ``CALLGRID_INSECURE_HOSTS``: ``127.0.0.1,localhost``
- ``SECURE_SSL_REDIRECT``: ``false`` (gunicorn speaks plain http here; put a TLS proxy in
  front and set it to true for anything beyond loopback)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from callgrid_portal.celery import READY_FILE_VARIABLE
from callgrid_portal.datadir import SECRET_KEY_FILE, data_dir_prepare
from callgrid_portal.management.commands.seed_demo import DEMO_SCENARIO, demo_endpoint

# Variables the embedded default fills in when they are unset (see the module docstring).
EMBEDDED_DEFAULTS: dict[str, str] = {
    "CALLGRID_ENDPOINT_ALLOWLIST": "bid.callgrid.com,127.0.0.1,localhost",
    "CALLGRID_INSECURE_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
}

# With the simulator, the demo publisher routes a call every this many seconds unless
# DEMO_TRAFFIC_SECONDS says otherwise (0 turns it off).
DEMO_TRAFFIC_DEFAULT = 5
# The web server and the Celery worker (Django and every task imported) take 10-40 s to be
# ready on a busy 2-core machine.
READY_TIMEOUT_SECONDS = 60.0
# How long the children get to stop by themselves before what is left of them is killed:
# with the kill and the reaping, every child is gone within 10 s of the stop signal.
STOP_TIMEOUT_SECONDS = 7.0
# gunicorn's own limit for its workers to finish their requests, inside the one above.
WEB_GRACEFUL_SECONDS = 5
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Signals that stop the portal: Ctrl-C, a supervisor's stop, a closed terminal, Ctrl-\.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@dataclass
class Child:
    """A process the portal runs and watches."""

    name: str
    argv: list[str]
    # Polled until it answers 200 before the portal says it is up; None: no readiness check.
    ready_url: str | None = None
    # Or: a file the child creates once it is ready (the Celery worker, see celery.py).
    ready_file: Path | None = None
    # Variables the child gets on top of the portal's environment.
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AdminAccount:
    """The admin user and, only when it was just created, its password."""

    username: str
    created: bool
    password: str | None


def _django_argv(*args: str) -> list[str]:
    # ``python -m django`` with DJANGO_SETTINGS_MODULE in the environment works from a source
    # checkout and from an installed package alike, with no manage.py path to find.
    return [sys.executable, "-m", "django", *args]


def _local_address(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (a wildcard means loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def child_commands(
    *, host: str, port: int, sim_port: int, simulator: bool, publisher: bool = False
) -> list[Child]:
    """The processes ``portal`` runs, in start order (they are stopped in reverse).

    A Celery worker (threads: its tasks wait on HTTP, and one process keeps SQLite writers
    few) and beat run on the broker the settings name: the filesystem transport under
    ``DATA_DIR/broker`` by default, so nothing else needs to be running. Their start-up
    banners are left out (``--quiet``): the portal's own banner says what runs where, and
    the one-time password must be the last thing printed. ``publisher`` adds the demo
    publisher (``demo_publisher``), which routes demo calls to the simulator's buyers.
    """
    children: list[Child] = []
    if simulator:
        children.append(_simulator_child(sim_port))
    celery = [sys.executable, "-m", "celery", "-A", "callgrid_portal", "--quiet"]
    ready_file = Path(settings.DATA_DIR) / "worker.ready"
    children.append(
        Child(
            name="worker",
            argv=[*celery, "worker", "--pool=threads", "--concurrency=4", "--loglevel=WARNING"],
            ready_file=ready_file,
            env={READY_FILE_VARIABLE: str(ready_file)},
        )
    )
    children.append(Child(name="beat", argv=[*celery, "beat", "--loglevel=WARNING"]))
    if publisher:
        children.append(Child(name="publisher", argv=_django_argv("demo_publisher")))
    children.append(_web_child(host, port))
    return children


def _simulator_child(sim_port: int) -> Child:
    """The Bid API simulator with the demo scenario's buyers, on loopback at ``sim_port``."""
    return Child(
        name="simulator",
        argv=_django_argv(
            "callgrid_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim_port),
            "--scenario",
            str(DEMO_SCENARIO),
        ),
        ready_url=f"http://127.0.0.1:{sim_port}/_sim/health",
    )


def _web_child(host: str, port: int) -> Child:
    """The web server (gunicorn, 2 workers of 8 threads), ready once its health check answers."""
    return Child(
        name="web",
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "callgrid_portal.wsgi",
            "-b",
            f"{host}:{port}",
            "--workers",
            "2",
            "--threads",
            "8",
            # Lines of the form "GET /path 200" from every worker would drown the banner.
            "--log-level",
            "warning",
            "--graceful-timeout",
            str(WEB_GRACEFUL_SECONDS),
        ],
        ready_url=f"http://{_local_address(host)}:{port}/api/v1/health/",
    )


def apply_embedded_defaults(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Fill in the embedded default's variables that ``environ`` leaves unset; return them."""
    filled = {}
    for name, value in EMBEDDED_DEFAULTS.items():
        if name not in environ:
            environ[name] = value
            filled[name] = value
    return filled


@transaction.atomic
def admin_account_ensure(*, username: str, password: str | None, email: str = "") -> AdminAccount:
    """Create the superuser ``username`` unless it exists; never touch an existing one.

    Without a ``password`` a random one is generated; it is returned once so it can be shown
    once, and never stored anywhere but as the usual hash.
    """
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return AdminAccount(username=username, created=False, password=None)
    chosen = password or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email=email, password=chosen)
    return AdminAccount(username=username, created=True, password=chosen)


def password_frame(account: AdminAccount) -> list[str]:
    """The admin password's lines in a frame of ``#``: the one-time password when it was
    just generated, or where the password comes from."""
    if account.created and os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
        # The operator chose it; repeating a secret they already have only leaks it to logs.
        body = [f"Password of {account.username!r}: the one in DJANGO_SUPERUSER_PASSWORD"]
    elif account.created:
        body = [
            f"Password: {account.password}   (admin user {account.username!r})",
            "Generated now and shown only this once: save it.",
        ]
    else:
        body = [
            f"Password of {account.username!r}: shown when the user was created.",
            f"To set a new one: python manage.py changepassword {account.username}",
        ]
    width = max(len(line) for line in body)
    edge = "#" * (width + 6)
    return [edge, *(f"#  {line.ljust(width)}  #" for line in body), edge]


def _die_with_parent() -> None:
    """Ask Linux to send this child SIGTERM when the portal dies, even by SIGKILL.

    Without it a portal killed outright would leave gunicorn and the simulator holding their
    ports. Elsewhere this does nothing; the normal stop path covers every signal we can catch.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    """Whether any process of ``process``'s group (it leads one) is still running."""
    if process.poll() is None:
        return True
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    return True


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to ``process``'s whole group; nothing when the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _is_ready(child: Child) -> bool:
    if child.ready_file is not None:
        return child.ready_file.exists()
    return _answers_200(child.ready_url or "")


def _answers_200(url: str) -> bool:
    # No proxies: these are our own children on this machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Command(BaseCommand):
    help = "Run the portal, the CallGrid simulator and demo data on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Web server address.")
        parser.add_argument("--port", type=int, default=8000, help="Web server port.")
        parser.add_argument("--sim-port", type=int, default=8099, help="Simulator port.")
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="Run without the simulator and without seeding demo buyers.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, sim_port = options["host"], options["port"], options["sim_port"]
        with_simulator = not options["no_simulator"]

        filled = apply_embedded_defaults(os.environ)
        # Settings were read before this command ran: mirror what we just filled in, so the
        # demo buyers are validated here exactly as the children will validate them.
        if "CALLGRID_ENDPOINT_ALLOWLIST" in filled:
            settings.CALLGRID_ENDPOINT_ALLOWLIST = filled["CALLGRID_ENDPOINT_ALLOWLIST"].split(",")
        if "CALLGRID_INSECURE_HOSTS" in filled:
            settings.CALLGRID_INSECURE_HOSTS = filled["CALLGRID_INSECURE_HOSTS"].split(",")
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")
        self._data_prepare()

        self._say("Preparing the database")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        account = admin_account_ensure(
            username=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin").strip() or "admin",
            password=os.environ.get("DJANGO_SUPERUSER_PASSWORD") or None,
            email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
        )
        if with_simulator:
            try:
                call_command("seed_demo", sim_port=sim_port, stdout=self.stdout)
            except CommandError as exc:
                # A deliberately strict allowlist wins over the demo: run without demo buyers.
                self.stderr.write(f"Skipping demo buyers: {exc}")

        demo_seconds = settings.DEMO_TRAFFIC_SECONDS
        if with_simulator and not os.environ.get("DEMO_TRAFFIC_SECONDS", "").strip():
            os.environ["DEMO_TRAFFIC_SECONDS"] = str(DEMO_TRAFFIC_DEFAULT)
            demo_seconds = DEMO_TRAFFIC_DEFAULT
        children = child_commands(
            host=host,
            port=port,
            sim_port=sim_port,
            simulator=with_simulator,
            publisher=with_simulator and demo_seconds > 0,
        )
        exit_code = self._supervise(children, account, host=host, port=port, sim_port=sim_port)
        if exit_code:
            sys.exit(exit_code)

    def _data_prepare(self) -> None:
        """Create DATA_DIR, the folder broker's folders and the signing key the children use."""
        filesystem_broker = settings.CELERY_BROKER_URL.startswith("filesystem")
        try:
            prepared = data_dir_prepare(
                data_dir=Path(settings.DATA_DIR),
                broker_dir=Path(settings.CELERY_BROKER_DIR) if filesystem_broker else None,
                secret_key=os.environ.get("SECRET_KEY", "").strip(),
                require_secret_key=settings.REQUIRE_SECRET_KEY and not settings.DEBUG,
            )
        except (ImproperlyConfigured, OSError) as exc:
            raise CommandError(str(exc)) from exc
        if prepared.secret_key_created:
            self._say(f"Generated a signing key in {Path(settings.DATA_DIR) / SECRET_KEY_FILE}")
        # The children read the key from their environment, like every other setting.
        os.environ["SECRET_KEY"] = prepared.secret_key
        settings.SECRET_KEY = prepared.secret_key

    # --- running the children ------------------------------------------------------------

    def _supervise(
        self, children: list[Child], account: AdminAccount, *, host: str, port: int, sim_port: int
    ) -> int:
        stop_signal: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop_signal.append(signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
        try:
            for child in children:
                if child.ready_file is not None:
                    child.ready_file.unlink(missing_ok=True)  # a stale one from a last run
                child.process = subprocess.Popen(
                    child.argv,
                    cwd=settings.BASE_DIR,
                    env={**os.environ, **child.env},
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                    # Each child leads a process group of its own, with whatever it forks
                    # (gunicorn's workers, the worker's pool), so stopping reaches them all;
                    # and a signal sent to the portal's group (Ctrl-C) reaches only the
                    # portal, which then stops the children in order.
                    process_group=0,
                )
            failed = self._wait_ready(children, stop_signal)
            if failed is None and not stop_signal:
                self._banner(account, host=host, port=port, sim_port=sim_port, children=children)
                failed = self._watch(children, stop_signal)
        finally:
            self._stop(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed is not None:
            self.stderr.write(failed)
            return 1
        self._say("Stopped")
        return 0

    def _wait_ready(self, children: list[Child], stop_signal: list[int]) -> str | None:
        """Wait until every child answers its readiness URL or made its ready file; return a
        failure, or None."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        pending = [child for child in children if child.ready_url or child.ready_file]
        while pending and not stop_signal:
            dead = self._dead_child(children)
            if dead:
                return dead
            pending = [c for c in pending if not _is_ready(c)]
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                return f"Not ready after {READY_TIMEOUT_SECONDS:.0f} s: {names}"
            if pending:
                time.sleep(POLL_SECONDS)
        return None

    def _watch(self, children: list[Child], stop_signal: list[int]) -> str | None:
        """Sleep until a stop signal arrives or a child dies; return a failure, or None."""
        while not stop_signal:
            dead = self._dead_child(children)
            if dead:
                return dead
            time.sleep(POLL_SECONDS)
        self._say(f"Received {signal.Signals(stop_signal[0]).name}, stopping")
        return None

    @staticmethod
    def _dead_child(children: list[Child]) -> str | None:
        for child in children:
            if child.process is not None and child.process.poll() is not None:
                return f"{child.name} exited unexpectedly with code {child.process.returncode}"
        return None

    @staticmethod
    def _stop(children: list[Child]) -> None:
        """Ask every child to stop, wait a bounded time, then kill what is left of each.

        A child's whole process group is signalled: a gunicorn worker stuck at exit (waiting
        on its thread pool) or a Celery worker finishing a bid goes too, even once its parent
        has gone, so no process is left holding the port.
        """
        started = [c.process for c in children if c.process is not None]
        # Reverse start order: the web server goes first so nothing new reaches the rest.
        for process in reversed(started):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and any(_group_alive(p) for p in started):
            for process in started:
                process.poll()  # reap a leader that exited, so its group can empty
            time.sleep(POLL_SECONDS)
        for process in started:
            if _group_alive(process):
                _signal_group(process, signal.SIGKILL)
        for process in started:
            # A process stuck in the kernel survives even SIGKILL a while; nothing more to do.
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=2)

    # --- output --------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _banner(
        self,
        account: AdminAccount,
        *,
        host: str,
        port: int,
        sim_port: int,
        children: list[Child],
    ) -> None:
        base = f"http://{_local_address(host)}:{port}"
        lines = [
            "",
            "CallGrid Portal is running",
            f"  Pages:        {base}/",
            f"  Admin:        {base}/admin/",
            f"  API:          {base}/api/v1/",
            f"  API docs:     {base}/api/v1/docs/",
            f"  Health:       {base}/api/v1/health/",
        ]
        if any(child.name == "simulator" for child in children):
            lines.append(f"  Simulator:    {demo_endpoint(port=sim_port)}<grid_id>")
        if any(child.name == "publisher" for child in children):
            seconds = os.environ.get("DEMO_TRAFFIC_SECONDS", "")
            lines.append(
                f"  Demo calls:   one every {seconds} s (DEMO_TRAFFIC_SECONDS=0 stops them)"
            )
        lines.append(f"  Admin user:   {account.username}")
        if host not in ("127.0.0.1", "localhost", "::1"):
            lines.append(
                "  Note:         listening beyond loopback over plain http; set ALLOWED_HOSTS "
                "and put TLS in front before real use."
            )
        lines += ["", "Press Ctrl-C to stop.", ""]
        # The password last, in a frame, after every banner: the line people look for.
        lines += [*password_frame(account), ""]
        self._say("\n".join(lines))
