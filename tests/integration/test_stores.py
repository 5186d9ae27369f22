"""One suite for every store: the memory store and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest
import redis

from proxy.errors import StoreError
from proxy.stores.base import Entry, Store, StoreStats
from proxy.stores.memory import MemoryStore
from proxy.stores.redis import RedisStore
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def entry(body: bytes = b'{"answer": 42}', *, tokens: int = 7) -> Entry:
    return Entry(id="0123456789abcdef", body=body, created_at=1_700_000_000.5, tokens=tokens)


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore(max_entries=1000, max_bytes=10_000_000)
        return
    url = request.getfixturevalue(_URL_FIXTURES[request.param])
    redis_store = RedisStore.from_url(
        url, prefix=key_prefix, timeout_seconds=1.0, cluster=request.param == "cluster"
    )
    yield redis_store
    await redis_store.close()


_URL_FIXTURES = {
    "redis": "redis_url",
    "cluster": "redis_cluster_url",
    "sentinel": "redis_sentinel_url",
}


async def test_put_then_get_returns_the_same_entry(store: Store) -> None:
    await store.put("chat:ns:k1", entry(), 60)
    assert await store.get("chat:ns:k1") == entry()


async def test_missing_key_is_none(store: Store) -> None:
    assert await store.get("chat:ns:absent") is None


async def test_put_replaces(store: Store) -> None:
    await store.put("k", entry(b"one"), 60)
    await store.put("k", entry(b"two"), 60)
    got = await store.get("k")
    assert got is not None
    assert got.body == b"two"


async def test_binary_and_large_bodies_survive(store: Store) -> None:
    body = bytes(range(256)) * 4096
    await store.put("big", entry(body), 60)
    got = await store.get("big")
    assert got is not None
    assert got.body == body


async def test_replay_hints_and_tokens_survive(store: Store) -> None:
    streamed = Entry(
        id="fedcba9876543210", body=b"{}", created_at=1.25, tokens=2**40, replay=b"\x00[3,4]"
    )
    await store.put("chat:ns:streamed", streamed, 60)
    assert await store.get("chat:ns:streamed") == streamed


async def test_stats_count_entries(store: Store) -> None:
    for i in range(3):
        await store.put(f"k{i}", entry(), 60)
    stats = await store.stats()
    assert stats.entries == 3
    assert stats.bytes is not None
    assert stats.bytes > 0


async def test_ping_succeeds(store: Store) -> None:
    await store.ping()


async def test_memory_ttl_is_checked_on_read() -> None:
    now = [100.0]
    store = MemoryStore(max_entries=10, max_bytes=10_000, clock=lambda: now[0])
    await store.put("k", entry(), 5)
    now[0] = 104.9
    assert await store.get("k") is not None
    now[0] = 105.0
    assert await store.get("k") is None
    assert (await store.stats()).entries == 0


async def test_memory_evicts_least_recently_used_by_count() -> None:
    store = MemoryStore(max_entries=2, max_bytes=10_000_000)
    await store.put("a", entry(), 60)
    await store.put("b", entry(), 60)
    await store.get("a")
    await store.put("c", entry(), 60)
    assert await store.get("b") is None
    assert await store.get("a") is not None
    assert await store.get("c") is not None
    assert store.evictions == 1


async def test_memory_evicts_by_bytes_and_skips_oversized_entries() -> None:
    store = MemoryStore(max_entries=1000, max_bytes=3000)
    for key in "abc":
        await store.put(key, entry(b"x" * 700), 60)
    assert (await store.stats()).entries == 3
    await store.put("d", entry(b"x" * 700), 60)
    stats = await store.stats()
    assert stats.bytes is not None
    assert stats.bytes <= 3000
    assert await store.get("a") is None
    assert await store.get("d") is not None
    before = await store.stats()
    await store.put("huge", entry(b"x" * 5000), 60)
    assert await store.get("huge") is None
    # Skipped, not made room for: the entries that fit are all still there.
    assert await store.stats() == before
    assert all([await store.get(key) is not None for key in "bcd"])


async def test_memory_a_refresh_too_large_to_keep_leaves_no_old_answer_or_lost_row() -> None:
    """A key's new answer too large for the store: the old one goes (a refresh asked for a
    new answer), and its vector row with it; the partition's index never detaches (a row added
    to a detached index used to make the key's later removal fail with KeyError, a 500)."""
    now = [0.0]
    store = MemoryStore(max_entries=100, max_bytes=6000, clock=lambda: now[0])
    vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
    await store.put("k", entry(b"old"), 4)
    await store.add_vector("p", "k", vector, "the question", 4)
    await store.put("k", entry(b"x" * 10_000), 60)  # refused: larger than the store
    await store.add_vector("p", "k", vector, "the question", 60)
    assert await store.get("k") is None
    assert await store.nearest("p", vector, k=1, min_similarity=0.5) == []
    # The same key stored again, with its row, and removed again: all consistent.
    await store.put("k", entry(b"new"), 4)
    await store.add_vector("p", "k", vector, "the question", 4)
    await store.add_vector("p", "k", vector, "the question", 4)  # its row replaced
    assert [n.id for n in await store.nearest("p", vector, k=1, min_similarity=0.5)] == ["k"]
    now[0] = 5.0
    assert await store.get("k") is None  # expired: removed with its row, no KeyError
    assert await store.stats() == StoreStats(entries=0, bytes=0)


async def test_memory_byte_count_returns_to_zero() -> None:
    now = [0.0]
    store = MemoryStore(max_entries=2, max_bytes=10_000_000, clock=lambda: now[0])
    for key in ("a", "b", "c", "b"):
        await store.put(key, entry(b"x" * 100), 10)
    assert ((await store.stats()).bytes or 0) > 2 * 100
    now[0] = 11.0
    assert await store.get("b") is None
    assert await store.get("c") is None
    assert await store.stats() == StoreStats(entries=0, bytes=0)


async def test_redis_keys_are_prefixed_and_expire(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    await store.put("chat:ns:abc", entry(), 30)
    with redis.Redis.from_url(redis_url) as client:
        keys = client.keys("*")
        ttl_ms = client.pttl(f"{key_prefix}chat:ns:abc")
    assert keys == [f"{key_prefix}chat:ns:abc".encode()]
    assert 29_000 < ttl_ms <= 30_000
    await store.close()


async def test_redis_foreign_value_is_a_store_error(redis_url: str, key_prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set(f"{key_prefix}k", b"not an entry")
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    with pytest.raises(StoreError):
        await store.get("k")
    await store.close()


async def test_redis_down_raises_store_error_fast_then_recovers(
    redis_server: RedisServer, redis_url: str, key_prefix: str
) -> None:
    now = [0.0]
    store = RedisStore.from_url(
        redis_url, prefix=key_prefix, timeout_seconds=1.0, clock=lambda: now[0]
    )
    await store.put("k", entry(), 60)
    redis_server.stop()
    with pytest.raises(StoreError):
        await store.get("k")
    with pytest.raises(StoreError, match="unavailable"):
        await store.get("k")  # inside the retry window: no connection attempt at all
    redis_server.start()
    now[0] += 1.5
    assert await store.get("k") is None  # a fresh server: the entry is gone, no error
    await store.put("k", entry(), 60)
    assert await store.get("k") == entry()
    await store.close()


@pytest.mark.redis
async def test_redis_locks_belong_to_their_token_and_expire(
    redis_url: str, key_prefix: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    try:
        assert await store.try_lock("chat:k", "mine", 0.3)
        assert not await store.try_lock("chat:k", "theirs", 0.3)
        assert await store.is_locked("chat:k")
        assert not await store.is_locked("chat:other")
        assert not await store.extend_lock("chat:k", "theirs", 5)
        assert await store.extend_lock("chat:k", "mine", 0.3)
        await store.unlock("chat:k", "theirs")  # not theirs to give back
        assert await store.is_locked("chat:k")
        await store.unlock("chat:k", "mine")
        assert not await store.is_locked("chat:k")
        assert await store.try_lock("chat:k", "theirs", 0.2)
        await anyio.sleep(0.3)
        assert not await store.is_locked("chat:k")  # a dead holder's lock goes by itself
        assert not await store.extend_lock("chat:k", "theirs", 5)
    finally:
        await store.close()


async def test_delete_removes_only_that_entry(store: Store) -> None:
    await store.put("chat:ns:a", entry(b"a"), 60)
    await store.put("chat:ns:b", entry(b"b"), 60)
    await store.delete("chat:ns:a")
    await store.delete("chat:ns:never-there")
    assert await store.get("chat:ns:a") is None
    assert await store.get("chat:ns:b") is not None


async def test_counters_add_up_and_survive_clear(store: Store) -> None:
    assert await store.read_counters("group-a") == {}
    await store.incr_counters("group-a", {"o3": 2, "w3": 1})
    await store.incr_counters("group-a", {"o3": 5, "n": 9})
    await store.incr_counters("group-b", {"o3": 1})
    await store.clear()
    assert await store.read_counters("group-a") == {"o3": 7, "w3": 1, "n": 9}
    assert await store.read_counters("group-b") == {"o3": 1}


@pytest.mark.redis
async def test_redis_flush_removes_its_own_keys_and_nothing_else(
    redis_url: str, key_prefix: str
) -> None:
    """Production on ``semcache:`` and staging on ``semcache:staging:`` in one database: a
    flush of production removed every key under its prefix, staging's entries and namespace
    secret among them (staging then made a new secret: every tenant's namespace changed)."""
    vector = np.full(4, 0.5, dtype=np.float32)
    prod = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    staging = RedisStore.from_url(redis_url, prefix=key_prefix + "staging:", timeout_seconds=1.0)
    entry_keys = ("chat:ns:a", "emb:ns:b", "cmpl:ns:c", "resp:ns:d", "oll:ns:chat:e")
    try:
        secret = await staging.shared_secret(b"s" * 32)
        await prod.shared_secret(b"p" * 32)
        for store in (prod, staging):
            for key in entry_keys:
                await store.put(key, entry(), 60)
            await store.add_vector("sem:ns:p", "chat:ns:a", vector, "the question", 60)
            await store.put_ref("0123456789abcdef", b"{}", 60)
            assert await store.try_lock("chat:ns:a", "me", 60)
            await store.incr_counters("g", {"n": 1})
        with redis.Redis.from_url(redis_url) as plain:
            plain.set(f"{key_prefix}billing:invoice:1", "keep me")  # not semcache's
            plain.set("other-app:1", "keep me")
            old_vset = f"{key_prefix}vset-rq8:sem:ns:p"  # an earlier version's format
            plain.execute_command("VADD", old_vset, "VALUES", 2, 1, 0, "chat:ns:old")
            staging_keys = set(plain.scan_iter(match=f"{key_prefix}staging:*"))
            assert await prod.clear() == len(entry_keys) + 4  # + vector sets, ref, lock
            left = set(plain.scan_iter(match="*"))
        kept = {f"{key_prefix}{k}".encode() for k in ("secret", "counters:g", "billing:invoice:1")}
        assert left == staging_keys | kept | {b"other-app:1"}
        for key in entry_keys:
            assert await prod.get(key) is None
            assert await staging.get(key) == entry()
        assert await prod.get_ref("0123456789abcdef") is None
        assert not await prod.is_locked("chat:ns:a")
        assert await prod.nearest("sem:ns:p", vector, k=1, min_similarity=0.5) == []
        assert await staging.nearest("sem:ns:p", vector, k=1, min_similarity=0.5) != []
        assert await staging.shared_secret(b"t" * 32) == secret
    finally:
        await prod.close()
        await staging.close()


async def test_scan_pages_through_one_prefix_only(store: Store) -> None:
    mine = {f"chat:tenant-a:{i:04d}" for i in range(23)}
    for key in [*mine, "chat:tenant-b:0001", "emb:tenant-a:0001"]:
        await store.put(key, entry(), 600)
    await store.put_ref("ref-not-an-entry", b"{}", 600)
    seen: list[str] = []
    cursor = ""
    for _ in range(100):
        cursor, page = await store.scan(cursor, prefix="chat:tenant-a:", count=5)
        seen += [item.key for item in page]
        assert all(item.entry == entry() for item in page)
        assert all(item.ttl_seconds is not None and 0 < item.ttl_seconds <= 600 for item in page)
        if not cursor:
            break
    assert set(seen) == mine  # every one at least once, nothing else


async def test_listed_gives_an_entry_with_its_time_to_live(store: Store) -> None:
    await store.put("chat:t:1", entry(), 120)
    found = await store.listed("chat:t:1")
    assert found is not None
    assert found.entry == entry()
    assert found.ttl_seconds is not None
    assert 100 < found.ttl_seconds <= 120
    assert await store.listed("chat:t:missing") is None


async def test_census_counts_this_proxys_entries_only(store: Store) -> None:
    for key in ("chat:t:1", "emb:t:2", "cmpl:t:3"):
        await store.put(key, entry(), 600)
    await store.put_ref("0123456789abcdef", b"{}", 600)
    await store.incr_counters("requests", {"hits": 1})
    own = await store.census()
    assert own.entries == 3
    assert own.bytes is not None
    assert own.bytes > 0


async def test_memory_many_one_row_partitions_cost_what_the_store_counts() -> None:
    """One index per partition (tenant x context): its fixed cost is counted, and the sign-code
    hyperplanes are shared, not 393 KB per partition (a thousand one-row partitions took 400 MB
    beside a byte count of 3 MB)."""
    import tracemalloc

    store = MemoryStore(max_entries=100_000, max_bytes=1 << 30)
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    await store.put("w", entry(b"x"), 60)
    await store.add_vector("warm", "w", vector, "t", 60)  # the shared planes, made once
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1000):
        await store.put(f"k{i}", entry(b"x"), 60)
        await store.add_vector(f"p{i}", f"k{i}", vector, "the question", 60)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    counted = (await store.stats()).bytes
    assert counted is not None
    assert grown < 2 * counted, (grown, counted)
    for key in ["w", *(f"k{i}" for i in range(1000))]:
        await store.delete(key)
    assert (await store.stats()).bytes == 0


async def test_memory_byte_bound_counts_the_vector_arrays_as_allocated() -> None:
    """One tenant and one model (one partition), 1536-dim vectors: the index's arrays grew
    ahead of their rows (doubling) and never shrank, but only the rows in use were counted. At
    an 8 MiB bound the store held ~1.6x that; after all but one entry were removed it counted
    ~8 KB and held the arrays at their peak. Now the arrays are counted as allocated, grow only
    into what the bound leaves, and shrink behind their rows."""
    import tracemalloc

    from proxy.stores.similarity import CODE_BITS, _planes

    dims, bound = 1536, 8 << 20
    row_bytes = dims * 4 + CODE_BITS // 8
    _planes(dims)  # shared, made once: not the store's
    vectors = np.random.default_rng(0).standard_normal((2000, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = MemoryStore(max_entries=1_000_000, max_bytes=bound)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            key = f"chat:ns:{i:064x}"
            body = Entry(id=f"{i:016x}", body=b"x" * 300, created_at=1.0, meta=b'{"model":"m"}')
            await store.put(key, body, 3600)
            await store.add_vector("p", key, vectors[i], f"question {i}", 3600)
            counted = (await store.stats()).bytes
            assert counted is not None
            assert store._indexes["p"].nbytes() <= counted <= bound
        held = tracemalloc.get_traced_memory()[0] - before
        kept = len(store._entries)
        found = await store.nearest("p", vectors[1999], k=1, min_similarity=0.99)
        for key in list(store._entries)[:-1]:
            await store.delete(key)
        left = tracemalloc.get_traced_memory()[0] - before
        counted_left = (await store.stats()).bytes
    finally:
        tracemalloc.stop()
    assert held <= 1.1 * bound, (held, bound)
    assert kept >= 0.9 * bound / (row_bytes + 1000), kept  # the bound holds rows, not spare room
    assert [n.id for n in found] == [f"chat:ns:{1999:064x}"]
    assert store._indexes["p"].nbytes() <= 2 * row_bytes  # shrunk behind its rows
    assert counted_left is not None
    assert left <= 20 * counted_left + (1 << 20), (left, counted_left)


async def test_memory_index_shrinks_when_a_quarter_full_and_searches_alike() -> None:
    from proxy.stores.similarity import VectorIndex

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((3000, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = VectorIndex(16)
    for i, row in enumerate(rows):
        index.add(f"k{i}", row, f"text {i}")
    peak = index.nbytes()
    for i in range(2990):
        index.remove(f"k{i}")
    assert len(index) == 10
    assert index.nbytes() <= peak / 64
    for i in range(2990, 3000):
        found = index.search(rows[i], k=1, min_similarity=0.99)
        assert [n.id for n in found] == [f"k{i}"]


async def test_redis_counter_hashes_expire_unless_added_to(redis_url: str, key_prefix: str) -> None:
    """A hash per group, named after a request's model: one nobody adds to for 30 days goes."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    try:
        await store.incr_counters("cosine@0.95[hash:64]|made-up-model", {"lookups": 1})
        with redis.Redis.from_url(redis_url) as plain:
            ttl = plain.ttl(f"{key_prefix}counters:cosine@0.95[hash:64]|made-up-model")
        assert 29 * 86_400 < ttl <= 30 * 86_400
    finally:
        await store.close()
