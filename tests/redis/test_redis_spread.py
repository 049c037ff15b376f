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
import redis

from authstore import migrate, open_async_sessions, open_magic_links, open_sessions
from authstore.adapters.redis.backend import backend
from authstore.adapters.redis.routing import (
    BUCKETS,
    TAGS,
    Routing,
    hash_bucket,
    id_bucket,
    user_bucket,
)
from authstore.adapters.redis.settings import parse_settings
from authstore.contracts.errors import ConfigurationError, TokenInUseError
from authstore.contracts.testing.harness import open_store
from authstore.contracts.values import hash_token
from authstore.registry import StoreURL
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


def _caller_token(*users: str) -> str:
    """A caller-supplied token whose hash falls outside the buckets of ``users``."""
    while True:
        token = "caller-" + uuid.uuid4().hex + uuid.uuid4().hex
        if hash_bucket(hash_token(token)) not in {user_bucket(user) for user in users}:
            return token


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("layout", ["spread", "namespace"])
def test_round_trips_per_token_operation(single_url: str, layout: str, asynchronous: bool) -> None:
    """Spread layout: one round trip for a token authstore issued, two for a caller's
    token (or a pre-hashed one) whose hash falls outside its user's bucket (the pointer,
    then the record). Namespace layout: one for every token."""

    async def run(call: Any) -> Any:
        result = call()
        return (await result) if asyncio.iscoroutine(result) else result

    async def main() -> dict[str, int]:
        client, counter = _counting_client(single_url, asynchronous)
        url = f"redis://?layout={layout}&namespace=rt{uuid.uuid4().hex[:12]}"
        sessions = open_store(url, "sessions", asynchronous, client=client)  # type: ignore[arg-type]
        links = open_store(url, "magic_links", asynchronous, client=client)  # type: ignore[arg-type]
        counts: dict[str, int] = {}
        for _ in range(2):  # the first pass loads the scripts
            issued = await run(lambda: sessions.create("t", ttl=60))
            link = await run(lambda: links.issue("m", "m@x.org", ttl=60, revoke_previous=False))
            caller = _caller_token("t", "m")
            operations = token_lookup_operations(sessions, links, issued, link, caller)
            for name, call in operations.items():
                before = counter.sent
                await run(call)
                counts[name] = counter.sent - before
        for closing in (sessions.aclose, links.aclose, client.aclose) if asynchronous else ():
            await closing()
        if not asynchronous:
            sessions.close()
            links.close()
            client.close()
        return counts

    counts = asyncio.run(main())
    caller = 2 if layout == "spread" else 1
    assert counts == {name: caller if name.startswith("caller") else 1 for name in counts}


def test_routing_tags_tokens_and_ids() -> None:
    assert [binascii.crc_hqx(tag.encode(), 0) % 16384 for tag in TAGS] == [
        64 * bucket + 32 for bucket in range(BUCKETS)
    ]
    for user in ("alice", "bob", "é" * 40, "x" * 255):
        token, digest = Routing.new_token(user)
        assert digest == hash_token(token) and len(token) == 45
        assert hash_bucket(digest) == user_bucket(user)
        public_id = Routing.new_public_id(user)
        assert len(public_id) == 24 and id_bucket(public_id) == user_bucket(user)
    assert len({Routing.new_token("alice")[0] for _ in range(50)}) == 50
    buckets = {user_bucket(f"user-{index}") for index in range(5000)}
    assert buckets == set(range(BUCKETS))


# --- layouts per URL, existing data, namespace-wide commands -----------------------------


def test_layout_defaults_and_option() -> None:
    def layout(url: str) -> str:
        return parse_settings(StoreURL.parse(url)).layout

    assert layout("redis://h:6379/0") == "namespace"
    assert layout("redis+sentinel://h:26379/s") == "namespace"
    assert layout("redis+unix:///tmp/r.sock") == "namespace"
    assert layout("redis+cluster://h:7001") == "spread"
    assert layout("redis+cluster://h:7001?layout=namespace") == "namespace"
    assert layout("redis://h:6379/0?layout=spread") == "spread"
    with pytest.raises(ConfigurationError, match="layout"):
        layout("redis+cluster://h:7001?layout=user")


def test_one_server_keeps_the_namespace_layout(single_url: str) -> None:
    """Data an earlier release wrote on one server (keys under {NS:sessions}) is what
    the default URL still reads and writes."""
    raw = redis.Redis.from_url(single_url)
    namespace = "old" + uuid.uuid4().hex[:10]
    with open_sessions(f"{single_url}?namespace={namespace}") as sessions:
        new = sessions.create("alice", ttl=60)
    keys = sorted(key.decode() for key in raw.scan_iter(match=f"*{namespace}*"))
    assert {key.split("}:")[0] for key in keys} == {f"{{{namespace}:sessions"}
    with open_sessions(f"{single_url}?namespace={namespace}&layout=namespace") as sessions:
        assert sessions.get(new.token) is not None
    raw.delete(*keys)
    raw.close()


def test_migrate_moves_the_namespace_layout_to_spread(server_url: Any) -> None:
    """A cluster that stored sessions and links in the namespace layout: `authstore
    migrate` with layout=spread moves them; every token, public id, revocation and
    consumed link keeps its meaning, and the old keys are gone."""
    cluster = server_url("redis_cluster")
    namespace = "mig" + uuid.uuid4().hex[:10]
    old = f"{cluster}?namespace={namespace}&layout=namespace"
    new = f"{cluster}?namespace={namespace}"
    caller = "caller-" + uuid.uuid4().hex * 2
    with open_sessions(old) as sessions, open_magic_links(old) as links:
        made = [sessions.create(f"u{index % 7}", ttl=120) for index in range(30)]
        mine = sessions.create("u1", ttl=120, token=caller)
        revoked = sessions.create("u2", ttl=120)
        assert sessions.revoke(revoked.token)
        listed = {user: [r.id for r in sessions.list(user)] for user in ("u1", "u2")}
        link = links.issue("u3", "u3@example.com", ttl=120)
        used = links.issue("u4", "u4@example.com", ttl=120)
        assert links.consume(used.token) is not None
    report = migrate(new)
    assert any("moved 31 sessions, 2 links" in line for line in report), report
    assert backend.count_namespace(StoreURL.parse(cluster), namespace) > 0
    with open_sessions(new) as sessions, open_magic_links(new) as links:
        for session in [*made, mine]:
            found = sessions.get(session.token)
            assert found is not None and found.id == session.record.id
        assert sessions.get(revoked.token) is None
        with pytest.raises(TokenInUseError):
            sessions.create("someone", ttl=60, token=caller)
        assert {user: [r.id for r in sessions.list(user)] for user in listed} == listed
        assert sessions.revoke_by_id(made[0].record.id)  # an old id: through its pointer
        assert sessions.get(made[0].token) is None
        assert links.consume(used.token) is None
        peeked = links.peek(link.token)
        assert peeked is not None and peeked.id == link.record.id
    with open_sessions(old) as sessions:
        assert sessions.get(made[1].token) is None  # the old layout's keys are gone
    assert migrate(new)[0].endswith("nothing to migrate (keys and scripts appear on use)")
    backend.clear_namespace(StoreURL.parse(cluster), namespace)


def test_namespace_count_and_clear_reach_every_master(cluster: PrivateCluster) -> None:
    namespace = "wide" + uuid.uuid4().hex[:8]
    url = f"{cluster.url}?namespace={namespace}"
    with open_sessions(url) as sessions:
        tokens = [sessions.create(f"user-{index}", ttl=600).token for index in range(300)]
    per_node = [
        sum(1 for _ in node.client().scan_iter(match=f"{namespace}:*")) for node in cluster.nodes
    ]
    assert min(per_node) > 0
    parsed = StoreURL.parse(cluster.url)
    assert backend.count_namespace(parsed, namespace) == sum(per_node)
    backend.clear_namespace(parsed, namespace)
    assert backend.count_namespace(parsed, namespace) == 0
    with open_sessions(url) as sessions:
        assert sessions.get(tokens[0]) is None


# --- a taken hash, whichever bucket holds its record (spread layout, one server) ---


def _user_in(bucket: int, *, other_than: str = "") -> str:
    """A user id whose bucket is ``bucket``."""
    while True:
        user = "u" + uuid.uuid4().hex[:12]
        if user_bucket(user) == bucket and user != other_than:
            return user


def _token_in(bucket: int) -> str:
    """A caller-supplied token whose hash falls in ``bucket``."""
    while True:
        token = "caller-" + uuid.uuid4().hex + uuid.uuid4().hex
        if hash_bucket(hash_token(token)) == bucket:
            return token


# Where the first record and the second claimant sit, as buckets: H is the token hash's
# bucket, A the owner's, O a third one. "record in H": the owner's bucket is the hash's,
# so the record itself lives where every other claimant looks first.
PLACEMENTS = {
    "record-in-H/claimant-in-O": ("H", "O"),
    "pointer/claimant-in-H": ("A", "H"),
    "pointer/claimant-in-A": ("A", "A"),
    "pointer/claimant-in-O": ("A", "O"),
}


def _placed(placement: str) -> tuple[str, str, str]:
    """(owner, claimant, token) for ``placement``."""
    owner_at, claimant_at = PLACEMENTS[placement]
    home, owner_bucket, third = 7, 7 if owner_at == "H" else 11, 200
    owner = _user_in(owner_bucket)
    claimant_bucket = {"H": home, "A": owner_bucket, "O": third}[claimant_at]
    return owner, _user_in(claimant_bucket, other_than=owner), _token_in(home)


async def _call(result: Any) -> Any:
    return (await result) if asyncio.iscoroutine(result) else result


def _on_spread_store(url: str, kind: str, asynchronous: bool, body: Any) -> None:
    """Run ``body(store)`` on a fresh namespace's ``kind`` store, spread layout."""

    async def main() -> None:
        namespace = "tk" + uuid.uuid4().hex[:12]
        store = open_store(f"{url}?layout=spread&namespace={namespace}", kind, asynchronous)
        try:
            await body(store)
        finally:
            await _call(store.aclose() if asynchronous else store.close())

    asyncio.run(main())


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("state", ["usable", "consumed", "revoked"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_a_taken_link_hash_is_refused_in_every_bucket(
    single_url: str, placement: str, state: str, asynchronous: bool
) -> None:
    """Whichever bucket the owner's record and the claimant sit in, a link's hash stays
    taken until the link expires (once, the claim in the hash's bucket said 'free' for a
    record living there, and a second link took the same hash in another bucket)."""
    owner, claimant, token = _placed(placement)

    async def refused(links: Any) -> None:
        await _call(links.issue(owner, "o@x.org", ttl=60, token=token))
        if state == "consumed":
            assert await _call(links.consume(token)) is not None
        elif state == "revoked":
            assert await _call(links.revoke_user(owner)) == 1
        for revoke_previous in (True, False):
            with pytest.raises(TokenInUseError):
                await _call(
                    links.issue(
                        claimant, "c@x.org", ttl=60, token=token, revoke_previous=revoke_previous
                    )
                )
            with pytest.raises(TokenInUseError):
                await _call(links.issue_hashed(claimant, "c@x.org", hash_token(token), ttl=60))
        found = await _call(links.peek(token))
        assert (found.user_id if found else None) == (owner if state == "usable" else None)

    _on_spread_store(single_url, "magic_links", asynchronous, refused)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("state", ["live", "revoked"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_a_taken_session_hash_is_refused_in_every_bucket(
    single_url: str, placement: str, state: str, asynchronous: bool
) -> None:
    """The same for sessions: live or revoked, the hash is the owner's until it expires."""
    owner, claimant, token = _placed(placement)

    async def refused(sessions: Any) -> None:
        created, _ = await _call(sessions.create(owner, ttl=60, token=token))
        if state == "revoked":
            assert await _call(sessions.revoke(token)) is True
        for cap in (None, 1):
            with pytest.raises(TokenInUseError):
                await _call(sessions.create(claimant, ttl=60, token=token, max_sessions=cap))
        found = await _call(sessions.get(token))
        assert (found.id if found else None) == (created.id if state == "live" else None)
        assert await _call(sessions.count(claimant)) == 0

    _on_spread_store(single_url, "sessions", asynchronous, refused)
