"""The spread layout on a private 3-master Redis Cluster: a namespace's sessions are
spread over every master, and so are the reads by token.

The bounded profile (CI) creates 20,000 sessions of 2,000 users;
``AUTHSTORE_SPREAD_FULL=1`` creates 100,000 sessions of 10,000 users. Either way: the
keys of each master within 10 % of the mean, and the session reads (EVALSHA counted
per node by ``INFO commandstats``) within 10 % of the mean. The cluster is private:
counting on the shared one would count the other tests' commands too.
"""

from __future__ import annotations

import asyncio
import binascii
import os
import time
import uuid
from typing import Any

import pytest

from authstore import open_async_sessions
from authstore.adapters.redis.routing import (
    BUCKETS,
    TAGS,
    Routing,
    hash_bucket,
    id_bucket,
    user_bucket,
)
from authstore.contracts.testing.harness import open_store
from authstore.contracts.values import hash_token
from tests.counted_operations import token_lookup_operations
from tests.redis.test_redis_backend import _counting_client
from tests.servers.redis_topology import PrivateCluster, private_cluster

pytestmark = pytest.mark.timeout(600)

FULL = os.environ.get("AUTHSTORE_SPREAD_FULL") == "1"
USERS, SESSIONS_PER_USER = (10_000, 10) if FULL else (2_000, 10)
CONCURRENCY = 64
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def cluster() -> Any:
    with private_cluster(3) as topology:
        yield topology


def _spread(counts: list[int]) -> float:
    """The largest distance from the mean, relative to the mean."""
    mean = sum(counts) / len(counts)
    return max(abs(count - mean) for count in counts) / mean


def _evalsha_calls(cluster: PrivateCluster) -> list[int]:
    counts = []
    for node in cluster.nodes:
        stats = node.client().info("commandstats")
        counts.append(
            sum(
                int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("evalsha", "eval")
            )
        )
    return counts


def _keys(cluster: PrivateCluster) -> list[int]:
    return [int(node.client().dbsize()) for node in cluster.nodes]


async def _in_parallel(jobs: list[Any], work: Any) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    queue = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in queue:
            results[index] = await work(job)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


def test_sessions_and_reads_spread_over_the_masters(cluster: PrivateCluster) -> None:
    url = f"{cluster.url}?namespace=spread{uuid.uuid4().hex[:8]}&pool_size={CONCURRENCY}"
    users = [f"user-{index}" for index in range(USERS)]
    report: dict[str, Any] = {}

    async def main() -> None:
        store = open_async_sessions(url)
        try:
            started = time.monotonic()
            jobs = [user for user in users for _ in range(SESSIONS_PER_USER)]
            created = await _in_parallel(jobs, lambda user: store.create(user, ttl=600))
            report["create_s"] = time.monotonic() - started
            tokens = [new.token for new in created]
            for token in tokens[:: len(tokens) // 50]:  # loads the script on every node
                await store.get(token)
            for node in cluster.nodes:
                node.execute("CONFIG", "RESETSTAT")
            started = time.monotonic()
            found = await _in_parallel(tokens, store.get)
            report["get_s"] = time.monotonic() - started
            assert all(record is not None for record in found)
            assert [record.user_id for record in found[:: SESSIONS_PER_USER * 97]] == jobs[
                :: SESSIONS_PER_USER * 97
            ]
        finally:
            await store.aclose()

    asyncio.run(main())
    keys, reads = _keys(cluster), _evalsha_calls(cluster)
    report.update(keys=keys, reads=reads, key_spread=_spread(keys), read_spread=_spread(reads))
    print(f"\nspread ({USERS} users, {USERS * SESSIONS_PER_USER} sessions): {report}")
    # every session is three keys (record, public id, index member's key shared per
    # user) and each user has its index: all of it spread
    assert sum(keys) >= USERS * SESSIONS_PER_USER * 2
    assert _spread(keys) <= TOLERANCE, report
    assert sum(reads) == USERS * SESSIONS_PER_USER  # one script per get, on some node
    assert _spread(reads) <= TOLERANCE, report


def test_namespace_layout_puts_everything_on_one_master(cluster: PrivateCluster) -> None:
    """The contrast (and that the test can fail): layout=namespace keeps every session
    of the namespace in one slot, so one master holds them all."""
    url = f"{cluster.url}?namespace=one{uuid.uuid4().hex[:8]}&layout=namespace"
    before = _keys(cluster)

    async def main() -> None:
        store = open_async_sessions(url)
        try:
            await _in_parallel(
                [f"u{index}" for index in range(300)], lambda user: store.create(user, ttl=600)
            )
        finally:
            await store.aclose()

    asyncio.run(main())
    grown = [after - was for after, was in zip(_keys(cluster), before, strict=True)]
    assert sorted(grown)[:2] == [0, 0] and max(grown) >= 600


# --- round trips (any topology: the layout decides them; counted on the single server) ---


def _caller_token(user_id: str) -> str:
    """A caller-supplied token whose hash falls outside ``user_id``'s bucket."""
    while True:
        token = "caller-" + uuid.uuid4().hex + uuid.uuid4().hex
        if hash_bucket(hash_token(token)) != user_bucket(user_id):
            return token


@pytest.mark.parametrize("layout", ["spread", "namespace"])
def test_round_trips_per_token_operation(single_url: str, layout: str) -> None:
    """Spread layout: one round trip for a token authstore issued, two for a caller's
    token (or a pre-hashed one) whose hash falls outside its user's bucket (the pointer,
    then the record). Namespace layout: one for every token."""
    client, counter = _counting_client(single_url, asynchronous=False)
    namespace = "rt" + uuid.uuid4().hex[:12]
    url = f"redis://?layout={layout}&namespace={namespace}"
    sessions = open_store(url, "sessions", False, client=client)  # type: ignore[arg-type]
    links = open_store(url, "magic_links", False, client=client)  # type: ignore[arg-type]
    counts: dict[str, int] = {}
    for _ in range(2):  # the first pass loads the scripts
        operations = token_lookup_operations(sessions, links, _caller_token("t"))
        for name, call in operations.items():
            before = counter.sent
            call()
            counts[name] = counter.sent - before
    caller = 2 if layout == "spread" else 1
    expected = {name: caller if name.startswith("caller") else 1 for name in counts}
    assert counts == expected
    sessions.close()
    links.close()
    client.close()


def test_routing_tags_tokens_and_ids() -> None:
    assert [binascii.crc_hqx(tag.encode(), 0) % 16384 for tag in TAGS] == [
        64 * bucket + 32 for bucket in range(BUCKETS)
    ]
    for user in ("alice", "bob", "é" * 40, "x" * 255):
        token, digest = Routing.new_token(user)
        assert digest == hash_token(token) and len(token) == 43
        assert hash_bucket(digest) == user_bucket(user)
        public_id = Routing.new_public_id(user)
        assert len(public_id) == 22 and id_bucket(public_id) == user_bucket(user)
    assert len({Routing.new_token("alice")[0] for _ in range(50)}) == 50
    buckets = {user_bucket(f"user-{index}") for index in range(5000)}
    assert buckets == set(range(BUCKETS))
