"""Check that a built wheel holds every file of the package in the source tree.

    python scripts/wheel_contents.py dist/authstore-X-py3-none-any.whl

Package data (the Redis Lua scripts, py.typed, any .sql) reaches users only when
pyproject's package-data names it; an editable install reads the source tree and never
notices a file left out. Exit 1, naming the missing files, when the wheel lacks any.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = "authstore"
REQUIRED = ("authstore/py.typed", "authstore/adapters/redis/scripts/incr.lua")
"""Named outright too, so an empty source tree cannot pass by having nothing to miss."""


def source_files(root: Path) -> set[str]:
    found = set()
    for path in (root / PACKAGE).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found.add(path.relative_to(root).as_posix())
    return found


def main() -> int:
    wheel = Path(sys.argv[1])
    with zipfile.ZipFile(wheel) as archive:
        packed = {name for name in archive.namelist() if name.startswith(f"{PACKAGE}/")}
    expected = source_files(Path(__file__).resolve().parent.parent) | set(REQUIRED)
    missing = sorted(expected - packed)
    if missing:
        print(f"wheel: {wheel.name} lacks {len(missing)} file(s) of the package:", file=sys.stderr)
        for name in missing:
            print(f"  {name}", file=sys.stderr)
        return 1
    kinds = sorted({Path(name).suffix or Path(name).name for name in packed})
    print(f"wheel: {wheel.name} holds all {len(packed)} files of the package ({' '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
