"""The report: ``report.md`` (tables, goals met or missed), ``results.json`` (every
number), PNG charts, and the summary between the benchmark markers of docs/performance.md."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.suite.memory_bound import GROWTH_LIMIT
from benchmarks.suite.ops import OPS
from benchmarks.suite.targets import NAMES, NETWORK

if TYPE_CHECKING:
    from benchmarks.suite.session import Results, Row

__all__ = ["goals", "replace_summary", "write"]

SUMMARY_PAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "performance.md"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results"
START, END = "<!-- benchmark summary: start -->", "<!-- benchmark summary: end -->"
ONE_TRIP = ("postgresql", "mariadb", "redis", "mongodb")
MODES = ("sync", "async", "async100")
SINGLE = {op.name for op in OPS if op.single}


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}" if seconds else "-"


def _ops(value: float) -> str:
    return f"{value:,.0f}" if value else "-"


def _ratios(results: Results) -> list[dict[str, Any]]:
    """authstore's time over each other contender's, per row."""
    found = []
    for row in results.rows:
        ours, *others = row.measurements
        for other in others:
            if ours.error or other.error or not other.seconds_per_op:
                continue
            found.append(
                {
                    "backend": row.backend,
                    "mode": row.mode,
                    "op": row.op,
                    "kind": other.kind,
                    "reference": other.label,
                    "ours": ours.seconds_per_op,
                    "theirs": other.seconds_per_op,
                    "ratio": ours.seconds_per_op / other.seconds_per_op,
                }
            )
    return found


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
            (f"{r['mode']} {r['op']} vs {r['reference']}", r["ratio"], r["ratio"] <= 1.5)
            for r in ratios
            if r["backend"] == "memory" and r["kind"] == "peer"
        ],
        "time ratio <= 1.5",
    )
    goal(
        "SQLite within 1.3x of sqlite3 running the same SQL",
        [
            (f"{r['op']}", r["ratio"], r["ratio"] <= 1.3)
            for r in ratios
            if r["backend"] == "sqlite" and r["kind"] == "raw" and r["mode"] == "sync"
        ],
        "time ratio <= 1.3",
    )
    goal(
        "refused SQLite hits at least as fast as pyrate-limiter",
        [
            (f"{r['op']}", r["ratio"], r["ratio"] <= 1.0)
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
        "every network operation within 1.15x of the raw driver, sync and async",
        [
            (f"{r['backend']} {r['mode']} {r['op']}", r["ratio"], r["ratio"] <= 1.15)
            for r in ratios
            if r["kind"] == "raw" and r["backend"] in NETWORK
        ],
        "time ratio <= 1.15",
    )
    goal(
        "at least as fast as the peers on the same server",
        [
            (
                f"{r['backend']} {r['mode']} {r['op']} vs {r['reference']}",
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
            (f"{e['backend']} {e['op']}", e["ratio"], e["ratio"] >= 5)
            for e in results.latency
            if not e["error"]
        ],
        "throughput ratio >= 5",
    )
    goal(
        "one round trip per single-record operation (Redis, PostgreSQL, MySQL, MongoDB)",
        [
            (f"{b} {m} {op}", trips, trips <= 1.0)
            for (b, m, op), trips in results.trips.items()
            if b in ONE_TRIP and op in SINGLE
        ],
        "round trips <= 1 (counted on the wire)",
    )
    return out


def _mark(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**missed**")


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
        "",
        "How it measures: the contenders of one operation (authstore, the raw driver replaying "
        "the very requests authstore sends, the peers) run in rounds of calibrated length, cut "
        "into slices that alternate between them, so load from other processes hits them alike. "
        "A round's sample is its mean time per call leaving out the slowest 5% of calls (this "
        "2-core machine is shared; other processes take the CPU for milliseconds at a time); the "
        "median sample over the rounds gives ops/s and the ratios; p50/p99 come from every call. "
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
                f"| {e['backend']} | {e['op']} | {_ops(e['sync'])} | {_us(e['sync_p99'])} | {_ops(e['async'])} | "
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
            f"## {backend}",
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
                f"### {backend}: against the other contenders",
                "",
                "| mode | operation | authstore µs | reference | reference µs | ratio |",
                "|---|---|---:|---|---:|---:|",
            ]
            for r in mine:
                lines.append(
                    f"| {r['mode']} | {r['op']} | {_us(r['ours'])} | {r['reference']} | {_us(r['theirs'])} | {r['ratio']:.2f} |"
                )
            lines.append("")
    lines += [
        "## Settings",
        "",
        "- authstore: default URL options (pool sizes: PostgreSQL, MariaDB, MongoDB and memcached 10, Redis 50); SQLite in WAL with synchronous=NORMAL.",
        "- Raw drivers: one plain connection each (psycopg autocommit, asyncpg, PyMySQL/aiomysql with multi-statements, "
        "sqlite3/aiosqlite with synchronous=NORMAL on the same file, redis-py, pymongo/AsyncMongoClient); "
        "they replay the recorded requests and fetch the replies, decoding nothing. On PostgreSQL "
        "a second replay goes through the driver's own pool of 10 (psycopg_pool, asyncpg; kind "
        "`raw pool`, no goal): what a pool checkout costs, apart from authstore's own work.",
        "- Allowed rate-limit hits use a limit of 10^9 per 60 s; refused hits a limit of 1 already spent.",
        *(f"- {note}" for note in dict.fromkeys(results.notes)),
        "",
    ]
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    return "\n".join(lines)


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
    ratios = _ratios(results)
    if ratios:
        figure, axis = plt.subplots(figsize=(10, max(3, 0.18 * len(ratios))))
        labels = [f"{r['backend']} {r['mode']} {r['op']} vs {r['reference']}" for r in ratios]
        values = [r["ratio"] for r in ratios]
        colors = [
            "tab:green" if v <= (1.15 if r["kind"].startswith("raw") else 1.0) else "tab:red"
            for v, r in zip(values, ratios, strict=True)
        ]
        axis.barh(range(len(values)), values, color=colors)
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.axvline(1.15, color="grey", linestyle="--", linewidth=0.8)
        axis.set_yticks(range(len(values)))
        axis.set_yticklabels(labels, fontsize=6)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_title("authstore time / other's time (below 1: authstore faster)")
        figure.tight_layout()
        figure.savefig(out / "ratios.png", dpi=80)
        plt.close(figure)
        made.append("ratios.png")
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
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
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
    for stale in ("modes.png", "ratios.png", "latency.png"):  # charts of an earlier run
        (out / stale).unlink(missing_ok=True)
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
