"""A raw replay is held to a goal only when it does authstore's work: a recorded
compare-and-set write that applies nothing once replayed (SQLite's rate limiters: the
row has moved on since it was recorded) skips the write and the commit authstore does
on every call. Such a replay is labelled and kept out of the goals. Real SQLite files,
sync and async, through the benchmark's own stores and replays."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from benchmarks.suite import report
from benchmarks.suite.measure import Measurement
from benchmarks.suite.ops import contenders, run_async, run_sync, seed
from benchmarks.suite.raw import NOT_APPLIED, open_raw
from benchmarks.suite.session import Results, Row
from benchmarks.suite.targets import Target, close_stores, open_stores

ALLOWED = ("fixed_window allowed", "sliding_window allowed", "gcra allowed")
SAME_WORK = ("cache get", "cache set", "cache incr", "fixed_window refused", "session touch")


def _replays(path: Path, asynchronous: bool) -> dict[str, Any]:
    url = f"sqlite:///{path}"
    target = Target("sqlite", url, url, "replays")

    async def made() -> dict[str, Any]:
        stores = open_stores(url, target.stores, asynchronous)
        raw: Any = open_raw(target, asynchronous)
        try:
            if asynchronous:
                raw = await raw
                await run_async(seed(stores, 1))
            else:
                run_sync(seed(stores, 1))
            ours = contenders(stores, 1)
            found = {}
            for name in (*ALLOWED, *SAME_WORK):
                store = stores.sessions if name.startswith("session") else stores.cache
                replay = raw.contender(store, ours[name].call)
                found[name] = await replay if asynchronous else replay
            return found
        finally:
            closing = close_stores(stores)
            if asynchronous:
                await closing
                await raw.close()
            else:
                raw.close()

    return asyncio.run(made())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_replayed_write_that_applies_nothing_is_labelled(
    tmp_path: Path, asynchronous: bool
) -> None:
    replays = _replays(tmp_path / "bench.db", asynchronous)
    for name in ALLOWED:
        assert replays[name].kind == NOT_APPLIED, name
        assert replays[name].label.endswith(", write not applied"), name
    for name in SAME_WORK:
        assert replays[name].kind == "raw", name
        assert "write not applied" not in replays[name].label, name


def test_a_replay_whose_write_applies_nothing_has_no_goal() -> None:
    def measured(label: str, kind: str, seconds: float) -> Measurement:
        m = Measurement(label, kind, "")
        m.finish([seconds] * 5)
        return m

    results = Results("smoke", {})
    results.rows = [
        Row(
            "sqlite",
            "sync",
            "fixed_window allowed",
            [
                measured("authstore", "authstore", 30e-6),
                measured("sqlite3, same SQL, write not applied", NOT_APPLIED, 10e-6),
            ],
        ),
        Row(
            "sqlite",
            "sync",
            "cache get",
            [measured("authstore", "authstore", 6e-6), measured("sqlite3", "raw", 4e-6)],
        ),
    ]
    (sqlite,) = [g for g in report.goals(results) if g["goal"].startswith("SQLite within")]
    assert (sqlite["measured"], sqlite["misses"]) == (1, ["cache get: 1.50"])
    assert [report._goal_of(r) for r in report.ratio_rows(results)] == [None, 1.3]
