"""The Redis store on a real 3-master Redis Cluster: routing, MOVED and ASK, stats and clearing
over every master, and a cluster node mistaken for a standalone server. The store and vector
suites (test_stores.py, test_vectors.py) also run on this cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from proxy.errors import StoreError
from proxy.stores.base import Entry, Vector
from proxy.stores.redis import RedisStore
from proxy.stores.vectorset import VECTOR_SET
from tests.support.redis_topologies import RedisClusterSet

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def entry(body: bytes = b"{}") -> Entry:
    return Entry(id="00112233aabbccdd", body=body, created_at=1.0, tokens=3)


def unit(*values: float) -> Vector:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
async def store(redis_cluster_url: str, key_prefix: str) -> AsyncIterator[RedisStore]:
    cluster_store = RedisStore.from_url(
        redis_cluster_url, prefix=key_prefix, timeout_seconds=1.0, cluster=True
    )
    yield cluster_store
    await cluster_store.close()


async def test_keys_spread_over_every_master_and_stats_sum_them(
    store: RedisStore, redis_cluster: RedisClusterSet, key_prefix: str
) -> None:
    for i in range(30):
        await store.put(f"chat:ns:{i:02d}", entry(), 60)
        await store.add_vector(f"sem:ns:{i:02d}", f"chat:ns:{i:02d}", unit(1, i, 0), "t", 60)
    by_node = redis_cluster.keys()
    assert all(len(keys) >= 5 for keys in by_node.values()), by_node
    assert not any(b"{" in key for keys in by_node.values() for key in keys)
    stats = await store.stats()
    assert stats.entries == 60 == sum(len(keys) for keys in by_node.values())
    for i in range(30):  # each read goes to its own slot's master
        assert await store.get(f"chat:ns:{i:02d}") == entry()
        found = await store.nearest(f"sem:ns:{i:02d}", unit(1, i, 0), k=1, min_similarity=0.9)
        assert [n.id for n in found] == [f"chat:ns:{i:02d}"]
    assert await store.nearest("sem:other:00", unit(1, 0, 0), k=1, min_similarity=0.0) == []


async def test_clear_empties_every_master_but_keeps_the_secret_and_counters(
    store: RedisStore, redis_cluster: RedisClusterSet, key_prefix: str
) -> None:
    secret = await store.shared_secret(b"s" * 32)
    await store.incr_counters("group", {"o3": 2})
    for i in range(30):
        await store.put(f"chat:ns:{i}", entry(), 60)
    assert await store.try_lock("chat:ns:0", "me", 30)
    assert await store.clear() == 31  # the entries and the lock
    left = {key for keys in redis_cluster.keys().values() for key in keys}
    assert left == {f"{key_prefix}secret".encode(), f"{key_prefix}counters:group".encode()}
    assert await store.shared_secret(b"t" * 32) == secret
    assert await store.read_counters("group") == {"o3": 2}


async def test_locks_and_refs_work_on_any_master(store: RedisStore) -> None:
    for i in range(6):
        key = f"chat:ns:lock{i}"
        assert await store.try_lock(key, "mine", 5)
        assert not await store.try_lock(key, "theirs", 5)
        assert await store.extend_lock(key, "mine", 5)
        await store.unlock(key, "theirs")
        assert await store.is_locked(key)
        await store.unlock(key, "mine")
        assert not await store.is_locked(key)
        await store.put_ref(f"id{i}", b"where", 60)
        assert await store.get_ref(f"id{i}") == b"where"


async def test_ask_and_moved_are_followed_not_read_as_a_failure(
    store: RedisStore, redis_cluster: RedisClusterSet, key_prefix: str
) -> None:
    key, partition = "chat:ns:migrating", "sem:ns:migrating"
    assert await store.get(key) is None  # the client learns the slot map
    vset = key_prefix + VECTOR_SET + partition
    slot = key_slot((key_prefix + key).encode())
    vslot = key_slot(vset.encode())
    source = redis_cluster.owner(slot)
    target = next(n for n in redis_cluster.nodes if n is not source)
    redis_cluster.begin_migration(slot, target)
    # The old owner lacks the key and answers ASK: the write lands on the importing node.
    await store.put(key, entry(b"moved"), 60)
    assert (key_prefix + key).encode() in redis_cluster.keys()[target.port]
    got = await store.get(key)
    assert got is not None
    assert got.body == b"moved"
    redis_cluster.finish_migration(slot, target)
    # The slot map the client holds is stale now: the old owner answers MOVED.
    assert (await store.get(key)) == entry(b"moved")
    vsource = redis_cluster.owner(vslot)
    vtarget = next(n for n in redis_cluster.nodes if n is not vsource)
    redis_cluster.begin_migration(vslot, vtarget)
    redis_cluster.finish_migration(vslot, vtarget)
    await store.add_vector(partition, key, unit(1, 0, 0), "text", 60)
    assert vset.encode() in redis_cluster.keys()[vtarget.port]
    found = await store.nearest(partition, unit(1, 0, 0), k=1, min_similarity=0.9)
    assert [n.id for n in found] == [key]
    assert await store.supports_vectors()
    await store.ping()


async def test_a_cluster_node_used_as_standalone_is_reported_never_read_as_no_vectors(
    redis_cluster: RedisClusterSet, redis_cluster_url: str, key_prefix: str
) -> None:
    """Without SEMCACHE_REDIS_CLUSTER most keys answer MOVED: the health check says so, and the
    probe's MOVED is a store failure, not "this Redis has no vector sets"."""
    prefix = next(
        p
        for p in (f"{key_prefix}{n}:" for n in range(100))
        if redis_cluster.owner(key_slot(f"{p}vset:probe".encode())) is not redis_cluster.nodes[0]
    )
    store = RedisStore.from_url(redis_cluster_url, prefix=prefix, timeout_seconds=1.0)
    try:
        with pytest.raises(StoreError, match="SEMCACHE_REDIS_CLUSTER=true"):
            await store.ping()
        store._failures.until = 0.0  # as after the retry window
        with pytest.raises(StoreError, match="MovedError"):
            await store.supports_vectors()
    finally:
        await store.close()


async def test_a_cluster_with_a_master_down_is_unhealthy_then_recovers(
    redis_cluster: RedisClusterSet, key_prefix: str
) -> None:
    with redis.Redis(port=redis_cluster.nodes[0].port) as client:
        client.flushall()
    store = RedisStore.from_url(
        redis_cluster.url, prefix=key_prefix, timeout_seconds=0.5, cluster=True
    )
    down = redis_cluster.nodes[2]
    try:
        await store.ping()
        down.pause()
        try:
            with pytest.raises(StoreError):
                await store.ping()
        finally:
            down.resume()
        store._failures.until = 0.0
        await store.ping()
        await store.put("chat:ns:after", entry(), 60)
        assert await store.get("chat:ns:after") == entry()
    finally:
        await store.close()
