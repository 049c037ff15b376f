"""Print a pip constraints file pinning every runtime dependency to its declared floor.

    python scripts/lowest_versions.py > lowest.txt
    pip install -c lowest.txt -e ".[sqlite,postgres,...]"

The floors are the ``>=`` bounds of pyproject's runtime extras (the backends' drivers,
the crypto helper, pytest for ``authstore check``): scripts/test installs exactly these
versions into a separate venv and runs the contract suite on them, so a floor that
does not work fails CI instead of a user's deployment. A runtime requirement without a
``>=`` floor is an error here: "any version" is a promise nothing tests.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")
"""name, optional [extras], then the version specifiers up to any ``;`` marker (PEP 508,
as far as pyproject uses it: the standard library has no parser for it)."""

NOT_RUNTIME = {
    "all",
    "test",
    "lint",
    "bench",
    "docs",
    "tenxyte",
    "fastapi",
    "django",
    "examples",
    "contract",
    "otel",
}
"""Extras that are not the drivers' runtime floors: aggregates, the project's own tools,
and the integrations (tenxyte, pinned to one minor release; FastAPI, Django, the
examples, OpenTelemetry and a backend author's pytest-asyncio), which their own suites
test at current versions. This step proves what the contract suite needs: the drivers,
the crypto helper and pytest for ``authstore check``."""


def runtime_extras(pyproject: dict[str, object]) -> list[str]:
    extras = pyproject["project"]["optional-dependencies"]  # type: ignore[index]
    return [name for name in extras if name not in NOT_RUNTIME]


def floors(pyproject: dict[str, object]) -> dict[str, str]:
    """``{distribution: lowest allowed version}`` over the runtime extras."""
    extras = pyproject["project"]["optional-dependencies"]  # type: ignore[index]
    found: dict[str, str] = {}
    for extra in runtime_extras(pyproject):
        for line in extras[extra]:
            match = REQUIREMENT.match(line)
            if match is None:
                raise SystemExit(f"[{extra}] {line}: not a requirement this script reads")
            name, specifiers = match.group(1), match.group(2).split(",")
            if name.lower() == "authstore":
                continue
            lowest = [s.strip()[2:].strip() for s in specifiers if s.strip().startswith(">=")]
            if len(lowest) != 1:
                raise SystemExit(f"[{extra}] {line}: declare one >= floor")
            previous = found.setdefault(name, lowest[0])
            if previous != lowest[0]:
                raise SystemExit(f"{name}: floors {previous} and {lowest[0]} differ")
    return found


def main() -> None:
    pyproject = tomllib.loads(Path("pyproject.toml").read_text())
    if sys.argv[1:] == ["--extras"]:
        print(",".join(runtime_extras(pyproject)))
        return
    for name, version in floors(pyproject).items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
