"""The in-memory store's bound: keys written once with a short TTL and never read again
(one-off rate-limit keys, per-request values) must not pile up.

The store is written to without pause for two equal halves of the probe's time while
``tracemalloc`` follows the memory it holds. Bounded, the first half fills it to its
steady size (live keys: write rate times TTL) and the second half adds nearly nothing;
unbounded, the second half adds as much as the first.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import TYPE_CHECKING

import authstore

if TYPE_CHECKING:
    from benchmarks.suite.session import Results

__all__ = ["GROWTH_LIMIT", "measure_memory_bound"]

GROWTH_LIMIT = 0.5
"""Second half's growth over the first's: above it, expired keys are piling up."""


def measure_memory_bound(seconds: float, results: Results) -> None:
    ttl = seconds / 15
    cache = authstore.open_cache("memory://bench-memory-bound")
    payload = b"x" * 100
    written = 0
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        sizes = []
        for _half in range(2):
            deadline = time.monotonic() + seconds / 2
            while time.monotonic() < deadline:
                for _ in range(200):
                    cache.set(f"once:{written}", payload, ttl=ttl)
                    written += 1
            sizes.append(tracemalloc.get_traced_memory()[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        cache.close()
    first, second = sizes[0] - start, sizes[1] - sizes[0]
    growth = max(second, 0) / first if first > 0 else 0.0
    results.probes.append(
        {
            "probe": "memory: keys written once with a short TTL, never read",
            "value": growth,
            "unit": "second half's growth / first half's",
            "limit": GROWTH_LIMIT,
            "detail": f"{written:,} keys (ttl {ttl * 1e3:.0f} ms) in {seconds:g} s; "
            f"held {first / 1e6:.2f} MB after the first half, {(sizes[1] - start) / 1e6:.2f} MB "
            f"after the second, peak {(peak - start) / 1e6:.2f} MB",
        }
    )
