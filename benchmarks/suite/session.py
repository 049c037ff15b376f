"""One benchmark run: every target, every mode, raw drivers and peers, round trips on
the wire and the 1 ms comparison through the proxy; then the report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.suite import measure, report
from benchmarks.suite.crypto import measure_crypto
from benchmarks.suite.example_app import measure_example_app
from benchmarks.suite.instrumentation import measure_instrumentation
from benchmarks.suite.machine import facts
from benchmarks.suite.measure import Budget, Contender, Measurement
from benchmarks.suite.memory_bound import measure_memory_bound
from benchmarks.suite.ops import OPS, Stores, contenders, run_async, run_sync, seed
from benchmarks.suite.peers import async_peers, sync_peers
from benchmarks.suite.placement import pinned
from benchmarks.suite.raw import open_raw
from benchmarks.suite.settings import describe, describe_store
from benchmarks.suite.targets import (
    NAMES,
    Target,
    analyze,
    close_stores,
    discover,
    open_stores,
)
from benchmarks.suite.unanalyzed import measure_unanalyzed

__all__ = ["Results", "main", "record_row"]

RESULTS = Path(__file__).resolve().parent.parent / "results"
"""Where a full run's report goes (committed)."""
SCRATCH = RESULTS / "scratch"
"""Where --quick and --smoke reports go unless --out says otherwise (ignored by git)."""
EXTRAS = ("crypto", "observability", "examples")
"""Sections that measure no store backend: authstore.crypto, the OpenTelemetry
instrumentation's cost, the FastAPI example's request rates."""
LATENCY_OPS = ("cache get", "fixed_window allowed", "is_blacklisted", "session get")
RAW_AT_DISTANCE = ("cache get", "is_blacklisted", "session get")
"""Reads: a replayed request is the same key for every caller, harmless only for reads."""
DELAY = 0.0005
"""One-way delay of the latency proxy: a 1 ms round trip."""
CALLERS = 100


@dataclass
class Row:
    backend: str
    mode: str
    op: str
    measurements: list[Measurement]


@dataclass
class Results:
    budget: str
    facts: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    trips: dict[tuple[str, str, str], float] = field(default_factory=dict)
    latency: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    """Measurements that are not operations per second: probe, value, unit, detail,
    and the limit of its goal when it has one."""
    proxy_rtt: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict[str, str] = field(default_factory=dict)
    """Each contender's settings as read from its objects (``settings.describe``)."""
    previous: list[dict[str, Any]] = field(default_factory=list)
    """The ratios of an earlier run to compare with (``--repeat``, ``--compare``)."""
    previous_label: str = ""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {message}", file=sys.stderr, flush=True)


class Proxy:
    """The latency proxy process (benchmarks/suite/proxy.py)."""

    def __init__(self, addresses: list[tuple[str, int]]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.suite.proxy", *(f"{h}:{p}" for h, p in addresses)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent.parent,
        )
        self.ports: dict[tuple[str, int], int] = {}
        assert self.process.stdout is not None
        self.echo = 0
        self.delay_each_way = DELAY
        for line in self.process.stdout:
            if line.startswith("ready"):
                break
            if line.startswith("echo"):
                self.echo = int(line.split()[1])
                continue
            _, target, port = line.split()
            host, _, target_port = target.rpartition(":")
            self.ports[(host, int(target_port))] = int(port)

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def delay(self, seconds: float) -> None:
        self.ask(f"delay {seconds}")

    def trips(self) -> int:
        return int(self.ask("count").split()[0])

    def round_trip(self, delay: float, count: int = 200) -> dict[str, float]:
        """p50 and mean of a one-byte echo through the proxy at ``delay`` each way, and
        straight to the echo server: what "1 ms away" really was on this machine."""
        self.delay(delay)
        try:
            found = {}
            for name, port in (
                ("proxied", self.ports[("127.0.0.1", self.echo)]),
                ("direct", self.echo),
            ):
                with socket.create_connection(("127.0.0.1", port)) as connection:
                    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    times = []
                    for _ in range(count):
                        began = time.perf_counter()
                        connection.sendall(b"x")
                        connection.recv(1)
                        times.append(time.perf_counter() - began)
                times.sort()
                found[f"{name}_p50"] = times[len(times) // 2]
                found[f"{name}_mean"] = sum(times) / len(times)
            return found
        finally:
            self.delay(0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def record_row(
    results: Results, backend: str, mode: str, op: str, found: list[Measurement]
) -> None:
    """One operation's measurements (authstore's first), kept and shown as progress."""
    results.rows.append(Row(backend, mode, op, found))
    ours = found[0]
    others = ", ".join(
        f"{m.label} {m.ops:,.0f}/s" if m.error is None else f"{m.label} failed" for m in found[1:]
    )
    state = f"{ours.ops:,.0f} ops/s" if ours.error is None else f"FAILED {ours.error}"
    progress(f"  {backend} {mode:<8} {op:<24} {state}{'; ' + others if others else ''}")


def _row(results: Results, target: Target, mode: str, op: str, found: list[Measurement]) -> None:
    record_row(results, target.name, mode, op, found)


def _groups(
    target: Target,
    ours: dict[str, Contender],
    raws: dict[str, list[Contender]],
    peers: dict[str, list[Contender]],
) -> list[tuple[str, list[Contender]]]:
    groups = []
    for op in OPS:
        if op.name not in ours:
            continue
        group = [ours[op.name], *raws.get(op.name, []), *peers.get(op.name, [])]
        groups.append((op.name, group))
    return groups


def _settings(results: Results, target: Target, mode: str, stores: Stores, raws: list[Any]) -> None:
    """What authstore and the raw replays of this target and mode ran with."""
    results.settings[f"{target.name} {mode}: authstore"] = describe_store(stores.cache)
    for raw in raws:
        thing = next(
            (getattr(raw, a) for a in ("pool", "client", "connection") if hasattr(raw, a)), raw
        )
        results.settings[f"{target.name} {mode}: {raw.label}"] = describe(thing)


def _store_of(stores: Stores, op_name: str) -> Any:
    kind = next(op.store for op in OPS if op.name == op_name)
    return getattr(stores, kind)


def _sync(target: Target, budget: Budget, results: Results) -> None:
    closers: list[Callable[[], Any]] = []
    stores = open_stores(target.url, target.stores, False)
    closers.append(lambda: close_stores(stores))
    try:
        run_sync(seed(stores, 1))
        ours = contenders(stores, 1)
        raws: dict[str, list[Contender]] = {}
        opened = []
        for raw in (open_raw(target, False), open_raw(target, False, pool=True)):
            if raw is None:
                continue
            closers.append(raw.close)
            opened.append(raw)
            for op in OPS:
                if op.raw and op.name in ours:
                    try:
                        ours[op.name].call(0)  # a script the server has not seen yet gets loaded
                        raws.setdefault(op.name, []).append(
                            raw.contender(_store_of(stores, op.name), ours[op.name].call)
                        )
                    except Exception as error:
                        results.notes.append(
                            f"{target.name} sync {op.name}: no {raw.kind} replay ({error!r:.120})"
                        )
        try:
            peers, notes = sync_peers(target, closers)
        except ImportError as error:  # the bench extra is not installed
            peers, notes = {}, [f"{target.name}: peers not installed ({error})"]
        results.notes += notes
        _settings(results, target, "sync", stores, opened)
        for op_name, group in _groups(target, ours, raws, peers):
            analyze(target)  # what the groups before filled, every contender's tables alike
            _row(results, target, "sync", op_name, measure.measure_sync(group, budget))
        if target.name == "postgresql":  # a table filled by a bulk import: no statistics
            measure_unanalyzed(target, budget, results)
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()


async def _async(target: Target, budget: Budget, results: Results) -> None:
    closers: list[Callable[[], Any]] = []
    stores = await _open_async(target.url, target)
    try:
        await run_async(seed(stores, 1))
        ours = contenders(stores, 1)
        raws: dict[str, list[Contender]] = {}
        opened = []
        for opening in (open_raw(target, True), open_raw(target, True, pool=True)):
            if opening is None:
                continue
            raw = await opening
            closers.append(raw.close)
            opened.append(raw)
            for op in OPS:
                if op.raw and op.name in ours:
                    try:
                        await ours[op.name].call(0)
                        raws.setdefault(op.name, []).append(
                            await raw.contender(_store_of(stores, op.name), ours[op.name].call)
                        )
                    except Exception as error:
                        results.notes.append(
                            f"{target.name} async {op.name}: no {raw.kind} replay ({error!r:.120})"
                        )
        try:
            peers, notes = await async_peers(target, closers)
        except ImportError as error:
            peers, notes = {}, [f"{target.name} async: peers not installed ({error})"]
        results.notes += notes
        _settings(results, target, "async", stores, opened)
        for op_name, group in _groups(target, ours, raws, peers):
            analyze(target)
            _row(results, target, "async", op_name, await measure.measure_async(group, budget))
        await run_async(seed(stores, CALLERS))
        many = contenders(stores, CALLERS)
        for op_name, group in _groups(target, many, {}, {}):
            analyze(target)
            found = await measure.measure_concurrent(group, budget, CALLERS)
            _row(results, target, f"async{CALLERS}", op_name, found)
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                outcome = close()
                if asyncio.iscoroutine(outcome):
                    await outcome
        await close_stores(stores)


async def _open_async(url: str, target: Target) -> Stores:
    return open_stores(url, target.stores, True)


def _round_trips(target: Target, proxy: Proxy, results: Results, calls: int) -> None:
    warm = 6 if target.name == "postgresql" else 2  # psycopg prepares on the sixth execution
    """Round trips per call, counted by the proxy (no delay), sync then async."""
    port = proxy.ports[target.address]
    url = target.via(port)
    proxy.delay(0)

    def count_sync() -> None:
        stores = open_stores(url, target.stores, False)
        try:
            run_sync(seed(stores, 1))
            for name, contender in contenders(stores, 1).items():
                for i in range(warm):
                    if contender.prepare:
                        contender.prepare(1)
                    contender.call(i)
                counts = []
                for _ in range(2):  # the fewer of two: a driver's heartbeat may fall in one
                    if contender.prepare:
                        contender.prepare(calls)
                    proxy.ask("reset")
                    for i in range(calls):
                        contender.call(i)
                    counts.append(proxy.trips() / calls)
                results.trips[(target.name, "sync", name)] = min(counts)
        finally:
            close_stores(stores)

    async def count_async() -> None:
        stores = open_stores(url, target.stores, True)
        try:
            await run_async(seed(stores, 1))
            for name, contender in contenders(stores, 1).items():
                for i in range(warm):
                    if contender.prepare:
                        await contender.prepare(1)
                    await contender.call(i)
                counts = []
                for _ in range(2):
                    if contender.prepare:
                        await contender.prepare(calls)
                    proxy.ask("reset")
                    for i in range(calls):
                        await contender.call(i)
                    counts.append(proxy.trips() / calls)
                results.trips[(target.name, "async", name)] = min(counts)
        finally:
            await close_stores(stores)

    count_sync()
    asyncio.run(count_async())
    progress(
        f"  {target.name} round trips: "
        + ", ".join(
            f"{op} {trips:g}"
            for (b, m, op), trips in results.trips.items()
            if b == target.name and m == "sync"
        )
    )


def _latency(target: Target, proxy: Proxy, budget: Budget, results: Results) -> None:
    """Sequential sync against 100 concurrent async callers, 1 ms from the server."""
    url = target.via(proxy.ports[target.address])
    proxy.delay(proxy.delay_each_way)
    try:
        stores = open_stores(url, target.stores, False)
        try:
            run_sync(seed(stores, 1))
            calls = contenders(stores, CALLERS)
            sync = {
                name: measure.measure_sync([calls[name]], budget)[0]
                for name in LATENCY_OPS
                if name in calls
            }
        finally:
            close_stores(stores)

        async def concurrent() -> dict[str, list[Measurement]]:
            stores = open_stores(url, target.stores, True)
            raw = open_raw(target.server_via(proxy.ports[target.address]), True, pooled=True)
            raw = await raw if raw is not None else None
            try:
                await run_async(seed(stores, CALLERS))
                calls = contenders(stores, CALLERS)
                found = {}
                for name in LATENCY_OPS:
                    if name not in calls:
                        continue
                    group = [calls[name]]
                    if raw is not None and name in RAW_AT_DISTANCE:
                        with contextlib.suppress(Exception):
                            group.append(
                                await raw.contender(_store_of(stores, name), calls[name].call)
                            )
                    found[name] = await measure.measure_concurrent(group, budget, CALLERS)
                return found
            finally:
                await close_stores(stores)
                if raw is not None:
                    await raw.close()

        many = asyncio.run(concurrent())
    finally:
        proxy.delay(0)
    for name, one in sync.items():
        other, *raws = many[name]
        ratio = other.ops / one.ops if one.ops and other.ops else 0.0
        pooled = raws[0] if raws and raws[0].error is None else None
        results.latency.append(
            {
                "backend": target.name,
                "op": name,
                "sync": one.ops,
                "sync_p99": one.p99,
                "async": other.ops,
                "async_p50": other.p50,
                "async_p99": other.p99,
                "ratio": ratio,
                "raw": pooled.label if pooled else "",
                "raw_async": pooled.ops if pooled else 0.0,
                "raw_async_p99": pooled.p99 if pooled else 0.0,
                "error": one.error or other.error,
            }
        )
        progress(
            f"  {target.name} at 1 ms {name:<22} sync {one.ops:,.0f}/s, async x{CALLERS} {other.ops:,.0f}/s ({ratio:.1f}x)"
            + (f"; {pooled.label} x{CALLERS} {pooled.ops:,.0f}/s" if pooled else "")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="authstore against the raw drivers and the peers, every backend and mode; "
        "writes benchmarks/results/ (report.md, results.json, charts).",
    )
    parser.add_argument(
        "targets",
        nargs="*",
        help=f"sections ({', '.join(NAMES + EXTRAS)}) or URLs; default: all (backends: the reachable ones)",
    )
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--quick", action="store_true", help="fewer, shorter rounds (about 3 minutes)"
    )
    speed.add_argument(
        "--smoke",
        action="store_true",
        help="one call per contender: checks the command works, measures nothing",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the report goes (default: benchmarks/results for a full run, "
        "benchmarks/results/scratch for --quick and --smoke)",
    )
    parser.add_argument(
        "--no-proxy", action="store_true", help="skip round-trip counting and the 1 ms comparison"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="for each network backend, run this process on one CPU and the local "
        "server's processes on the others (benchmarks/suite/placement.py): the same "
        "placement for every contender's connection, masks restored after",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run everything N times in a row; the report is the last run's, each ratio "
        "compared with the run before (moved by more than 10%%: flagged); the earlier "
        "runs' reports go to run1/, run2/, ... in the output folder",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="compare this run's ratios with an earlier run's results.json",
    )
    options = parser.parse_args(argv)
    if options.repeat < 1:
        parser.error("--repeat takes a count of at least 1")
    name = "smoke" if options.smoke else "quick" if options.quick else "full"
    out = options.out or (RESULTS if name == "full" else SCRATCH)
    previous: list[dict[str, Any]] = []
    previous_label = ""
    if options.compare is not None:
        earlier = json.loads(options.compare.read_text())
        if "ratios" not in earlier:
            parser.error(f"{options.compare} has no ratios (written before --compare existed)")
        previous, previous_label = earlier["ratios"], f"{options.compare}"
    results = None
    for number in range(options.repeat):
        if options.repeat > 1:
            progress(f"run {number + 1} of {options.repeat}")
        results = _run(options, name)
        results.previous, results.previous_label = previous, previous_label
        previous = report.ratio_rows(results)
        previous_label = f"run {number + 1} of {options.repeat} (same command, just before)"
        if number + 1 < options.repeat:
            report.write(results, out / f"run{number + 1}")
    assert results is not None
    path = report.write(results, out)
    progress(f"report: {path} ({results.seconds:.0f} s)")
    return 1 if results.failures else 0


def _run(options: argparse.Namespace, name: str) -> Results:
    budget = measure.SMOKE if options.smoke else measure.QUICK if options.quick else measure.FULL
    started = time.perf_counter()
    extras = [item for item in options.targets if item in EXTRAS]
    stores = [item for item in options.targets if item not in EXTRAS]
    if not options.targets:
        extras = list(EXTRAS)
    targets, skipped = discover(stores) if stores or not options.targets else ([], [])
    results = Results(name, facts(targets), skipped=skipped)
    for line in skipped:
        progress(f"skipped {line}")
    network = [t for t in targets if t.network]
    proxy = Proxy([t.address for t in network]) if network and not options.no_proxy else None
    if proxy is not None:
        # on a loaded machine the proxy's wake-ups come late: the report says what the
        # round trip through it really was
        results.proxy_rtt = proxy.round_trip(proxy.delay_each_way, 20 if options.smoke else 300)
        results.proxy_rtt["delay_each_way"] = proxy.delay_each_way
        progress(
            "proxy round trip at {:.2f} ms each way: p50 {:.2f} ms, mean {:.2f} ms "
            "(direct loopback p50 {:.2f} ms)".format(
                proxy.delay_each_way * 1e3,
                results.proxy_rtt["proxied_p50"] * 1e3,
                results.proxy_rtt["proxied_mean"] * 1e3,
                results.proxy_rtt["direct_p50"] * 1e3,
            )
        )
    try:
        for target in targets:
            progress(f"{target.name}: {target.server.split('?', 1)[0]}")
            placement = contextlib.ExitStack()
            try:
                if options.pin and target.network:
                    where = placement.enter_context(pinned([target.address]))
                    results.facts[f"placement ({target.name})"] = where
                _sync(target, budget, results)
                asyncio.run(_async(target, budget, results))
                if target.name == "memory":
                    measure_memory_bound(0.3 if options.smoke else 3.0, results)
                if proxy is not None and target.network:
                    _round_trips(
                        target, proxy, results, 1 if options.smoke else 3 if options.quick else 10
                    )
                    _latency(target, proxy, budget, results)
            except Exception as error:
                results.failures.append(f"{target.name}: {error!r:.300}")
                if os.environ.get("AUTHSTORE_BENCH_DEBUG"):
                    traceback.print_exc()
                progress(f"  {target.name} FAILED: {error!r:.300}")
            finally:
                placement.close()
                target.cleanup()
    finally:
        if proxy is not None:
            proxy.close()
    for extra in extras:
        progress(f"{extra}:")
        try:
            if extra == "crypto":
                measure_crypto(budget, results)
            elif extra == "observability":
                measure_instrumentation(budget, results)
            else:
                measure_example_app(name, results, targets)
        except Exception as error:
            results.failures.append(f"{extra}: {error!r:.300}")
            if os.environ.get("AUTHSTORE_BENCH_DEBUG"):
                traceback.print_exc()
            progress(f"  {extra} FAILED: {error!r:.300}")
    results.seconds = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        results.facts["load_end"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return results


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
