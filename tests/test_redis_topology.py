"""The private Redis topologies of tests/servers/redis_topology.py do what fault tests rely on,
proven with raw redis-py only (no authstore code): kill/restart, SIGSTOP, Sentinel
failover, a cluster slot migration that makes a stale client follow MOVED, and cleanup."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import MovedError
from redis.sentinel import Sentinel

from tests.servers.redis_topology import (
    PrivateCluster,
    RedisProcess,
    private_cluster,
    private_redis,
    private_sentinel,
)

pytestmark = pytest.mark.timeout(90)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _refuses(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _assert_cleaned_up(nodes: list[RedisProcess], directory: Path) -> None:
    for node in nodes:
        assert not node.running
    assert not directory.exists()


def test_private_redis_kill_and_restart_on_the_same_port() -> None:
    with private_redis() as node:
        client = node.client(retry=None, socket_timeout=1.0)
        try:
            assert client.set("before", "1")
            assert client.get("before") == b"1"
            port, pid = node.port, node.pid
            node.kill()
            assert _refuses(port)
            with pytest.raises(redis.ConnectionError):
                client.get("before")
            node.restart()
            assert node.port == port
            assert node.pid != pid
            assert client.ping()
            assert client.get("before") is None  # memory only: a restart starts empty
        finally:
            client.close()


def test_private_redis_appendonly_keeps_data_across_a_restart() -> None:
    with private_redis(appendonly=True) as node:
        client = node.client(retry=None)
        try:
            client.set("kept", "1")
            node.restart()
            assert client.get("kept") == b"1"
        finally:
            client.close()


def test_a_paused_server_makes_a_client_time_out_and_answers_after_resume() -> None:
    with private_redis() as node:
        client = node.client(retry=None, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            client.set("key", "value")
            with node.frozen():
                assert node.paused
                started = time.monotonic()
                with pytest.raises(redis.TimeoutError):
                    client.get("key")
                assert time.monotonic() - started < 3.0
            assert not node.paused
            client.connection_pool.disconnect()  # the timed-out connection is unusable
            assert client.get("key") == b"value"
        finally:
            client.close()


def test_private_redis_cleans_up_after_an_error_even_when_paused() -> None:
    with pytest.raises(RuntimeError, match="inside"), private_redis() as node:  # noqa: PT012
        seen = node
        pid, port, directory = node.pid, node.port, node.directory
        node.pause()
        raise RuntimeError("inside the block")
    assert pid is not None and _gone(pid)
    assert _refuses(port)
    _assert_cleaned_up([seen], directory)


def test_sentinel_reports_the_replica_promoted_and_keeps_the_data() -> None:
    with private_sentinel() as topology:
        assert topology.url == f"redis+sentinel://127.0.0.1:{topology.sentinel.port}/authstore"
        sentinels = Sentinel(
            [topology.sentinel.address],
            socket_timeout=1.0,
            sentinel_kwargs={"socket_timeout": 1.0},
        )
        assert sentinels.discover_master("authstore") == topology.master.address
        client = sentinels.master_for("authstore", socket_timeout=1.0)
        try:
            client.set("before-failover", "1")
            promoted = topology.fail_over()
            assert promoted is topology.replica
            assert not topology.master.running
            assert sentinels.discover_master("authstore") == topology.replica.address
            assert topology.replica.execute("ROLE")[0] == "master"
            assert client.get("before-failover") == b"1"  # the master_for client follows
            assert client.set("after-failover", "2")
        finally:
            client.close()
            for sentinel_client in sentinels.sentinels:
                sentinel_client.close()
        nodes, directory = topology.nodes, topology.sentinel.directory.parent
    _assert_cleaned_up(nodes, directory)


def test_a_cluster_client_with_a_stale_slot_map_follows_moved_after_migrate_slot() -> None:
    with private_cluster() as cluster:
        assert cluster.url.startswith("redis+cluster://127.0.0.1:")
        assert len(cluster.url.split(",")) == 3
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
            socket_timeout=2.0,
        )
        try:
            keys = ["{user:7}:a", "{user:7}:b", "{user:7}:c"]  # one hash tag: one slot
            for index, key in enumerate(keys):
                client.set(key, str(index))
            slot = PrivateCluster.slot_of(keys[0])
            old_owner = cluster.owner_of(slot)
            new_owner = next(node for node in cluster.nodes if node is not old_owner)

            assert cluster.migrate_slot(slot, new_owner) is old_owner

            for node in cluster.nodes:  # every master agrees on the new owner
                assert cluster.owner_of(slot, asked=node) is new_owner
            # The old owner redirects; the new one serves every key of the slot.
            with pytest.raises(MovedError) as moved:  # the server said MOVED
                old_owner.execute("GET", keys[0])
            assert (moved.value.slot_id, moved.value.port) == (slot, new_owner.port)
            for index, key in enumerate(keys):
                assert new_owner.execute("GET", key) == str(index)
            # The cluster client still maps the slot to the old owner, gets MOVED, follows it.
            stale = client.nodes_manager.get_node_from_slot(slot)
            assert stale.port == old_owner.port
            assert client.get(keys[1]) == b"1"
            assert client.nodes_manager.get_node_from_slot(slot).port == new_owner.port
        finally:
            client.close()
        nodes, directory = cluster.nodes, cluster.nodes[0].directory.parent
    _assert_cleaned_up(nodes, directory)
