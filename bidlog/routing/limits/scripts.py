"""The limits' Lua scripts, read once from ``lua/`` and registered with redis-py on first use.

Redis runs each script atomically: no other client sees the state half-updated. The token
bucket's two functions (``bucket_functions.lua``) are put in front of the two scripts that
use them.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

_LUA = resources.files(__package__) / "lua"
_NEEDS_BUCKET = ("bucket", "admit")


def _source(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


def _sources() -> dict[str, str]:
    functions = _source("bucket_functions")
    names = ("bucket", "lease_acquire", "lease_count", "admit", "settle", "swap", "cap_total")
    return {
        name: (functions + _source(name)) if name in _NEEDS_BUCKET else _source(name)
        for name in names
    }


LUA: dict[str, str] = _sources()

_registered: dict[str, Any] = {}
_registered_lock = threading.Lock()


def script(name: str, client: Any) -> Any:
    """The redis-py ``Script`` of ``name``, registered once per process (on ``client``).

    A registered script runs on any client passed to it (``client=`` when called) and
    loads itself again when the server has forgotten it.
    """
    registered = _registered.get(name)
    if registered is None:
        with _registered_lock:
            registered = _registered.setdefault(name, client.register_script(LUA[name]))
    return registered
