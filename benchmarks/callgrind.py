"""Client instructions per operation, authstore's async PostgreSQL store against a bare
asyncpg connection sending the same SQL (the benchmark's raw replay), counted by
callgrind: deterministic, so it compares builds on a loaded machine where timings
cannot.

``python -m benchmarks.callgrind [--calls N] [operation ...]`` runs itself under
``valgrind --tool=callgrind`` (the server is not counted, only this process), against
``AUTHSTORE_TEST_POSTGRES_URL``, in throwaway tables. Each phase ends with a
``callgrind_control`` dump; a phase's total over its calls is the table's figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

__all__ = ["main"]

WARM = 50
PHASE = re.compile(r"^desc: Trigger: .*dump run-(authstore|raw)-(.+)$", re.MULTILINE)
TOTAL = re.compile(r"^summary: (\d+)$", re.MULTILINE)


def _dump(label: str) -> None:
    subprocess.run(
        ["callgrind_control", "-d", label, str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def _phases(calls: int, wanted: list[str]) -> None:
    """Under callgrind: each operation, authstore's call then the raw replay."""
    from benchmarks.suite.ops import OPS, contenders, run_async, seed
    from benchmarks.suite.raw import AsyncpgRaw
    from benchmarks.suite.targets import Target, _drop_tables, _with, close_stores, open_stores

    server = os.environ["AUTHSTORE_TEST_POSTGRES_URL"]
    tag = f"cg{uuid.uuid4().hex[:8]}"
    target = Target("postgresql", server, _with(server, table_prefix=f"{tag}_", namespace=tag), tag)
    stores = open_stores(target.url, target.stores, True)
    try:
        await run_async(seed(stores, 1))
        ours = contenders(stores, 1)
        raw = AsyncpgRaw(target)
        await raw.open()
        try:
            names = [op.name for op in OPS if op.raw and not op.concurrent_only]
            for name in [n for n in names if not wanted or n in wanted]:
                call = ours[name].call
                await call(0)
                store = stores.sessions if name.startswith("session") else stores.cache
                replay = (await raw.contender(store, call)).call
                for side, run in (("authstore", call), ("raw", replay)):
                    for i in range(WARM):
                        await run(i)
                    _dump(f"warm-{side}-{name}")
                    for i in range(calls):
                        await run(i)
                    _dump(f"run-{side}-{name}")
        finally:
            await raw.close()
    finally:
        await close_stores(stores)
        _drop_tables(target)


def _table(folder: Path, calls: int) -> str:
    counts: dict[tuple[str, str], float] = {}
    for path in folder.glob("cg.*"):
        text = path.read_text(errors="replace")
        phase, total = PHASE.search(text), TOTAL.search(text)
        if phase and total:
            counts[(phase.group(2), phase.group(1))] = int(total.group(1)) / calls
    lines = [f"{'operation':24} {'authstore':>10} {'raw':>10} {'excess':>9} {'ratio':>6}"]
    for name in sorted({name for name, _ in counts}):
        ours, raw = counts.get((name, "authstore")), counts.get((name, "raw"))
        if ours and raw:
            lines.append(
                f"{name:24} {ours / 1000:9.1f}k {raw / 1000:9.1f}k "
                f"{(ours - raw) / 1000:8.1f}k {ours / raw:6.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind")
    parser.add_argument("--calls", type=int, default=300, help="calls per phase (300)")
    parser.add_argument("--under", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("operations", nargs="*", help="benchmark operation names (all)")
    options = parser.parse_args(argv)
    if options.under:
        asyncio.run(_phases(options.calls, options.operations))
        return
    with tempfile.TemporaryDirectory(prefix="authstore-callgrind-") as folder:
        command: list[Any] = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/cg.%p",
            sys.executable,
            "-m",
            "benchmarks.callgrind",
            "--under",
            "--calls",
            str(options.calls),
            *options.operations,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(_table(Path(folder), options.calls))


if __name__ == "__main__":
    main()
