"""Settings read the environment and nothing else; every variable is documented.

Each variable ``callgrid_portal/settings.py`` reads appears in ``.env.example`` and in the
README's configuration table, and each one documented there is read by the portal. Importing
the settings in a fresh process writes nothing; ``manage.py portal`` prepares ``DATA_DIR``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from callgrid_portal.datadir import data_dir_prepare

ROOT = Path(__file__).resolve().parents[2]
# settings.py and the sections it imports (settings_celery.py).
SETTINGS_FILES = sorted((ROOT / "callgrid_portal").glob("settings*.py"))

# env_str("NAME", ...), env_int("NAME", ...), env_rate("NAME", ...) and the like.
_SETTINGS_READ = re.compile(r"\benv_[a-z]+\(\s*\"([A-Z][A-Z0-9_]*)\"")
# Variables read outside the settings, by the commands that use them (``portal``).
_OTHER_READ = re.compile(r"os\.environ(?:\.get)?[(\[]\s*\"([A-Z][A-Z0-9_]*)\"")
_ENV_EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_README_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for path in SETTINGS_FILES:
        names |= set(_SETTINGS_READ.findall(path.read_text()))
    return names


def _portal_variables() -> set[str]:
    """Every variable the project's code reads: the settings' and the commands' own."""
    names = _settings_variables()
    for path in (ROOT / "callgrid_portal").rglob("*.py"):
        names |= set(_OTHER_READ.findall(path.read_text()))
    return names


def _env_example_variables() -> set[str]:
    return set(_ENV_EXAMPLE_LINE.findall((ROOT / ".env.example").read_text()))


def _readme_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| Variable | Default | What it does |")
    table = readme[start : readme.index("\n\n", start)]
    return set(_README_ROW.findall(table))


def test_settings_read_variables_through_the_env_helpers():
    # A sanity check of the pattern itself: it would otherwise pass on an empty set.
    assert {"DATA_DIR", "SECRET_KEY", "DATABASE_URL", "LOGIN_FAILURE_LIMIT"} <= (
        _settings_variables()
    )
    # The Celery section's own module is read too.
    assert "CELERY_TASK_TIME_LIMIT" in _settings_variables()


def test_every_setting_read_from_the_environment_is_in_env_example():
    missing = _settings_variables() - _env_example_variables()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_every_setting_read_from_the_environment_is_in_the_readme_table():
    missing = _settings_variables() - _readme_variables()
    assert not missing, f"add to the README's configuration table: {sorted(missing)}"


def test_every_documented_variable_is_read_by_the_portal():
    documented = _env_example_variables() | _readme_variables()
    unread = documented - _portal_variables()
    assert not unread, f"documented but read nowhere: {sorted(unread)}"


def test_env_example_and_the_readme_table_list_the_same_variables():
    assert _env_example_variables() == _readme_variables()


def _embedded_env(data_dir: Path) -> dict[str, str]:
    """The embedded default (no server named) with ``data_dir`` and no signing key."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_URL") and key not in ("SECRET_KEY", "DJANGO_SETTINGS_MODULE")
    }
    env.update(DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="callgrid_portal.settings")
    return env


def test_importing_the_settings_in_a_fresh_process_creates_nothing(tmp_path):
    data_dir = tmp_path / "data"
    env = _embedded_env(data_dir)
    # Every path that defaults under DATA_DIR, so none of them is created from elsewhere.
    for name in ("CELERY_BROKER_DIR", "LIMITS_LOCK_DIR", "ROUTE_SPOOL_DIR", "SQLITE_PATH"):
        env.pop(name, None)
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATA_DIR, settings.CELERY_BROKER_URL, settings.STATIC_ROOT)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert str(data_dir) in done.stdout and "filesystem://" in done.stdout
    assert list(tmp_path.iterdir()) == [], "importing the settings wrote files"


def test_a_web_server_without_a_signing_key_refuses_to_start_saying_why(tmp_path):
    env = _embedded_env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import callgrid_portal.wsgi"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "SECRET_KEY is not set" in done.stderr and "manage.py portal" in done.stderr


def test_data_dir_prepare_creates_the_folders_and_one_private_key(tmp_path):
    data_dir, broker = tmp_path / "data", tmp_path / "data" / "broker"
    first = data_dir_prepare(
        data_dir=data_dir, broker_dir=broker, secret_key="", require_secret_key=False
    )
    assert first.secret_key_created and len(first.secret_key) >= 50
    assert sorted(p.name for p in broker.iterdir()) == ["control", "in", "processed"]
    assert (data_dir / "secret_key").stat().st_mode & 0o777 == 0o600
    again = data_dir_prepare(
        data_dir=data_dir, broker_dir=broker, secret_key="", require_secret_key=False
    )
    assert again.secret_key == first.secret_key and not again.secret_key_created


def test_data_dir_prepare_keeps_a_configured_key_and_writes_none(tmp_path):
    prepared = data_dir_prepare(
        data_dir=tmp_path, broker_dir=None, secret_key="configured", require_secret_key=True
    )
    assert prepared.secret_key == "configured"
    assert list(tmp_path.iterdir()) == []


def test_data_dir_prepare_refuses_to_generate_a_key_when_one_is_required(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        data_dir_prepare(data_dir=tmp_path, broker_dir=None, secret_key="", require_secret_key=True)
    assert not (tmp_path / "secret_key").exists()
