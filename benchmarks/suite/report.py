"""The report: ``report.md`` (tables, goals met or missed), ``results.json`` (every
number), PNG charts, and the summary between the benchmark markers of docs/performance.md."""

from __future__ import annotations

import json
import os
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.suite.measure import ratio_of
from benchmarks.suite.memory_bound import GROWTH_LIMIT
from benchmarks.suite.ops import OPS
from benchmarks.suite.raw import NOT_APPLIED
from benchmarks.suite.targets import NAMES, NETWORK
from benchmarks.suite.unanalyzed import GOAL as UNANALYZED_GOAL
from benchmarks.suite.unanalyzed import OP as UNANALYZED

if TYPE_CHECKING:
    from benchmarks.suite.session import Results, Row

__all__ = ["compare", "goals", "ratio_rows", "replace_summary", "write"]

SUMMARY_PAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "performance.md"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results"
START, END = "<!-- benchmark summary: start -->", "<!-- benchmark summary: end -->"
ONE_TRIP = ("postgresql", "mariadb", "redis", "mongodb")
MODES = ("sync", "async", "async100")
SINGLE = {op.name for op in OPS if op.single}
STABLE = 0.035
"""A ratio whose standard error (from its rounds' spread) is above 3.5% is marked
unstable: two runs' ratios then differ by more than 10% about one time in twenty or
more (the difference of two such ratios has an error of 3.5% x 1.41 = 5%)."""
MOVED = 0.10
"""A ratio that moved more than this between two runs is flagged in the comparison."""


def display(results: Results, backend: str) -> str:
    """A backend's name as the report shows it: the MongoDB test server says what it is."""
    server = results.facts.get("servers", {}).get(backend, "")
    if backend == "mongodb" and "secantusdb" in server:
        return "mongodb (secantusdb, a Python stand-in)"
    return backend


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}" if seconds else "-"


def _ops(value: float) -> str:
    return f"{value:,.0f}" if value else "-"


def ratio_rows(results: Results) -> list[dict[str, Any]]:
    """authstore's time over each other contender's, per row: the median of the rounds'
    paired ratios (``measure.ratio_of``), its relative standard error, and whether it is
    stable (error at most ``STABLE``, from at least 3 rounds)."""
    found = []
    for row in results.rows:
        ours, *others = row.measurements
        for other in others:
            if ours.error or other.error or not other.seconds_per_op:
                continue
            paired = ratio_of(ours.rounds, other.rounds)
            if paired.rounds:
                ratio, error, rounds = paired.value, paired.error, paired.rounds
            else:  # measured without rounds (an older run's JSON)
                ratio, error, rounds = ours.seconds_per_op / other.seconds_per_op, 0.0, 0
            found.append(
                {
                    "backend": row.backend,
                    "mode": row.mode,
                    "op": row.op,
                    "kind": other.kind,
                    "reference": other.label,
                    "ours": _typical(ours),
                    "theirs": _typical(other),
                    "ratio": ratio,
                    "error": error,
                    "rounds": rounds,
                    "stable": rounds >= 3 and error <= STABLE,
                }
            )
    return found


_ratios = ratio_rows


def _typical(m: Any) -> float:
    """A contender's typical call: the median over rounds of each round's median call."""
    return statistics.median(m.rounds) if m.rounds else float(m.seconds_per_op)


def _key(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (r["backend"], r["mode"], r["op"], r["reference"])


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ratio of ``after`` that ``before`` has too: both values, how far it moved
    (after / before - 1) and whether that is more than ``MOVED``."""
    earlier = {_key(r): r for r in before}
    found = []
    for r in after:
        old = earlier.get(_key(r))
        if old is None or not old["ratio"] or not r["ratio"]:
            continue
        moved = r["ratio"] / old["ratio"] - 1
        found.append(
            {
                "backend": r["backend"],
                "mode": r["mode"],
                "op": r["op"],
                "reference": r["reference"],
                "before": old["ratio"],
                "after": r["ratio"],
                "moved": moved,
                "flagged": abs(moved) > MOVED,
                "stable": bool(r.get("stable")) and bool(old.get("stable", True)),
            }
        )
    return found


def _judged(r: dict[str, Any]) -> str:
    """A ratio as goals show it: unstable ones say so."""
    return "" if r["stable"] else f" (unstable, ±{r['error']:.0%})"


def _find(results: Results, backend: str, mode: str, op: str) -> Any:
    for row in results.rows:
        if (row.backend, row.mode, row.op) == (backend, mode, op) and not row.measurements[0].error:
            return row.measurements[0]
    return None


def goals(results: Results) -> list[dict[str, Any]]:
    """Each performance goal: met, missed, or not measured."""
    ratios = _ratios(results)
    out: list[dict[str, Any]] = []

    def goal(name: str, checks: list[tuple[str, float, bool]], limit: str) -> None:
        misses = [(what, value) for what, value, ok in checks if not ok]
        at_least = ">=" in limit  # the worst miss is the smallest value, else the largest
        out.append(
            {
                "goal": name,
                "limit": limit,
                "measured": len(checks),
                "met": None if not checks else not misses,
                "misses": [
                    f"{what}: {value:.2f}"
                    for what, value in sorted(misses, key=lambda m: m[1], reverse=not at_least)
                ],
            }
        )

    goal(
        "memory within 1.5x of cachelib/limits/aiocache",
        [
            (
                f"{r['mode']} {r['op']} vs {r['reference']}{_judged(r)}",
                r["ratio"],
                r["ratio"] <= 1.5,
            )
            for r in ratios
            if r["backend"] == "memory" and r["kind"] == "peer"
        ],
        "time ratio <= 1.5",
    )
    goal(
        "SQLite within 1.3x of sqlite3 running the same SQL",
        [
            (f"{r['op']}{_judged(r)}", r["ratio"], r["ratio"] <= 1.3)
            for r in ratios
            if r["backend"] == "sqlite" and r["kind"] == "raw" and r["mode"] == "sync"
        ],
        "time ratio <= 1.3",
    )
    goal(
        "refused SQLite hits at least as fast as pyrate-limiter",
        [
            (f"{r['op']}{_judged(r)}", r["ratio"], r["ratio"] <= 1.0)
            for r in ratios
            if r["backend"] == "sqlite"
            and r["op"].endswith("refused")
            and "pyrate" in r["reference"]
        ],
        "time ratio <= 1.0",
    )
    checks = []
    for mode in ("sync", "async"):
        fixed = _find(results, "postgresql", mode, "fixed_window allowed")
        for other in ("sliding_window allowed", "gcra allowed"):
            found = _find(results, "postgresql", mode, other)
            if fixed and found:
                ratio = found.seconds_per_op / fixed.seconds_per_op
                checks.append((f"{mode} {other.split()[0]} / fixed window", ratio, ratio <= 1.3))
    goal(
        "PostgreSQL sliding window and GCRA within 1.3x of fixed window",
        checks,
        "time ratio <= 1.3",
    )
    goal(
        f"PostgreSQL session get on a never-analyzed table at least {UNANALYZED_GOAL:g}x "
        "cache get's throughput",
        [
            (
                f"{r['mode']} {r['op']}{_judged(r)}",
                1 / r["ratio"],
                1 / r["ratio"] >= UNANALYZED_GOAL,
            )
            for r in ratios
            if r["backend"] == "postgresql" and r["op"] == UNANALYZED and r["kind"] == "baseline"
        ],
        f"throughput ratio >= {UNANALYZED_GOAL:g}",
    )
    goal(
        "every network operation within 1.15x of the raw driver, sync and async",
        [
            (
                f"{display(results, r['backend'])} {r['mode']} {r['op']}{_judged(r)}",
                r["ratio"],
                r["ratio"] <= 1.15,
            )
            for r in ratios
            if r["kind"] == "raw" and r["backend"] in NETWORK
        ],
        "time ratio <= 1.15",
    )
    goal(
        "at least as fast as the peers on the same server",
        [
            (
                f"{display(results, r['backend'])} {r['mode']} {r['op']} vs {r['reference']}{_judged(r)}",
                r["ratio"],
                r["ratio"] <= 1.0,
            )
            for r in ratios
            if r["kind"] == "peer" and r["backend"] in (*NETWORK, "sqlite")
        ],
        "time ratio <= 1.0",
    )
    checks = []
    for row in results.rows:
        if row.backend == "sqlite" and row.mode == "async100":
            sync = _find(results, "sqlite", "sync", row.op)
            many = row.measurements[0]
            if sync and not many.error and sync.ops:
                ratio = many.ops / sync.ops
                checks.append((row.op, ratio, ratio >= 0.5))
    goal(
        "async SQLite with 100 callers at least 0.5x sync throughput",
        checks,
        "throughput ratio >= 0.5",
    )
    goal(
        "memory store bounded: keys written once with a short TTL do not pile up",
        [
            (p["probe"], p["value"], p["value"] <= p["limit"])
            for p in results.probes
            if p["probe"].startswith("memory:")
        ],
        f"second half's growth / first half's <= {GROWTH_LIMIT}",
    )
    goal(
        "async with 100 callers at least 5x sync at 1 ms, every network backend",
        [
            (f"{display(results, e['backend'])} {e['op']}", e["ratio"], e["ratio"] >= 5)
            for e in results.latency
            if not e["error"]
        ],
        "throughput ratio >= 5",
    )
    goal(
        "one round trip per single-record operation (Redis, PostgreSQL, MySQL, MongoDB)",
        [
            (f"{display(results, b)} {m} {op}", trips, trips <= 1.0)
            for (b, m, op), trips in results.trips.items()
            if b in ONE_TRIP and op in SINGLE
        ],
        "round trips <= 1 (counted on the wire)",
    )
    return out


def _mark(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**missed**")


def _placement(facts: dict[str, Any]) -> str:
    placed = [
        f"{key.removeprefix('placement (').removesuffix(')')}: {value}"
        for key, value in facts.items()
        if key.startswith("placement (")
    ]
    if placed:
        return "; ".join(placed)
    return (
        "not pinned: the scheduler places each connection's server thread on the client's "
        "CPU or another, which on a small machine can change a round trip several times "
        "over, differently per contender and per run (`--pin` fixes it)"
    )


def _markdown(results: Results, charts: list[str]) -> str:
    facts = results.facts
    lines = [
        "# authstore benchmark report",
        "",
        f"Generated by `python -m benchmarks{' --quick' if results.budget == 'quick' else ' --smoke' if results.budget == 'smoke' else ''}` "
        f"({results.budget} run, {results.seconds:.0f} s) on {facts['date']}.",
        "",
        f"- Machine: {facts['cpu']}, {facts['cores']} cores, load average at start {facts['load']}; {facts['platform']}",
        f"- Python: {facts['python']}",
        "- Servers: " + "; ".join(f"{k}: {v}" for k, v in facts["servers"].items()),
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in facts["packages"].items()),
        "- CPU placement: " + _placement(facts),
        "",
        "How it measures: the contenders of one operation (authstore, the raw driver replaying "
        "the very requests authstore sends, the peers) run in rounds of calibrated length, cut "
        "into slices that alternate between them, so load from other processes hits them alike; "
        "one uncounted warm-up round comes first, and the garbage collector runs between rounds, "
        "never during one. A round's sample is its mean time per call leaving out the slowest 5% "
        "of calls (other processes take the CPU for milliseconds at a time); the median sample "
        "over the rounds gives ops/s; p50/p99 come from every call. A ratio is the median of the "
        "per-round ratios of the contenders' median calls (each round's contenders saw the same "
        "load; a median call is not stretched by the few calls a burst of load hit), with its "
        "standard error "
        "from their spread (±, relative); rounds go on (up to "
        "15 in a full run) while some ratio's error is above 2%. A ratio whose error stays above "
        f"{STABLE:.1%} is marked unstable: a second run may well give a ratio more than "
        f"{MOVED:.0%} away. `python -m benchmarks --repeat 2` runs everything twice in a row and "
        "adds the comparison (ratios that moved by more than 10% flagged). "
        "With 100 concurrent async callers a round's sample is its wall time over its calls, "
        "nothing left out. Sync and sequential async use one key (or one token); 100 concurrent "
        "callers spread over 100 keys. Round trips are counted on the wire by the proxy (a client "
        "send after the server last spoke): the fewer of two counts over 10 calls (3 with "
        "--quick), after warm-up calls (6 on PostgreSQL: psycopg prepares a statement on its "
        "sixth run); SQLite and memory have no wire, and the peers' round trips are not counted. The "
        "1 ms comparison runs through the same proxy (its own process) with 0.5 ms each way; "
        "the round trip it really gave is stated with the table. "
        "Ratios are authstore's time over the other's: below 1 authstore is faster. Compare "
        "numbers within one run, not across runs.",
        "",
        "Besides the backends: `crypto` (SecretBox against cryptography's AESGCM doing the "
        "same work, AsyncSecretBox against the sync box inline on the loop, and how late a 1 ms "
        "ticker wakes meanwhile), `observability` (memory stores with OpenTelemetry "
        "instrumentation off, on without an SDK, on with the SDK's in-memory exporters), "
        "`FastAPI example` (request rates through httpx's ASGITransport against a /ping route "
        "that touches no store), and the memory store's bound (probes). In each row the first "
        "contender is the one the ratios are about.",
        "",
    ]
    if results.skipped:
        lines += ["Skipped: " + "; ".join(results.skipped), ""]
    lines += _repeatability(results)
    if results.failures:
        lines += ["Failures: " + "; ".join(results.failures), ""]
    lines += [
        "## Goals",
        "",
        "| goal | limit | checks | result | worst / misses |",
        "|---|---|---|---|---|",
    ]
    for g in goals(results):
        misses = "; ".join(g["misses"][:6]) + (
            f"; ... {len(g['misses']) - 6} more" if len(g["misses"]) > 6 else ""
        )
        lines.append(
            f"| {g['goal']} | {g['limit']} | {g['measured']} | {_mark(g['met'])} | {misses or '-'} |"
        )
    lines.append("")
    if results.latency:
        lines += [
            "## Sync against 100 async callers, 1 ms from the server (latency proxy)",
            "",
            *(
                [
                    "The proxy delays every chunk by "
                    f"{results.proxy_rtt['delay_each_way'] * 1e3:.2f} ms each way; "
                    "a one-byte echo through it took p50 "
                    f"{results.proxy_rtt['proxied_p50'] * 1e3:.2f} ms, mean "
                    f"{results.proxy_rtt['proxied_mean'] * 1e3:.2f} ms (straight to the echo "
                    f"server: p50 {results.proxy_rtt['direct_p50'] * 1e3:.2f} ms): what the "
                    "server's distance really was in this run.",
                    "",
                ]
                if results.proxy_rtt
                else []
            ),
            "The last columns: the raw async driver with its pool, replaying the same read for 100 "
            "callers: how far this machine's CPU lets any async client go at this distance.",
            "",
            "| backend | operation | sync ops/s | sync p99 µs | async x100 ops/s | async p50 µs | async p99 µs | async/sync | raw async x100 ops/s | raw driver |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for e in results.latency:
            lines.append(
                f"| {display(results, e['backend'])} | {e['op']} | {_ops(e['sync'])} | {_us(e['sync_p99'])} | {_ops(e['async'])} | "
                f"{_us(e['async_p50'])} | {_us(e['async_p99'])} | {e['ratio']:.1f}x | "
                f"{_ops(e.get('raw_async', 0.0))} | {e.get('raw') or '-'} |"
            )
        lines.append("")
    if results.probes:
        lines += [
            "## Probes",
            "",
            "| probe | value | unit | limit | detail |",
            "|---|---:|---|---:|---|",
        ]
        for p in results.probes:
            limit = f"{p['limit']:g}" if "limit" in p else "-"
            lines.append(
                f"| {p['probe']} | {p['value']:,.2f} | {p['unit']} | {limit} | {p['detail']} |"
            )
        lines.append("")
    by_backend: dict[str, list[Row]] = defaultdict(list)
    for row in results.rows:
        by_backend[row.backend].append(row)
    ratios = _ratios(results)
    for backend, rows in by_backend.items():
        lines += [
            f"## {display(results, backend)}",
            "",
            "| operation | "
            + " | ".join(f"{m} ops/s | {m} p50 µs | {m} p99 µs" for m in MODES)
            + " | round trips sync/async |",
            "|---|" + "---:|" * (3 * len(MODES) + 1),
        ]
        table: dict[str, dict[str, Any]] = defaultdict(dict)
        for row in rows:
            table[row.op][row.mode] = row.measurements[0]
        for op, modes in table.items():
            cells = []
            for mode in MODES:
                m = modes.get(mode)
                if m is None or m.error:
                    cells += ["failed" if m is not None else "-", "-", "-"]
                else:
                    cells += [_ops(m.ops), _us(m.p50), _us(m.p99)]
            trips = [results.trips.get((backend, mode, op)) for mode in ("sync", "async")]
            trip_text = "/".join("-" if t is None else f"{t:g}" for t in trips)
            lines.append(f"| {op} | " + " | ".join(cells) + f" | {trip_text} |")
        errors = [
            f"{row.mode} {row.op} {m.label}: {m.error}"
            for row in rows
            for m in row.measurements
            if m.error
        ]
        lines.append("")
        if errors:
            lines += ["Errors: " + "; ".join(errors[:10]), ""]
        mine = [r for r in ratios if r["backend"] == backend]
        if mine:
            lines += [
                f"### {display(results, backend)}: against the other contenders",
                "",
                "| mode | operation | authstore µs (median call) | reference | reference µs | ratio | ± | rounds | stable |",
                "|---|---|---:|---|---:|---:|---:|---:|---|",
            ]
            for r in mine:
                lines.append(
                    f"| {r['mode']} | {r['op']} | {_us(r['ours'])} | {r['reference']} | {_us(r['theirs'])} "
                    f"| {r['ratio']:.2f} | {r['error']:.1%} | {r['rounds']} | {'yes' if r['stable'] else '**no**'} |"
                )
            lines.append("")
    lines += [
        "## Settings",
        "",
        "- authstore: default URL options; SQLite in WAL with synchronous=NORMAL. What each "
        "contender ran with, read from its objects in this run (not restated by hand):",
        *(f"  - {name}: {value}" for name, value in results.settings.items()),
        "- Raw drivers: one plain connection each (psycopg autocommit, asyncpg, PyMySQL/aiomysql with multi-statements, "
        "sqlite3/aiosqlite with synchronous=NORMAL on the same file, redis-py, pymemcache/aiomcache, "
        "pymongo/AsyncMongoClient); they replay the recorded requests and fetch the replies, "
        "decoding nothing. On PostgreSQL a second replay goes through the driver's own pool "
        "(psycopg_pool, asyncpg; kind `raw pool`, no goal): what a pool checkout costs, apart "
        "from authstore's own work. The goals use the single connection, the stricter and "
        "fair reference: authstore's runners keep one hot connection out of their pool for "
        "callers that take turns, with no checkout, so the driver's pool (which pays one "
        "every call) would flatter them. A replay whose recorded write changes nothing when "
        "replayed (SQLite's rate-limit compare-and-set: the row has moved on since it was "
        "read) skips the write and its commit that authstore does every call: it is "
        "labelled `write not applied` (kind `raw, write not applied`) and held to no goal.",
        "- Allowed rate-limit hits use a limit of 10^9 per 60 s; refused hits a limit of 1 already spent.",
        *(f"- {note}" for note in dict.fromkeys(results.notes)),
        "",
    ]
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    return "\n".join(lines)


def _repeatability(results: Results) -> list[str]:
    """How many ratios are stable; with an earlier run, how far each one moved."""
    ratios = ratio_rows(results)
    if not ratios:
        return []
    unstable = [r for r in ratios if not r["stable"]]
    lines = [
        "## Repeatability",
        "",
        f"{len(ratios) - len(unstable)} of {len(ratios)} ratios are stable (standard error from "
        f"their rounds' spread at most {STABLE:.1%}); the unstable ones are marked **no** in "
        "the tables below and `(unstable)` in the goals: their rounds disagree, so a second "
        "run may well give a ratio more than 10% away.",
        "",
    ]
    loaded = _loaded(results.facts)
    if loaded:
        lines += [loaded, ""]
    if not results.previous:
        lines += [
            "No earlier run to compare with: `python -m benchmarks --repeat 2` runs the whole "
            "suite twice in a row and compares here; `--compare results.json` compares with an "
            "earlier run's file.",
            "",
        ]
        return lines
    moved = compare(results.previous, ratios)
    flagged = [m for m in moved if m["flagged"]]
    lines += [
        f"Compared with {results.previous_label}: {len(moved) - len(flagged)} of {len(moved)} "
        f"ratios within {MOVED:.0%} of the earlier run's; {len(flagged)} moved further"
        + (":" if flagged else "."),
        "",
    ]
    if flagged:
        lines += [
            "| backend | mode | operation | reference | before | after | moved | stable now |",
            "|---|---|---|---|---:|---:|---:|---|",
        ]
        for m in sorted(flagged, key=lambda m: -abs(m["moved"])):
            lines.append(
                f"| {display(results, m['backend'])} | {m['mode']} | {m['op']} | {m['reference']} "
                f"| {m['before']:.2f} | {m['after']:.2f} | {m['moved']:+.0%} "
                f"| {'yes' if m['stable'] else 'no'} |"
            )
        lines.append("")
    return lines


def _loaded(facts: dict[str, Any]) -> str:
    """A warning when the machine had more runnable work than cores during the run."""
    cores = facts.get("cores") or 1
    loads = [float(facts[key].split()[0]) for key in ("load", "load_end") if facts.get(key)]
    if not loads or max(loads) <= cores:
        return ""
    return (
        f"**The machine was loaded**: load average {' at the start, '.join(f'{x:.1f}' for x in loads)}"
        f"{' at the end' if len(loads) > 1 else ' at the start'} on {cores} cores. Every call "
        "waits for the scheduler to run the server's process and then the client's again, "
        "and a contender that wakes up more often pays more: ratios measured now reflect the "
        "neighbours as much as the library. Repeat on a quiet machine."
    )


def _charts(results: Results, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    backends = list(dict.fromkeys(row.backend for row in results.rows))
    if backends:
        figure, axes = plt.subplots(
            len(backends), 1, figsize=(12, 3.2 * len(backends)), squeeze=False
        )
        for axis, backend in zip(axes[:, 0], backends, strict=True):
            ops = list(dict.fromkeys(r.op for r in results.rows if r.backend == backend))
            width = 0.27
            for k, mode in enumerate(MODES):
                values = []
                for op in ops:
                    m = _find(results, backend, mode, op)
                    values.append(m.ops if m else 0)
                axis.bar([i + (k - 1) * width for i in range(len(ops))], values, width, label=mode)
            axis.set_yscale("log")
            axis.set_title(f"{backend}: ops/s by mode (log scale)")
            axis.set_xticks(range(len(ops)))
            axis.set_xticklabels(ops, rotation=30, ha="right", fontsize=7)
            axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(out / "modes.png", dpi=80)
        plt.close(figure)
        made.append("modes.png")
    made += _ratio_charts(results, out, plt)
    if results.latency:
        figure, axis = plt.subplots(figsize=(10, 4))
        labels = [f"{e['backend']} {e['op']}" for e in results.latency]
        xs = range(len(labels))
        axis.bar([x - 0.2 for x in xs], [e["sync"] for e in results.latency], 0.4, label="sync")
        axis.bar(
            [x + 0.2 for x in xs], [e["async"] for e in results.latency], 0.4, label="async x100"
        )
        axis.set_xticks(list(xs))
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
        axis.set_yscale("log")
        axis.set_title("ops/s with the server 1 ms away")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / "latency.png", dpi=80)
        plt.close(figure)
        made.append("latency.png")
    return made


def _goal_of(r: dict[str, Any]) -> float | None:
    """The ratio's goal (see ``goals``): the raw driver's 1.15 (SQLite's 1.3), a peer's
    1.0 (the memory store's 1.5); authstore's own cache get (a never-analyzed table's
    session get) 1 / 0.8, its analyzed twin (no goal) the same time within 1.15; None
    for a replay whose write applies nothing (``raw.NOT_APPLIED``: not the same work)."""
    if r["kind"] == NOT_APPLIED:
        return None
    if r["kind"] == "baseline":
        return 1 / UNANALYZED_GOAL
    if r["kind"] == "analyzed twin":
        return 1.15
    if r["kind"].startswith("raw"):
        return 1.3 if r["backend"] == "sqlite" else 1.15
    return 1.5 if r["backend"] == "memory" else 1.0


def _colour(ratio: float, goal: float | None) -> str:
    if goal is None:
        return "tab:gray"
    return "tab:green" if ratio <= goal else "tab:red"


def _ratio_charts(results: Results, out: Path, plt: Any) -> list[str]:
    """One chart per backend (``ratios-<backend>.png``): a bar per ratio, its standard
    error as a whisker, a colour for within or over its goal, hatched when unstable."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter

    made = []
    ratios = ratio_rows(results)
    for backend in dict.fromkeys(r["backend"] for r in ratios):
        mine = [r for r in ratios if r["backend"] == backend]
        height = 2.2 + 0.3 * len(mine)
        figure, axis = plt.subplots(figsize=(12, height))
        values = [r["ratio"] for r in mine]
        colors = [_colour(r["ratio"], _goal_of(r)) for r in mine]
        bars = axis.barh(
            range(len(mine)),
            values,
            xerr=[r["ratio"] * r["error"] for r in mine],
            color=colors,
            error_kw={"elinewidth": 1, "capsize": 2},
        )
        for bar, r in zip(bars, mine, strict=True):
            if not r["stable"]:
                bar.set_hatch("///")
                bar.set_edgecolor("black")
        axis.axvline(1.0, color="black", linewidth=1)
        axis.axvline(1.15, color="tab:blue", linestyle="--", linewidth=1)
        axis.set_yticks(range(len(mine)))
        axis.set_yticklabels(
            [f"{r['mode']} {r['op']} vs {r['reference']}" for r in mine], fontsize=9
        )
        axis.invert_yaxis()
        axis.set_xscale("log")
        low = min(0.5, *(v * (1 - r["error"]) for v, r in zip(values, mine, strict=True)))
        high = max(2.0, *(v * (1 + r["error"]) for v, r in zip(values, mine, strict=True)))
        ticks = [
            t
            for t in (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 10, 20, 50, 100)
            if low <= t * 1.5 and t <= high * 1.5
        ]
        axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("authstore's time / the other's (log scale; below 1: authstore faster)")
        figure.suptitle(
            f"{display(results, backend)}: authstore against the raw driver and peers",
            fontsize=12,
            y=1 - 0.1 / height,
        )
        figure.legend(
            handles=[
                Patch(
                    color="tab:green",
                    label="within its goal (raw 1.15, SQLite raw 1.3; peer 1.0, memory 1.5)",
                ),
                Patch(color="tab:red", label="over its goal"),
                Patch(color="tab:gray", label="no goal: the replay's write applies nothing"),
                Patch(facecolor="white", edgecolor="black", hatch="///", label="unstable"),
                Line2D([], [], color="black", label="1.0: the same time"),
                Line2D([], [], color="tab:blue", linestyle="--", label="1.15: raw-driver goal"),
                Line2D([], [], color="black", marker="|", linestyle="", label="± standard error"),
            ],
            fontsize=9,
            ncol=3,
            loc="upper center",
            bbox_to_anchor=(0.5, 1 - 0.45 / height),
            frameon=False,
        )
        figure.tight_layout(rect=(0, 0, 1, 1 - 1.0 / height))
        name = f"ratios-{backend}.png"
        figure.savefig(out / name, dpi=90)
        plt.close(figure)
        made.append(name)
    return made


def _json(results: Results) -> dict[str, Any]:
    return {
        "budget": results.budget,
        "seconds": results.seconds,
        "facts": results.facts,
        "rows": [
            {
                "backend": row.backend,
                "mode": row.mode,
                "op": row.op,
                "measurements": [
                    {
                        k: getattr(m, k)
                        for k in (
                            "label",
                            "kind",
                            "note",
                            "seconds_per_op",
                            "ops",
                            "p50",
                            "p99",
                            "calls",
                            "error",
                            "rounds",
                        )
                    }
                    for m in row.measurements
                ],
            }
            for row in results.rows
        ],
        "round_trips": [
            {"backend": b, "mode": m, "op": op, "trips": t}
            for (b, m, op), t in results.trips.items()
        ],
        "ratios": ratio_rows(results),
        "comparison": {
            "with": results.previous_label,
            "ratios": compare(results.previous, ratio_rows(results)),
        },
        "settings": results.settings,
        "latency": results.latency,
        "probes": results.probes,
        "proxy_round_trip": results.proxy_rtt,
        "goals": goals(results),
        "notes": results.notes,
        "skipped": results.skipped,
        "failures": results.failures,
    }


def _verdict(goal: dict[str, Any]) -> str:
    if goal["met"] is None:
        return "not measured"
    if goal["met"]:
        return f"met ({goal['measured']} checks)"
    return (
        f"missed in {len(goal['misses'])} of {goal['measured']} checks (worst: {goal['misses'][0]})"
    )


HEADLINE = ("cache get", "fixed_window allowed", "session get")


def _summary(results: Results) -> str:
    facts = results.facts
    lines = [
        START,
        f"Last full run: {facts['date']} on {facts['cpu']} ({facts['cores']} cores, load average "
        f"{facts['load'].split()[0]} at the start: the machine was shared), {facts['python']}; "
        "the full report with every operation, the raw-driver and peer ratios and charts: "
        "[benchmarks/results/report.md](../benchmarks/results/report.md).",
        "",
        "| backend | " + " | ".join(f"{op} sync / async x100 ops/s" for op in HEADLINE) + " |",
        "|---|" + "---:|" * len(HEADLINE),
    ]
    for backend in dict.fromkeys(row.backend for row in results.rows if row.backend in NAMES):
        cells = []
        for op in HEADLINE:
            one, many = _find(results, backend, "sync", op), _find(results, backend, "async100", op)
            cells.append(f"{_ops(one.ops) if one else '-'} / {_ops(many.ops) if many else '-'}")
        lines.append(f"| {display(results, backend)} | " + " | ".join(cells) + " |")
    lines += ["", "| goal | result |", "|---|---|"]
    for g in goals(results):
        lines.append(f"| {g['goal']} | {_verdict(g)} |")
    lines.append(END)
    return "\n".join(lines)


def replace_summary(page: Path, summary: str) -> bool:
    """Put ``summary`` (markers included) in place of the block between the markers of
    ``page``; False, and nothing written, when the page or either marker is missing."""
    if not page.exists():
        return False
    text = page.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return False
    pattern = re.escape(START) + ".*?" + re.escape(END)
    page.write_text(re.sub(pattern, lambda _: summary, text, flags=re.S), encoding="utf-8")
    return True


def write(results: Results, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("ratios*.png"), out / "modes.png", out / "latency.png"]:
        stale.unlink(missing_ok=True)  # charts of an earlier run
    charts = (
        _charts(results, out)
        if results.budget != "smoke" or os.environ.get("AUTHSTORE_BENCH_CHARTS")
        else []
    )
    path = out / "report.md"
    path.write_text(_markdown(results, charts) + "\n")
    (out / "results.json").write_text(json.dumps(_json(results), indent=1, default=str) + "\n")
    if out.resolve() == DEFAULT_OUT.resolve() and results.budget == "full":
        replace_summary(SUMMARY_PAGE, _summary(results))
    return path
