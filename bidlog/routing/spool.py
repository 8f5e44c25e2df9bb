"""The last write of a route, made durable: retried on a fresh connection, else spooled.

A route whose buyer accepted has already sold the call; losing its log would lose the sale,
the duplicate window and the cap count. So :func:`call_write` retries the write a bounded
number of times (``ROUTE_WRITE_ATTEMPTS``), each on a new connection, and when PostgreSQL is
still away it writes the decision (the call and every bid row) to a file in the spool
(``ROUTE_SPOOL_DIR``, under ``DATA_DIR``) and returns: the caller still gets its answer.

:func:`spool_replay` writes spooled decisions into the log once the database is back. The web
processes run it on their next route (:func:`spool_replay_if_due`) and the Celery task
``bidlog.route_spool_replay`` runs it from beat. Exactly once: every call carries its
``route_key`` (a UUID set before the first write, unique in the table), so a retry after a
commit whose acknowledgement was lost, or two replayers taking the same file, find the key
taken and write nothing more. A replayer also holds an exclusive ``flock`` on the file while
it works, so two replayers rarely even try.

Why a local file and not a Redis stream: the spool must hold when the database is away, and
the usual reason for that (a network partition, a host going down, a restart of the data
tier) often takes Redis with it; a Redis stream is also only as durable as Redis's own
persistence settings. A file written, flushed to disk and renamed into place survives a crash
of the process, of Redis and of PostgreSQL. The cost is locality: each machine replays its
own spool, so ``DATA_DIR`` must be persistent storage on every web host (see README).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core import serializers
from django.core.serializers.base import DeserializationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection

from bidlog.models import BidLog, Call
from bidlog.routing.route_rows import call_with_bids_create
from bidlog.stale import rollup_mark_stale

logger = logging.getLogger(__name__)

# The errors that say the connection or the server is gone, not that the data is wrong.
DATABASE_AWAY = (OperationalError, InterfaceError)
_SUFFIX = ".json"


def spool_dir() -> Path:
    """Where spooled decisions wait: ``ROUTE_SPOOL_DIR`` (default ``DATA_DIR/spool``)."""
    return Path(settings.ROUTE_SPOOL_DIR)


def _folder(name: str) -> Path:
    path = spool_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _close_connection() -> None:
    """Drop this thread's connection so the next query opens a fresh one."""
    try:
        connection.close()
    except DatabaseError:
        # Closing a connection the server already dropped may complain; it is gone either way.
        logger.debug("closing a broken database connection failed", exc_info=True)


def _already_written(call: Call) -> tuple[Call, list[BidLog]] | None:
    """The call written under ``call.route_key`` and its rows, or ``None`` if there is none.

    Runs after a write failed in a way that may hide a commit (the connection died after
    PostgreSQL committed, before it answered).
    """
    found = Call.objects.filter(route_key=call.route_key).first()
    if found is None:
        return None
    return found, list(BidLog.objects.filter(call=found).select_related("buyer").order_by("pk"))


def _write_once(
    call: Call, bids: list[BidLog], *, synchronous_commit: bool
) -> tuple[Call, list[BidLog], bool]:
    """One write of ``call`` and ``bids``: the saved call, its rows, and whether this write
    made them (a ``route_key`` already taken returns what was written before)."""
    try:
        saved, rows = call_with_bids_create(
            call=call, bids=bids, synchronous_commit=synchronous_commit
        )
    except IntegrityError:
        written = _already_written(call)
        if written is None:
            raise
        return *written, False
    return saved, rows, True


def call_write(
    *, call: Call, bids: list[BidLog], synchronous_commit: bool = True
) -> tuple[Call, list[BidLog]]:
    """Write ``call`` and its ``bids``, retried on fresh connections, else spooled.

    ``call.route_key`` must be set. Returns the call and its rows: as saved, with their ids,
    when written; ``call`` and ``bids`` themselves, without ids, when spooled (the database
    stayed away for every attempt), the decision waiting in the spool under its
    ``route_key`` for :func:`spool_replay`. Inside a transaction nothing is retried or spooled
    (the caller's transaction is lost with the connection anyway): the error is raised. Errors
    other than a lost connection or server (bad data, a bug) are raised too: replaying them
    would fail the same way.
    """
    if call.route_key is None:
        raise ValueError("a call written by call_write needs its route_key")
    attempts = max(int(settings.ROUTE_WRITE_ATTEMPTS), 1)
    failure: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            # 0.1 s, 0.2 s, 0.4 s...: a restart or a failover gets a moment to finish.
            time.sleep(min(0.1 * 2 ** (attempt - 1), 1.0))
        try:
            saved, rows, _fresh = _write_once(call, bids, synchronous_commit=synchronous_commit)
            return saved, rows
        except DATABASE_AWAY as exc:
            if connection.in_atomic_block:
                raise
            failure = exc
            _close_connection()
    logger.warning(
        "route %s: the database is unavailable after %d attempts (%s); the decision is spooled",
        call.route_key,
        attempts,
        type(failure).__name__,
    )
    spool_write(call=call, bids=bids)
    _replay_hint.set()
    return call, bids


# --- the spool on disk --------------------------------------------------------------------


def spool_write(*, call: Call, bids: list[BidLog]) -> Path:
    """Write one decision to the spool durably: a temporary file flushed to disk, renamed
    into place, and the folder flushed too. Returns the spooled file's path."""
    text = serializers.serialize("json", [call, *bids])
    name = f"{call.route_key}{_SUFFIX}"
    temporary = _folder("tmp") / f"{name}.{os.getpid()}.{threading.get_ident()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    target = _folder("routes") / name
    os.replace(temporary, target)
    _fsync_folder(target.parent)
    return target


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_pending() -> list[Path]:
    """The spooled decisions not replayed yet, oldest first."""
    folder = spool_dir() / "routes"
    if not folder.is_dir():
        return []
    entries = [e for e in os.scandir(folder) if e.name.endswith(_SUFFIX) and e.is_file()]
    entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
    return [Path(e.path) for e in entries]


@contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; yields ``False`` when another replayer has it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield False  # replayed and removed by someone else meanwhile
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _read(path: Path) -> tuple[Call, list[BidLog]]:
    objects = [d.object for d in serializers.deserialize("json", path.read_text("utf-8"))]
    if not objects or not isinstance(objects[0], Call):
        raise DeserializationError(f"{path.name} does not start with a call")
    call = objects[0]
    bids = [o for o in objects[1:] if isinstance(o, BidLog)]
    if len(bids) != len(objects) - 1 or call.route_key is None:
        raise DeserializationError(f"{path.name} is not a spooled route")
    return call, bids


@dataclass
class ReplayReport:
    """What one :func:`spool_replay` did: written now, found written already, set aside as
    unreadable or refused by the database, and left for later (the database still away, or
    another replayer holding them)."""

    written: int = 0
    already: int = 0
    failed: int = 0
    left: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "written": self.written,
            "already": self.already,
            "failed": self.failed,
            "left": self.left,
        }


def spool_replay(*, limit: int | None = None) -> ReplayReport:
    """Write spooled decisions into the log (at most ``limit``, oldest first), each exactly
    once; stops early when the database is still away. A file that cannot be read, or that
    the database refuses for its data, is moved to ``failed/`` with the reason logged, never
    deleted."""
    report = ReplayReport()
    pending = spool_pending()
    if limit is not None and len(pending) > limit:
        report.left = len(pending) - limit
        pending = pending[:limit]
    for index, path in enumerate(pending):
        with _claimed(path) as mine:
            if not mine:
                report.left += 1
                continue
            try:
                outcome = _replay_one(path)
            except DATABASE_AWAY:
                _close_connection()
                report.left += len(pending) - index
                break
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _replay_one(path: Path) -> str:
    """Replay one claimed file: ``written``, ``already`` or ``failed``."""
    try:
        call, bids = _read(path)
    except (DeserializationError, ValueError, OSError) as exc:
        return _set_aside(path, f"unreadable: {exc}")
    if Call.objects.filter(route_key=call.route_key).exists():
        path.unlink(missing_ok=True)
        return "already"
    try:
        saved, _rows, fresh = _write_once(call, bids, synchronous_commit=True)
    except DATABASE_AWAY:
        raise
    except DatabaseError as exc:
        return _set_aside(path, f"refused by the database: {type(exc).__name__}: {exc}")
    path.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    if not fresh:
        return "already"
    # Reports read rollups for finished hours; a late call must make its hour stale.
    rollup_mark_stale(moments=[call.created_at, *(bid.created_at for bid in bids)])
    logger.info("route %s replayed from the spool as call %s", call.route_key, saved.pk)
    return "written"


def _set_aside(path: Path, reason: str) -> str:
    target = _folder("failed") / path.name
    os.replace(path, target)
    logger.error("spooled route %s set aside in %s: %s", path.stem, target, reason)
    return "failed"


# --- replay from the web processes --------------------------------------------------------

# Set when this process spooled something; otherwise it looks at the folder now and then.
_replay_hint = threading.Event()
_replay_lock = threading.Lock()
_last_look = 0.0
# A route replays at most this many decisions before its own, so none waits long for them;
# the rest go with the next routes (and the beat task).
_WEB_REPLAY_BATCH = 20


def spool_replay_if_due() -> ReplayReport | None:
    """Replay the spool if this process spooled something or has not looked for a while
    (``ROUTE_SPOOL_CHECK_SECONDS``); ``None`` when it was not due or another thread of the
    process is at it. Meant for the start of a route: cheap when there is nothing to do, and
    it never raises (a failure is logged; the route goes on)."""
    global _last_look
    now = time.monotonic()
    if not _replay_hint.is_set() and now - _last_look < settings.ROUTE_SPOOL_CHECK_SECONDS:
        return None
    if not _replay_lock.acquire(blocking=False):
        return None
    try:
        _last_look = now
        _replay_hint.clear()
        if not spool_pending():
            return None
        report = spool_replay(limit=_WEB_REPLAY_BATCH)
        if report.left:
            _replay_hint.set()
        return report
    except Exception:
        logger.exception("replaying the route spool failed; the next look tries again")
        _replay_hint.set()
        return None
    finally:
        _replay_lock.release()
