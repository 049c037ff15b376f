"""``python -m benchmarks`` keeps working: a smoke run (one call per contender, nothing
timed) on memory and SQLite writes a well-formed report. Numbers are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _smoke(out: Path, sections: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks --smoke`` over ``sections``, its files written to ``out``."""
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--no-proxy", *sections]
    done = subprocess.run(
        [*command, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_smoke_run_writes_a_report(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.suite.ops import OPS
    finally:
        sys.path.remove(str(ROOT))
    done = _smoke(tmp_path, ["memory", "sqlite"], timeout=110)
    assert "memory sync" in done.stderr  # progress goes to stderr
    report = (tmp_path / "report.md").read_text()
    for heading in ("# authstore benchmark report", "## Goals", "## memory", "## sqlite"):
        assert heading in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["failures"] == []
    measured = {(row["backend"], row["mode"], row["op"]) for row in results["rows"]}
    expected = {
        (backend, mode, op.name)
        for backend in ("memory", "sqlite")
        for mode in ("sync", "async", "async100")
        for op in OPS
    }
    assert measured == expected
    for row in results["rows"]:
        ours = row["measurements"][0]
        assert ours["label"] == "authstore"
        assert ours["error"] is None, (row["backend"], row["mode"], row["op"], ours["error"])
        assert ours["ops"] > 0
    sqlite_raw = [
        row for row in results["rows"] if row["backend"] == "sqlite" and row["mode"] == "sync"
    ]
    assert any(m["kind"] == "raw" for row in sqlite_raw for m in row["measurements"])
    assert [note for note in results["notes"] if "no raw replay" in note] == []
    goals = {goal["goal"] for goal in results["goals"]}
    assert any("SQLite within 1.3x" in goal for goal in goals)
    # each row of a markdown table has as many cells as its header
    for block in report.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if lines:
            assert {line.count("|") for line in lines} == {lines[0].count("|")}, block


def test_authstore_bench_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "authstore", "bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "python -m benchmarks" in done.stdout
    assert "--quick" in done.stdout


def test_smoke_run_replays_the_raw_driver_on_the_servers(tmp_path: Path) -> None:
    """The raw replays rebuild authstore's own requests from its runners' internals: a
    runner change must not silently turn "vs raw driver" into "no raw replay"."""
    _smoke(tmp_path, ["redis", "postgresql"], timeout=300)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [note for note in results["notes"] if "no raw replay" in note] == []
    replayed = {
        (row["backend"], row["mode"])
        for row in results["rows"]
        for m in row["measurements"]
        if m["kind"] == "raw" and m["error"] is None
    }
    assert replayed >= {(b, m) for b in ("redis", "postgresql") for m in ("sync", "async")}
