"""Prepares the embedded default's files: DATA_DIR, the broker's folders and the secret key.

Importing the settings only reads the environment; ``manage.py portal`` calls
:func:`data_dir_prepare` before it touches the database or starts a process, so SQLite, the
file cache, static files, the folder broker and the signing key find their places.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_FILE = "secret_key"
# The folders kombu's filesystem transport reads and writes (see CELERY_BROKER_* settings).
BROKER_FOLDERS = ("in", "processed", "control")


@dataclass(frozen=True)
class PreparedData:
    """What :func:`data_dir_prepare` found or made: the signing key and where it came from."""

    secret_key: str
    secret_key_created: bool


def broker_folders_create(broker_dir: Path) -> None:
    """Create the folder broker's folders under ``broker_dir`` (nothing when they exist)."""
    for sub in BROKER_FOLDERS:
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)


def secret_key_ensure(data_dir: Path) -> tuple[str, bool]:
    """The signing key kept in ``data_dir/secret_key``, written first when there is none.

    Returns the key and whether it was just created. The file is readable by its owner only,
    so sessions survive a restart without anyone having to invent a secret.
    """
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        # O_EXCL: two portals started at once never overwrite each other's key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            return path.read_text().strip(), True
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it or set SECRET_KEY")
    return key, False


def data_dir_prepare(
    *, data_dir: Path, broker_dir: Path | None, secret_key: str, require_secret_key: bool
) -> PreparedData:
    """Create ``data_dir`` (and ``broker_dir`` when the broker is folders) and find the key.

    ``secret_key`` is the configured one; empty, the key kept in ``data_dir`` is used, unless
    ``require_secret_key`` says a missing key is a mistake, not something to generate.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    if broker_dir is not None:
        broker_folders_create(broker_dir)
    if secret_key:
        return PreparedData(secret_key=secret_key, secret_key_created=False)
    if require_secret_key:
        raise ImproperlyConfigured("SECRET_KEY must be set (REQUIRE_SECRET_KEY is on)")
    key, created = secret_key_ensure(data_dir)
    return PreparedData(secret_key=key, secret_key_created=created)


def secret_key_required(secret_key: str) -> None:
    """Refuse to serve without a signing key, saying how to get one.

    Sessions, CSRF tokens and password resets are signed with it; a web server without one
    would start, then fail on the first page that signs something.
    """
    if not secret_key:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: export it (the same value on every web host), or start "
            "the portal with `manage.py portal`, which keeps one in DATA_DIR/secret_key."
        )
