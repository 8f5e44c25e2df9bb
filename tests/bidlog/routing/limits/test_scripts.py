"""The limits' Lua scripts live in ``.lua`` files that are loaded once and ship in the package."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from bidlog.routing.limits import scripts

ROOT = Path(__file__).resolve().parents[4]
LUA_DIR = ROOT / "bidlog" / "routing" / "limits" / "lua"


def test_every_lua_file_is_loaded_and_every_script_has_a_file():
    files = {path.stem for path in LUA_DIR.glob("*.lua")}
    # bucket_functions.lua is the prefix of the two scripts that use the token bucket.
    assert files == set(scripts.LUA) | {"bucket_functions"}
    for name, source in scripts.LUA.items():
        assert (LUA_DIR / f"{name}.lua").read_text() in source


def test_scripts_that_use_the_bucket_carry_its_functions():
    functions = (LUA_DIR / "bucket_functions.lua").read_text()
    assert scripts.LUA["bucket"].startswith(functions)
    assert scripts.LUA["admit"].startswith(functions)
    assert "bucket_read" not in scripts.LUA["settle"]


def test_the_lua_files_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["bidlog.routing.limits"]
    package = LUA_DIR.parent
    for path in LUA_DIR.glob("*.lua"):
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative
