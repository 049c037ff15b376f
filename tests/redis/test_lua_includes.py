"""The Lua scripts' includes (``-- include: _prelude.lua, _sessions.lua`` on a script's
first line) are complete and all used: a script that calls a helper its includes do not
define would fail only when run, on the server (``attempt to call a nil value``)."""

from __future__ import annotations

import re
from importlib import resources

from authstore.adapters.redis.commands import includes, lua

SCRIPTS = resources.files("authstore.adapters.redis") / "scripts"
FILES = {
    entry.name: entry.read_text() for entry in SCRIPTS.iterdir() if entry.name.endswith(".lua")
}
HELPERS = {name for name in FILES if name.startswith("_")}
MAIN = sorted(name for name in FILES if name not in HELPERS)

LUA_NAMES = frozenset(
    # keywords a `(` may follow, and the base library functions scripts may call
    [
        "and",
        "or",
        "not",
        "if",
        "elseif",
        "while",
        "until",
        "return",
        "in",
        "function",
        "local",
        "tonumber",
        "tostring",
        "type",
        "pairs",
        "ipairs",
        "unpack",
        "select",
        "next",
        "error",
        "assert",
        "pcall",
    ]
)


def _code(text: str) -> str:
    """Lua without its comments and string literals."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "", re.sub(r"--[^\n]*", "", text))


def _calls(text: str) -> set[str]:
    """Plain function calls (``name(``), not ``redis.call(`` or ``s:sub(``."""
    return set(re.findall(r"(?<![\w.:])([A-Za-z_]\w*)\s*\(", _code(text))) - LUA_NAMES


def _defines(text: str) -> set[str]:
    """Top-level names a file defines: its functions and its locals."""
    code = _code(text)
    names = set(re.findall(r"^local function (\w+)", code, re.M))
    for listed in re.findall(r"^local ([\w ,]+?)\s*=", code, re.M):
        names |= {name.strip() for name in listed.split(",")}
    return names


def test_every_include_exists_and_is_a_helper() -> None:
    for name in MAIN:
        for helper in includes(FILES[name].encode()):
            assert helper in HELPERS, f"{name} includes {helper}, which is no scripts/_*.lua"
    for helper in HELPERS:
        assert not includes(FILES[helper].encode()), f"{helper}: only scripts include"


def test_every_called_function_is_defined_before_its_call() -> None:
    """A script's calls, and each of its helpers' calls, are defined by the file itself
    or by a helper included before it."""
    for name in MAIN:
        defined: set[str] = set()
        for part in [*includes(FILES[name].encode()), name]:
            defined |= _defines(FILES[part])
            missing = _calls(FILES[part]) - defined
            assert not missing, f"{name}: {part} calls {sorted(missing)}, defined nowhere before"


def test_every_include_is_used_and_every_helper_included() -> None:
    used: set[str] = set()
    for name in MAIN:
        words = set(re.findall(r"\w+", _code(FILES[name])))
        helpers = includes(FILES[name].encode())
        for helper in helpers:
            others = {
                called for other in helpers if other != helper for called in _calls(FILES[other])
            }
            needed = _defines(FILES[helper]) & (words | others)
            assert needed, f"{name} includes {helper} but uses none of it"
            used.add(helper)
    assert used == HELPERS, f"never included: {sorted(HELPERS - used)}"


def test_the_loaded_source_is_the_includes_then_the_script() -> None:
    for name in MAIN:
        parts = [*includes(FILES[name].encode()), name]
        expected = "\n".join(FILES[part] for part in parts).encode()
        assert lua(name.removesuffix(".lua")).source == expected
