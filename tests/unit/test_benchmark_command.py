"""``python -m benchmarks`` keeps working: a smoke run (one call per contender, nothing
timed) on memory and SQLite, and the sections that measure no backend (crypto,
observability, the FastAPI example), writes a well-formed report. Numbers are not
checked, except the memory store's bound (a goal the smoke run can judge)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.suite import report, session
from benchmarks.suite.ops import OPS

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
        if mode == "async100" or not op.concurrent_only
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
    assert [note for note in results["notes"] if "no raw" in note] == []
    goals = {goal["goal"]: goal for goal in results["goals"]}
    assert any("SQLite within 1.3x" in goal for goal in goals)
    bound = next(goal for name, goal in goals.items() if name.startswith("memory store bounded"))
    # Measured and reported; whether it is met is the benchmark's answer (a timed probe
    # on a loaded machine), not this test's: tests/unit/test_fast_paths.py proves the
    # sweep itself on a fake clock.
    assert bound["measured"] == 1 and isinstance(bound["met"], bool)
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
    assert [note for note in results["notes"] if "no raw" in note] == []
    replayed = {
        (row["backend"], row["mode"])
        for row in results["rows"]
        for m in row["measurements"]
        if m["kind"] == "raw" and m["error"] is None
    }
    assert replayed >= {(b, m) for b in ("redis", "postgresql") for m in ("sync", "async")}
    pooled = {
        (row["backend"], row["mode"])
        for row in results["rows"]
        for m in row["measurements"]
        if m["kind"] == "raw pool" and m["error"] is None
    }
    assert pooled == {("postgresql", "sync"), ("postgresql", "async")}
    unanalyzed = [g for g in results["goals"] if "never-analyzed" in g["goal"]]
    assert [g["measured"] for g in unanalyzed] == [1]  # its own table, bulk-filled


def test_smoke_run_measures_the_sections_without_a_backend(tmp_path: Path) -> None:
    """crypto, observability and the FastAPI example: each row has its reference."""
    _smoke(tmp_path, ["crypto", "observability", "examples"], timeout=200)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["failures"] == []
    rows = {(row["backend"], row["mode"], row["op"]): row for row in results["rows"]}
    expected = {
        ("crypto", "sync", "encrypt"): ["authstore", "cryptography AESGCM, same work"],
        ("crypto", "sync", "reencrypt"): ["authstore", "cryptography AESGCM, same work"],
        ("crypto", "async100", "decrypt"): ["authstore", "SecretBox inline on the loop"],
        ("observability", "sync", "fixed_window allowed"): [
            "authstore",
            "instrumented, no SDK",
            "instrumented, SDK with in-memory exporters",
        ],
        ("FastAPI example on sqlite", "async", "session check"): ["authstore", "/ping (no store)"],
        ("FastAPI example on sqlite", "async100", "magic-link verify"): [
            "authstore",
            "/ping (no store)",
        ],
    }
    for key, labels in expected.items():
        assert [m["label"] for m in rows[key]["measurements"]] == labels, key
        assert all(m["error"] is None and m["ops"] > 0 for m in rows[key]["measurements"]), key
    probes = [probe["probe"] for probe in results["probes"]]
    assert sum("ticker" in probe for probe in probes) == 3
    # the backend goals judge backends only: no section here counts as a raw or peer check
    assert all(goal["measured"] == 0 for goal in results["goals"])


def test_smoke_and_quick_runs_leave_the_committed_report_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out only a full run writes benchmarks/results/; the others write scratch/."""
    committed, scratch = tmp_path / "results", tmp_path / "results" / "scratch"
    monkeypatch.setattr(session, "RESULTS", committed)
    monkeypatch.setattr(session, "SCRATCH", scratch)
    written: list[tuple[str, Path]] = []
    monkeypatch.setattr(report, "write", lambda results, out: written.append((results.budget, out)))
    for speed in ("--smoke", "--quick"):
        assert session.main([speed, "--no-proxy", "crypto"]) == 0
    assert written == [("smoke", scratch), ("quick", scratch)]
    assert "scratch/" in (ROOT / "benchmarks" / "results" / ".gitignore").read_text().split()
