"""Vector search on both stores: the memory index and Redis 8 vector sets."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import numpy as np
import orjson
import pytest
import redis

from proxy.app import create_app
from proxy.settings import Settings
from proxy.stores.base import Entry, Store, Vector
from proxy.stores.memory import MemoryStore
from proxy.stores.redis import RedisStore
from proxy.stores.vectorset import GRAPH_LINKS, SEARCH_CONNECTIONS, VECTOR_SET
from tests.support.asgi import asked_twice, running
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer, find_redis_server

pytestmark = pytest.mark.anyio


def unit(*values: float) -> Vector:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def entry(body: bytes = b"{}") -> Entry:
    return Entry(id="00112233aabbccdd", body=body, created_at=1.0)


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


async def add(store: Store, partition: str, key: str, vector: Vector, text: str) -> None:
    await store.put(key, entry(), 60)
    await store.add_vector(partition, key, vector, text, 60)


async def test_nearest_returns_exact_cosines_best_first(store: Store) -> None:
    await add(store, "p", "k1", unit(1, 0, 0), "one")
    await add(store, "p", "k2", unit(0.6, 0.8, 0), "two")
    await add(store, "p", "k3", unit(0, 0, 1), "three")
    found = await store.nearest("p", unit(1, 0.1, 0), k=5, min_similarity=0.5)
    assert [n.id for n in found] == ["k1", "k2"]
    assert [n.text for n in found] == ["one", "two"]
    assert found[0].similarity == pytest.approx(float(unit(1, 0.1, 0) @ unit(1, 0, 0)), abs=1e-5)
    assert found[1].similarity == pytest.approx(
        float(unit(1, 0.1, 0) @ unit(0.6, 0.8, 0)), abs=1e-5
    )


async def test_threshold_and_k_limit_results(store: Store) -> None:
    for i in range(6):
        await add(store, "p", f"k{i}", unit(1, 0.05 * i, 0), f"t{i}")
    found = await store.nearest("p", unit(1, 0, 0), k=3, min_similarity=0.99)
    assert [n.id for n in found] == ["k0", "k1", "k2"]
    assert await store.nearest("p", unit(0, 1, 0), k=3, min_similarity=0.9) == []


async def test_partitions_never_mix(store: Store) -> None:
    await add(store, "tenant-a", "k1", unit(1, 0, 0), "one")
    assert await store.nearest("tenant-b", unit(1, 0, 0), k=5, min_similarity=0.1) == []
    assert [
        n.id for n in await store.nearest("tenant-a", unit(1, 0, 0), k=5, min_similarity=0.1)
    ] == ["k1"]


async def test_remove_vector(store: Store) -> None:
    await add(store, "p", "k1", unit(1, 0, 0), "one")
    await add(store, "p", "k2", unit(1, 0.2, 0), "two")
    await store.remove_vector("p", "k1")
    assert [n.id for n in await store.nearest("p", unit(1, 0, 0), k=5, min_similarity=0.5)] == [
        "k2"
    ]


async def test_supports_vectors(store: Store) -> None:
    assert await store.supports_vectors()


async def test_memory_vectors_leave_with_their_entries() -> None:
    store = MemoryStore(max_entries=2, max_bytes=10_000_000)
    await add(store, "p", "k1", unit(1, 0, 0), "one")
    await add(store, "p", "k2", unit(1, 0.1, 0), "two")
    bytes_with_two = (await store.stats()).bytes
    await add(store, "p", "k3", unit(1, 0.2, 0), "two")  # evicts k1 and its vector
    found = await store.nearest("p", unit(1, 0, 0), k=5, min_similarity=0.5)
    assert [n.id for n in found] == ["k2", "k3"]
    assert (await store.stats()).entries == 2
    assert (await store.stats()).bytes == bytes_with_two  # k3 costs exactly what k1 did


async def test_memory_vector_without_entry_is_not_indexed() -> None:
    store = MemoryStore(max_entries=10, max_bytes=10_000_000)
    await store.add_vector("p", "absent", unit(1, 0, 0), "x", 60)
    assert await store.nearest("p", unit(1, 0, 0), k=5, min_similarity=0.1) == []


async def test_memory_large_partition_uses_the_prefilter_and_stays_exact() -> None:
    rng = np.random.default_rng(7)
    store = MemoryStore(max_entries=50_000, max_bytes=1 << 31)
    rows = rng.standard_normal((10_000, 64)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for i, row in enumerate(rows):
        await add(store, "p", f"k{i}", row, f"t{i}")
    query = rows[1234] + 0.02 * rng.standard_normal(64).astype(np.float32)
    query /= np.linalg.norm(query)
    found = await store.nearest("p", query, k=3, min_similarity=0.9)
    assert found[0].id == "k1234"
    assert found[0].similarity == pytest.approx(float(rows[1234] @ query), abs=1e-5)


async def test_redis_vector_set_expires_with_its_latest_entry(
    redis_url: str, key_prefix: str
) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    await store.add_vector("p", "k1", unit(1, 0, 0), "one", 100)
    await store.add_vector("p", "k2", unit(0, 1, 0), "two", 300)
    await store.add_vector("p", "k3", unit(0, 0, 1), "three", 50)
    with redis.Redis.from_url(redis_url) as client:
        ttl = client.ttl(f"{key_prefix}{VECTOR_SET}p")
    assert 290 < ttl <= 300
    await store.close()


def graph_score(url: str, vset: str, query: Vector) -> float:
    """The cosine the graph itself gives the single element of ``vset``."""
    with redis.Redis.from_url(url, protocol=2) as client:
        reply = client.execute_command(
            "VSIM", vset, "FP32", query.astype("<f4").tobytes(), "WITHSCORES", "COUNT", 1
        )
    return 2.0 * float(reply[1]) - 1.0


def towards(rng: np.random.Generator, a: Vector, cosine: float) -> Vector:
    """A unit vector at exactly ``cosine`` from the unit vector ``a``."""
    b = rng.standard_normal(a.shape).astype(np.float32)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)
    q = (cosine * a + np.sqrt(1 - cosine**2) * b).astype(np.float32)
    return np.asarray(q / np.linalg.norm(q), dtype=np.float32)


async def test_redis_threshold_sees_the_exact_cosine_not_the_graph_score(
    redis_url: str, key_prefix: str
) -> None:
    """The graph's scores (projected to 128 of 384 dims, int8) are approximate: a stored vector
    whose graph score reaches the threshold while its exact cosine does not must not be
    returned, and one whose exact cosine reaches it must be, with the exact value."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    rng = np.random.default_rng(3)
    seen = {"graph_above": 0, "graph_below": 0}
    for i in range(40):
        stored = unit(*rng.standard_normal(384))
        query = towards(rng, stored, 0.9)
        partition = f"p{i}"
        await add(store, partition, f"k{i}", stored, f"t{i}")
        exact = float(stored @ query)
        approx = graph_score(redis_url, f"{key_prefix}{VECTOR_SET}{partition}", query)
        if abs(approx - exact) < 1e-4:
            continue
        between = (approx + exact) / 2
        found = await store.nearest(partition, query, k=5, min_similarity=between)
        if approx > exact:
            seen["graph_above"] += 1
            assert found == [], f"exact {exact} < threshold {between} <= graph {approx}"
        else:
            seen["graph_below"] += 1
            assert [n.id for n in found] == [f"k{i}"]
        # (float32 rounding of the store's own normalisation: within 1e-6)
        at_exact = await store.nearest(partition, query, k=5, min_similarity=exact - 1e-6)
        assert [n.similarity for n in at_exact] == [pytest.approx(exact, abs=1e-6)]
    assert seen["graph_above"] > 0, seen
    assert seen["graph_below"] > 0, seen
    await store.close()


async def test_redis_low_threshold_keeps_candidates_the_graph_underrates(
    redis_url: str, key_prefix: str
) -> None:
    """The graph's error grows as the cosine falls (0.3 off at cosine 0.3 has been measured), so
    a fixed margin would cut, at a low threshold, stored vectors whose exact cosine reaches it.
    192 dims (projected to 64) make such vectors common enough to find a few quickly."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    rng = np.random.default_rng(11)
    cosine, threshold, underrated = 0.3, 0.299, 0
    query = unit(*rng.standard_normal(192))
    for i in range(400):
        stored = towards(rng, query, cosine)
        await add(store, "p", f"k{i}", stored, f"t{i}")
        approx = graph_score(redis_url, f"{key_prefix}{VECTOR_SET}p", query)
        if approx < threshold - 0.2:  # what a 0.2 margin would have cut
            underrated += 1
            found = await store.nearest("p", query, k=5, min_similarity=threshold)
            assert [n.id for n in found] == [f"k{i}"], f"graph {approx}, exact {cosine}"
            assert found[0].similarity == pytest.approx(float(stored @ query), abs=1e-6)
        await store.remove_vector("p", f"k{i}")
        if underrated == 3:
            break
    assert underrated == 3
    await store.close()


async def test_redis_vector_set_format(redis_url: str, key_prefix: str) -> None:
    """384 dims: a graph of 32 links per node on vectors projected to 128 dims, int8."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    rng = np.random.default_rng(2)
    await add(store, "p", "k1", unit(*rng.standard_normal(384)), "one")
    with redis.Redis.from_url(redis_url, protocol=2) as client:
        reply = client.execute_command("VINFO", f"{key_prefix}{VECTOR_SET}p")
    info = dict(zip(reply[::2], reply[1::2], strict=True))
    assert info[b"hnsw-m"] == GRAPH_LINKS
    assert info[b"quant-type"] == b"int8"
    assert (info[b"vector-dim"], info[b"projection-input-dim"]) == (128, 384)
    await store.close()


async def test_redis_candidates_are_ranked_by_exact_cosine(redis_url: str, key_prefix: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    rng = np.random.default_rng(5)
    query = unit(*rng.standard_normal(384))
    # near ties 0.0005 apart, well within the graph's score error: its order alone would swap
    rows = [towards(rng, query, 0.95 - 0.0005 * i) for i in range(12)]
    for i in reversed(range(12)):
        await add(store, "p", f"k{i}", rows[i], f"t{i}")
    found = await store.nearest("p", query, k=5, min_similarity=0.9)
    assert [n.id for n in found] == [f"k{i}" for i in range(5)]
    assert [n.similarity for n in found] == [
        pytest.approx(float(rows[i] @ query), abs=1e-6) for i in range(5)
    ]
    await store.close()


async def test_redis_element_without_its_exact_vector_is_never_returned(
    redis_url: str, key_prefix: str
) -> None:
    """An element written without a float32 vector (or a foreign one) cannot be rescored: a
    miss, never a hit on its approximate score."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    await add(store, "p", "good", unit(1, 0.3, 0), "good")
    vset = f"{key_prefix}{VECTOR_SET}p"
    blob = unit(1, 0, 0).astype("<f4").tobytes()
    short = unit(1, 0).astype("<f4").tobytes()
    with redis.Redis.from_url(redis_url) as client:
        for name, attributes in [
            ("no-vector", b'{"t": "x"}'),
            ("bad-base64", b'{"t": "x", "v": "!!!"}'),
            ("wrong-size", orjson.dumps({"t": "x", "v": base64.b64encode(short).decode()})),
            ("no-text", orjson.dumps({"v": base64.b64encode(blob).decode()})),
            ("not-json", b"x"),
        ]:
            client.execute_command(
                "VADD", vset, "FP32", blob, name, "Q8", "M", GRAPH_LINKS, "SETATTR", attributes
            )
        client.execute_command("VADD", vset, "FP32", blob, "no-attributes", "Q8", "M", GRAPH_LINKS)
    found = await store.nearest("p", unit(1, 0, 0), k=10, min_similarity=0.5)
    assert [n.id for n in found] == ["good"]
    await store.close()


async def test_redis_without_vector_sets_reports_no_support(key_prefix: str) -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server")
    with RedisServer(binary) as server:
        # Redis 7 and Valkey answer V* commands with an error; an ACL that denies them gives
        # this client the same view of a Redis 8 server.
        with redis.Redis.from_url(server.url) as admin:
            admin.execute_command("ACL", "SETUSER", "default", "-vadd", "-vsim", "-vrem", "-vcard")
        store = RedisStore.from_url(server.url, prefix=key_prefix, timeout_seconds=1.0)
        assert not await store.supports_vectors()
        await store.put("k", entry(), 60)
        assert await store.get("k") == entry()
        await store.close()


async def test_app_on_redis_without_vector_sets_is_exact_only(
    fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server")
    with RedisServer(binary) as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.execute_command("ACL", "SETUSER", "default", "-vadd", "-vsim", "-vrem", "-vcard")
        settings = Settings(
            upstream_url=fake_upstream.url, redis_url=server.url, embed_model="hash:64"
        )
        app = create_app(settings)
        async with running(app) as c:
            states = await asked_twice(c)
            stats = (await c.get("/cache/stats")).json()
    assert states == ["MISS", "HIT"]
    assert stats["semantic_enabled"] is False
    assert stats["store_errors"] == {}
    assert any("no vector search" in r.getMessage() for r in caplog.records)


async def test_redis_searches_run_beside_entry_reads_not_behind_them(
    redis_url: str, key_prefix: str
) -> None:
    """Redis answers one connection's commands in order and a search holds its connection for
    its whole run: searches get connections of their own, several at once."""
    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    await add(store, "p", "k1", unit(1, 0, 0), "one")
    queries = [unit(1, 0.01 * i, 0) for i in range(8)]
    found, read = await asyncio.gather(
        asyncio.gather(*(store.nearest("p", q, k=1, min_similarity=0.9) for q in queries)),
        asyncio.gather(*(store.get("k1") for _ in range(8))),
    )
    assert [[n.id for n in neighbors] for neighbors in found] == [["k1"]] * 8
    assert all(isinstance(e, Entry) for e in read)
    with redis.Redis.from_url(redis_url) as plain:
        last_commands = [c["cmd"].lower() for c in plain.client_list()]
    assert last_commands.count("get") == 1
    assert last_commands.count("vsim") == SEARCH_CONNECTIONS
    await store.close()


async def test_app_started_while_redis_is_down_keeps_semantic_matching_on(
    fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed probe is no answer: semantic matching must not stay off for the life of the
    process because Redis was down (or a cluster node answered MOVED) at startup."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server")
    server = RedisServer(binary)  # not started yet
    settings = Settings(upstream_url=fake_upstream.url, redis_url=server.url, embed_model="hash:64")
    now = [0.0]
    store = RedisStore.from_url(
        server.url, prefix="semcache:", timeout_seconds=1.0, clock=lambda: now[0]
    )
    app = create_app(settings, store=store)
    try:
        async with running(app) as c:
            down = (await c.get("/cache/stats")).json()
            server.start()
            now[0] += 2.0  # past the store's retry window after the failed probe
            states = await asked_twice(c)
            with redis.Redis.from_url(server.url) as admin:
                vector_sets = admin.keys(f"*{VECTOR_SET}*")
    finally:
        await store.close()
        server.close()
    assert down["semantic_enabled"] is True
    assert not any("no vector search" in r.getMessage() for r in caplog.records)
    assert states == ["MISS", "HIT"]
    assert len(vector_sets) == 1  # the miss was indexed once Redis was back


async def test_an_orphan_removed_by_a_lookup_never_takes_the_row_of_its_entry_stored_anew(
    redis_url: str, key_prefix: str
) -> None:
    """A lookup that finds a row whose entry expired removes the row. On Redis the entry's GET
    is a round trip (and other replicas write meanwhile): the same prompt, asked again in that
    window, stored its entry and row anew, then the lookup's VREM took the new row, and the
    entry could not be found semantically for its whole TTL."""
    from proxy.metrics import Metrics
    from proxy.requests import CacheControl
    from proxy.semantic.embedders import HashEmbedder
    from proxy.semantic.lookup import SemanticCache
    from proxy.semantic.verifier import CosineVerifier
    from proxy.stores.guard import Cache

    store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
    cache = Cache(store, Metrics())
    semantic = SemanticCache(
        cache, HashEmbedder(64), Metrics(), verifier=CosineVerifier(0.5), reader=None,
        fallback=CosineVerifier(0.5), min_similarity=0.5, max_age_seconds=None,
        max_chars=1000, timeout_seconds=5,
    )  # fmt: skip
    await semantic.start()

    def chat(text: str) -> dict[str, object]:
        return {"model": "m", "messages": [{"role": "user", "content": text}]}

    stored = await semantic.query(chat("what is the capital city of france"), namespace="ns",
                                  api_key=None)  # fmt: skip
    asked = await semantic.query(chat("what is the capital city of france now"), namespace="ns",
                                 api_key=None)  # fmt: skip
    assert stored is not None
    assert asked is not None
    await cache.put("chat:ns:k", cache.new_entry(b'"old"'), 60, kind="chat")
    await semantic.remember(stored, "chat:ns:k", 60)
    await cache.delete("chat:ns:k")  # expired or evicted: its row stays
    real_get = cache.get

    async def get_while_the_prompt_is_stored_again(key: str) -> Entry | None:
        found = await real_get(key)
        await cache.put(key, cache.new_entry(b'"new"'), 60, kind="chat")
        await semantic.remember(stored, key, 60)
        return found

    control = CacheControl(lookup=True, store=True, ttl_seconds=60)
    try:
        cache.get = get_while_the_prompt_is_stored_again  # type: ignore[method-assign]
        racing = await semantic.lookup(asked, control)
        cache.get = real_get  # type: ignore[method-assign]
        later = await semantic.lookup(asked, control)
    finally:
        await store.close()
    assert racing.hit is None  # the orphan was a miss
    assert later.hit is not None
    assert later.hit.entry.body == b'"new"'


async def test_an_acl_without_scripts_still_removes_orphan_rows(
    redis_url: str, key_prefix: str
) -> None:
    """The checked removal is a script; a user without ``EVAL`` removes the row unchecked, as
    before, instead of leaving every orphan to turn its lookups into misses."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "noscript", "on", ">pw", f"~{key_prefix}*", "+@all", "-@scripting"
        )
        url = redis_url.replace("redis://", "redis://noscript:pw@", 1)
        store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
        try:
            await store.add_vector("p", "chat:ns:gone", unit(1, 0, 0), "gone", 60)
            await add(store, "p", "chat:ns:kept", unit(1, 0.1, 0), "kept")
            await store.remove_orphan("p", "chat:ns:gone")
            found = await store.nearest("p", unit(1, 0, 0), k=5, min_similarity=0.5)
        finally:
            await store.close()
            admin.execute_command("ACL", "DELUSER", "noscript")
    assert [n.id for n in found] == ["chat:ns:kept"]
