"""Client instructions per operation, authstore's async PostgreSQL store against a bare
asyncpg connection sending the same SQL (the benchmark's raw replay), counted by
callgrind: deterministic, so it compares builds on a loaded machine where timings
cannot.

``python -m benchmarks.callgrind [--calls N] [operation ...]`` runs itself under
``valgrind --tool=callgrind`` (the server is not counted, only this process), against
``AUTHSTORE_TEST_POSTGRES_URL``, in throwaway tables. Each phase ends with a
``callgrind_control`` dump; a phase's total over its calls is the table's figure.

``--backend memcached`` (or ``redis``) counts the benchmark's cache operations on that
server (``AUTHSTORE_TEST_<NAME>_URL``, else the services' default), sync and async:
authstore's call, the raw replay of its commands, and the peers of the same operation
(``limits``, cachelib, ...), each in its own phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
PEER_PHASE = re.compile(r"^desc: Trigger: .*dump run~(.+?)~(.+?)~(.+)$", re.MULTILINE)
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


def _backend_phases(backend: str, modes: str, calls: int, wanted: list[str]) -> None:
    """Under callgrind: each cache operation, sync then async, every contender."""
    from benchmarks.suite.ops import contenders, run_async, run_sync, seed
    from benchmarks.suite.peers import async_peers, sync_peers
    from benchmarks.suite.raw import DRIVERS, Unsupported
    from benchmarks.suite.targets import close_stores, discover, open_stores

    for asynchronous in (False, True):
        mode = "async" if asynchronous else "sync"
        if modes not in ("both", mode):
            continue
        (target,), _ = discover([backend])
        closers: list[Any] = []
        loop = asyncio.new_event_loop() if asynchronous else None

        def run(value: Any, loop: asyncio.AbstractEventLoop | None = loop) -> Any:
            return loop.run_until_complete(value) if loop is not None else value

        stores = open_stores(target.url, ("cache",), asynchronous)
        try:
            run((run_async if asynchronous else run_sync)(seed(stores, 1)))
            ours = contenders(stores, 1)
            peers, _ = (
                run(async_peers(target, closers)) if asynchronous else (sync_peers(target, closers))
            )
            raw = DRIVERS[(target.name, asynchronous)](target)
            run(raw.open())
            for name in [n for n in ours if not wanted or n in wanted]:
                call = ours[name].call
                run(call(0))
                phases = [("authstore", call)]
                with contextlib.suppress(Unsupported):
                    phases.append(("raw", run(raw.contender(stores.cache, call)).call))
                phases += [(peer.label, peer.call) for peer in peers.get(name, [])]
                for label, contender in phases:
                    for i in range(WARM):
                        run(contender(i))
                    _dump(f"warm~{mode}~{name}~{label}")
                    for i in range(calls):
                        run(contender(i))
                    _dump(f"run~{mode}~{name}~{label}")
            run(raw.close())
        finally:
            run(close_stores(stores))
            for close in closers:
                run(close()) if asyncio.iscoroutinefunction(close) else close()
            if loop is not None:
                loop.close()
            target.cleanup()


def _peer_table(folder: Path, calls: int) -> str:
    counts: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for path in folder.glob("cg.*"):
        text = path.read_text(errors="replace")
        phase, total = PEER_PHASE.search(text), TOTAL.search(text)
        if phase and total:
            mode, name, label = phase.groups()
            counts.setdefault((mode, name), []).append((label, int(total.group(1)) / calls))
    lines = [f"{'mode':6} {'operation':24} {'contender':50} {'instr':>9} {'ratio':>6}"]
    for (mode, name), rows in sorted(counts.items()):
        ours = dict(rows).get("authstore")
        for label, count in sorted(rows, key=lambda row: row[0] != "authstore"):
            ratio = f"{ours / count:6.2f}" if ours and label != "authstore" else ""
            lines.append(f"{mode:6} {name:24} {label[:50]:50} {count / 1000:8.1f}k {ratio}")
    return "\n".join(lines)


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
    parser.add_argument(
        "--backend",
        choices=("postgresql", "memcached", "redis"),
        default="postgresql",
        help="postgresql: async authstore against raw asyncpg (the default); memcached "
        "or redis: the cache operations sync and async, authstore against the raw replay "
        "and the peers (limits, cachelib, aiocache); the ratio is authstore's count over "
        "the contender's",
    )
    parser.add_argument(
        "--mode", choices=("sync", "async", "both"), default="both", help="with --backend"
    )
    parser.add_argument("operations", nargs="*", help="benchmark operation names (all)")
    options = parser.parse_args(argv)
    if options.under:
        if options.backend == "postgresql":
            asyncio.run(_phases(options.calls, options.operations))
        else:
            _backend_phases(options.backend, options.mode, options.calls, options.operations)
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
            "--backend",
            options.backend,
            "--mode",
            options.mode,
            *options.operations,
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if options.backend == "postgresql":
            print(_table(Path(folder), options.calls))
        else:
            print(_peer_table(Path(folder), options.calls))


if __name__ == "__main__":
    main()
