"""The benchmark report tells the truth about its numbers: a ratio comes with its spread
and is marked unstable when its rounds disagree, two runs' ratios are compared and the
ones that moved are flagged, settings are read from the objects, the MongoDB stand-in
is named, and the ratio charts are one per backend with a legend. No server, no timing:
the measurements are made up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import authstore
from authstore.adapters.common.settings import SQL_POOL_SIZE
from benchmarks.suite import report, unanalyzed
from benchmarks.suite.measure import Measurement, ratio_of
from benchmarks.suite.session import Results, Row
from benchmarks.suite.settings import describe_store

FACTS = {
    "date": "today",
    "cpu": "a CPU",
    "cores": 2,
    "load": "0.1 0.1 0.1",
    "platform": "Linux",
    "python": "3",
    "servers": {"mongodb": "secantusdb 0.7 (a MongoDB stand-in written in Python)"},
    "packages": {},
}


def _m(label: str, kind: str, rounds: list[float]) -> Measurement:
    m = Measurement(label, kind, "")
    m.finish(rounds)
    return m


def _results(steady: list[float], noisy: list[float]) -> Results:
    ours = [100e-6] * len(steady)
    results = Results("smoke", dict(FACTS))  # a smoke run draws no charts: fast
    results.rows = [
        Row(
            "redis",
            "sync",
            "cache get",
            [_m("authstore", "authstore", ours), _m("redis-py", "raw", steady)],
        ),
        Row(
            "mongodb",
            "sync",
            "cache get",
            [_m("authstore", "authstore", ours), _m("pymongo", "raw", noisy)],
        ),
    ]
    return results


STEADY = [100e-6, 101e-6, 99e-6, 100e-6, 100.5e-6, 99.5e-6, 100e-6]
NOISY = [25e-6, 100e-6, 45e-6, 200e-6, 50e-6, 15e-6, 75e-6]


def test_a_ratio_is_the_median_of_paired_rounds_with_its_error() -> None:
    # the same load hit both contenders in each round: the pairs agree, the ratio is 0.5
    # although each contender's own time varies fourfold over the rounds
    ours = [1.0, 2.0, 4.0, 1.0, 2.0]
    theirs = [2.0, 4.0, 8.0, 2.0, 4.0]
    paired = ratio_of(ours, theirs)
    assert paired.value == pytest.approx(0.5) and paired.error == 0 and paired.rounds == 5
    loose = ratio_of([1.0] * 7, [1.0, 2.0, 0.5, 1.0, 3.0, 0.4, 1.0])
    assert loose.error > report.STABLE
    assert ratio_of([], []).rounds == 0


def test_unstable_ratios_are_marked_in_tables_goals_and_json(tmp_path: Path) -> None:
    results = _results(STEADY, NOISY)
    rows = {r["backend"]: r for r in report.ratio_rows(results)}
    assert rows["redis"]["stable"] and not rows["mongodb"]["stable"]
    path = report.write(results, tmp_path)
    text = path.read_text()
    assert "| sync | cache get | 100.0 | redis-py |" in text
    line = next(x for x in text.splitlines() if "| pymongo |" in x)
    assert line.endswith("| 7 | **no** |"), line
    assert "1 of 2 ratios are stable" in text
    goals = json.loads((tmp_path / "results.json").read_text())["goals"]
    raw = next(g for g in goals if g["goal"].startswith("every network operation"))
    assert any("(unstable" in miss for miss in raw["misses"]), raw


def test_a_second_run_is_compared_and_moved_ratios_flagged(tmp_path: Path) -> None:
    first = _results(STEADY, NOISY)
    second = _results([x * 1.05 for x in STEADY], [x * 1.5 for x in NOISY])
    second.previous = report.ratio_rows(first)
    second.previous_label = "run 1 of 2"
    moved = {m["backend"]: m for m in report.compare(second.previous, report.ratio_rows(second))}
    assert not moved["redis"]["flagged"] and moved["mongodb"]["flagged"]
    text = report.write(second, tmp_path).read_text()
    assert "Compared with run 1 of 2: 1 of 2 ratios within 10%" in text
    flagged = [x for x in text.splitlines() if x.startswith("| mongodb (secantusdb")]
    assert any("| pymongo | 2.00 | 1.33 | -33% |" in x for x in flagged), flagged


def test_repeat_runs_everything_again_and_compares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.suite import session

    made: list[Results] = []

    def run(options: object, name: str) -> Results:
        made.append(_results(STEADY, NOISY if not made else [x * 2 for x in NOISY]))
        return made[-1]

    monkeypatch.setattr(session, "_run", run)
    assert session.main(["--quick", "--repeat", "2", "--out", str(tmp_path)]) == 0
    assert len(made) == 2
    assert (tmp_path / "run1" / "report.md").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["comparison"]["with"].startswith("run 1 of 2")
    flagged = [m for m in data["comparison"]["ratios"] if m["flagged"]]
    assert [m["backend"] for m in flagged] == ["mongodb"]
    # and --compare reads an earlier results.json
    made.clear()
    out = tmp_path / "again"
    assert (
        session.main(["--quick", "--compare", str(tmp_path / "results.json"), "--out", str(out)])
        == 0
    )
    again = json.loads((out / "results.json").read_text())["comparison"]
    assert again["with"] == str(tmp_path / "results.json") and len(again["ratios"]) == 2


def test_settings_come_from_the_objects() -> None:
    """The SQL servers' pool size is what authstore's settings say (the report once
    said 10 where the code's default was 20): read from an opened store, no I/O."""
    for url in ("postgresql://u@127.0.0.1:1/db", "mysql://u@127.0.0.1:1/db"):
        store = authstore.open_cache(url)
        try:
            assert f"pool_size {SQL_POOL_SIZE}," in describe_store(store)
        finally:
            store.close()
    results = _results(STEADY, NOISY)
    results.settings["postgresql sync: authstore"] = "SyncPostgresRunner, pool_size 20"
    text = report._markdown(results, [])
    assert "  - postgresql sync: authstore: SyncPostgresRunner, pool_size 20" in text
    assert "pool sizes: PostgreSQL, MariaDB" not in text


def test_ratio_charts_are_one_per_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "ratios.png").write_bytes(b"stale")
    results = _results(STEADY, NOISY)
    results.budget = "quick"
    report.write(results, tmp_path)
    charts = sorted(p.name for p in tmp_path.glob("ratios*.png"))
    assert charts == ["ratios-mongodb.png", "ratios-redis.png"]
    text = (tmp_path / "report.md").read_text()
    assert "![ratios-redis.png](ratios-redis.png)" in text


def test_a_loaded_machine_is_said() -> None:
    results = _results(STEADY, NOISY)
    assert "The machine was loaded" not in report._markdown(results, [])
    results.facts["load_end"] = "9.50 8.00 7.00"
    text = report._markdown(results, [])
    assert "load average 0.1 at the start, 9.5 at the end on 2 cores" in text


def test_the_never_analyzed_session_get_goal_reads_its_row() -> None:
    """Session get's throughput over cache get's on the never-analyzed table: met at
    0.8x or more, missed below (shown as a throughput ratio), unstable marked, not
    measured without the row."""
    name = "PostgreSQL session get on a never-analyzed table at least 0.8x cache get's throughput"

    def judged(session: list[float], cache: list[float]) -> dict[str, object]:
        results = Results("quick", dict(FACTS))
        results.rows = [
            Row(
                "postgresql",
                "sync",
                unanalyzed.OP,
                [
                    _m("authstore", "authstore", session),
                    _m("cache get", "baseline", cache),
                    _m(unanalyzed.TWIN, "analyzed twin", [50e-6] * 7),  # no goal of its own
                ],
            )
        ]
        return next(g for g in report.goals(results) if g["goal"] == name)

    cache = [100e-6] * 7
    assert judged([120e-6] * 7, cache)["met"] is True  # 0.83x
    missed = judged([150e-6] * 7, cache)  # 0.67x: an index the planner passes over
    assert missed["met"] is False
    assert missed["misses"] == [f"sync {unanalyzed.OP}: 0.67"]
    noisy = judged([150e-6, 300e-6, 100e-6, 150e-6, 450e-6, 120e-6, 150e-6], cache)
    assert noisy["misses"][0].startswith(f"sync {unanalyzed.OP} (unstable")
    empty = next(g for g in report.goals(_results(STEADY, STEADY)) if g["goal"] == name)
    assert empty["met"] is None
