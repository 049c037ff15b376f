"""``python -m benchmarks.postgres_replication [rounds] [calls]``: what synchronous
replication costs a revocation, on a private PostgreSQL primary and its streaming
standby (tests/private_servers.py, as tests/postgres/test_failover.py makes them).

One sync store, opened once with the pair's multi-host URL, calls ``add_to_blacklist``
``calls`` times in a row under each replication setting in turn, the order alternating
from round to round (interleaved, so a neighbour's load hits every setting alike):
asynchronous replication, ``synchronous_commit = on`` (the standby flushed the commit's
WAL) and ``remote_apply`` (it replayed it). Prints each setting's median and p99 per
call, and its median's ratio to asynchronous replication's in the same round.
"""

from __future__ import annotations

import statistics
import sys
import time

from authstore import registry
from tests.private_servers import PostgresPair

SETTINGS = {"async": (False, "on"), "on": (True, "on"), "remote_apply": (True, "remote_apply")}


def main(rounds: int = 5, calls: int = 400) -> None:
    pair = PostgresPair()
    try:
        pair.start()
        url = pair.url(timeout=5, pool_size=2)
        cache = registry.open_cache(url, namespace="bench")
        taken: dict[str, list[float]] = {name: [] for name in SETTINGS}
        ratios: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for number in range(rounds):
            order = list(SETTINGS) if number % 2 == 0 else list(reversed(SETTINGS))
            medians = {}
            for name in order:
                synchronous, commit = SETTINGS[name]
                pair.primary.replicate_to(pair.standby, synchronous=synchronous, commit=commit)
                cache.add_to_blacklist("warm", 60)
                these = []
                for call in range(calls):
                    started = time.perf_counter()
                    cache.add_to_blacklist(f"{name}-{number}-{call}", 600)
                    these.append(time.perf_counter() - started)
                taken[name] += these
                medians[name] = statistics.median(these)
            for name in SETTINGS:
                ratios[name].append(medians[name] / medians["async"])
        cache.close()
    finally:
        pair.close()
    for name, these in taken.items():
        these.sort()
        p99 = these[int(len(these) * 0.99)]
        print(
            f"{name:>12}: median {statistics.median(these) * 1e3:.3f} ms, "
            f"p99 {p99 * 1e3:.3f} ms, median / async's (per round) "
            + " ".join(f"{r:.2f}" for r in ratios[name])
        )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
