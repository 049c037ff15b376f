"""The in-memory store's bound: keys written once with a short TTL and never read again
(one-off rate-limit keys, per-request values) must not pile up.

The store is written to for two equal halves, a new key each time, while ``tracemalloc``
follows the memory it holds. Bounded, the first half fills it to its steady size (the
keys of one TTL) and the second half adds nothing; unbounded, the second half adds as
much as the first.

The store's clock is driven by the probe: each write moves it on by the same step
(``KEYS_PER_TTL`` writes a TTL), so the keys alive at any write, and every sweep, are
the same from one run to the next, whatever the machine's load. On the wall clock the
probe measured how fast the machine wrote as much as the bound (a half written faster
held more live keys), and gave 0.35 and 0.73 in two runs in a row. Each half is compared
by its peak (the most the store held in it): where a half ends in the store's sweep and
resize cycles does not count either.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import TYPE_CHECKING

import authstore

if TYPE_CHECKING:
    from benchmarks.suite.session import Results

__all__ = ["GROWTH_LIMIT", "KEYS_PER_TTL", "measure_memory_bound"]

GROWTH_LIMIT = 0.5
"""Second half's growth over the first's: above it, expired keys are piling up."""

KEYS_PER_TTL = 1000
"""Writes in one TTL of the store's clock: the keys alive at once when the store is
bounded."""


def measure_memory_bound(seconds: float, results: Results) -> None:
    """``seconds`` sets the size of the probe (3: 15 TTLs a half, 30,000 writes), not
    its duration: the clock is the probe's."""
    ttls = max(2, round(seconds * 5))
    ttl = 60.0
    step = ttl / KEYS_PER_TTL
    moment = [time.time()]
    cache = authstore.open_cache("memory://")
    cache._logic.ops.data.clock = lambda: moment[0]  # type: ignore[attr-defined]
    payload = b"x" * 100
    written = 0
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        peaks = []
        for _half in range(2):
            tracemalloc.reset_peak()
            for _ in range(ttls * KEYS_PER_TTL):
                cache.set(f"once:{written}", payload, ttl=ttl)
                written += 1
                moment[0] += step
            peaks.append(tracemalloc.get_traced_memory()[1])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        cache.close()
    first, second = peaks[0] - start, peaks[1] - peaks[0]
    growth = max(second, 0) / first if first > 0 else 0.0
    results.probes.append(
        {
            "probe": "memory: keys written once with a short TTL, never read",
            "value": growth,
            "unit": "second half's growth / first half's",
            "limit": GROWTH_LIMIT,
            "detail": f"{written:,} keys, {KEYS_PER_TTL:,} a TTL of the store's clock "
            f"(driven by the probe: {ttls} TTLs a half); peak held {first / 1e6:.2f} MB "
            f"in the first half, {(peaks[1] - start) / 1e6:.2f} MB in the second; "
            f"{(held - start) / 1e6:.2f} MB at the end",
        }
    )
