"""``semcache serve`` on a real 3-master Redis Cluster and behind real Sentinels (a failover
forced under load), driven over HTTP like any client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anyio
import anyio.to_thread
import httpx
import pytest
from openai import OpenAI

from proxy.http.ops import FAILING_AFTER
from proxy.stores.vectorset import VECTOR_SET
from tests.support.fake_upstream import FakeUpstream
from tests.support.load import Load, PromptMix, Result, client_for, wait_until
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_topologies import RedisClusterSet, SentinelSet

pytestmark = pytest.mark.redis

CLUSTER_ENV = {"SEMCACHE_REDIS_CLUSTER": "true", "SEMCACHE_ADMIN_TOKEN": "admin-token-123456"}
ADMIN = {"authorization": "Bearer admin-token-123456"}


def chat(sdk: OpenAI, text: str) -> tuple[str, str, str]:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": text}]
    )
    content = raw.parse().choices[0].message.content or ""
    return raw.headers["x-cache"], raw.headers.get("x-cache-lookup", ""), content


def test_exact_hits_tenants_health_stats_and_clear_on_a_cluster(
    redis_cluster: RedisClusterSet, redis_cluster_url: str, fake_upstream: FakeUpstream
) -> None:
    with ProxyProcess(fake_upstream.url, redis_url=redis_cluster_url, env=CLUSTER_ENV) as proxy:
        questions = [f"Capital of country {i}? ({uuid.uuid4().hex[:8]})" for i in range(12)]
        with OpenAI(base_url=proxy.base_url, api_key="sk-tenant-a", max_retries=0) as sdk:
            first = [chat(sdk, q) for q in questions]
            again = [chat(sdk, q) for q in questions]
        with OpenAI(base_url=proxy.base_url, api_key="sk-tenant-b", max_retries=0) as other:
            foreign = chat(other, questions[0])
        calls = fake_upstream.calls()
        health = httpx.get(proxy.url + "/healthz").json()
        stats = httpx.get(proxy.url + "/cache/stats", headers=ADMIN).json()
        keys_before = redis_cluster.keys()
        cleared = httpx.delete(proxy.url + "/cache", headers=ADMIN).json()
        with OpenAI(base_url=proxy.base_url, api_key="sk-tenant-a", max_retries=0) as sdk:
            after_clear = chat(sdk, questions[1])

    assert [c for c, _, _ in first] == ["MISS"] * 12
    assert [c for c, _, _ in again] == ["HIT"] * 12
    assert [a[2] for a in again] == [f[2] for f in first]
    assert foreign[0] == "MISS", "another tenant's entry must never answer"
    assert calls == 12 + 1
    assert health == {"status": "ok", "store": "ok", "store_errors_last_minute": 0}
    entries_on_masters = [
        k for keys in keys_before.values() for k in keys if b":chat:" in k and b"lock:" not in k
    ]
    assert len(entries_on_masters) == 13
    assert sum(1 for keys in keys_before.values() if any(b":chat:" in k for k in keys)) >= 2
    # DBSIZE summed over the masters; the whole-cache counters' key (written by proxy/totals.py
    # every second and when stats are asked) may appear between the stats and the key listing.
    listed = sum(len(keys) for keys in keys_before.values())
    assert abs(stats["store"]["entries"] - listed) <= 1
    assert cleared["removed"] >= 13
    assert after_clear[0] == "MISS"
    assert fake_upstream.calls() == 12 + 1 + 1


@pytest.fixture(scope="module")
def semantic_cluster_proxy(
    redis_cluster: RedisClusterSet, fake_upstream_server: FakeUpstream
) -> Iterator[ProxyProcess]:
    redis_cluster.flush()
    env = {**CLUSTER_ENV, "SEMCACHE_EMBED_MODEL": "local:all-MiniLM-L6-v2", "HF_HUB_OFFLINE": "1"}
    with ProxyProcess(
        fake_upstream_server.url, redis_url=redis_cluster.url, env=env, ready_timeout=90
    ) as proxy:
        yield proxy


def test_semantic_hits_with_vector_sets_on_every_master(
    semantic_cluster_proxy: ProxyProcess,
    redis_cluster: RedisClusterSet,
    fake_upstream: FakeUpstream,
) -> None:
    """Eight tenants, so eight partitions: their vector sets land on several masters, each
    paraphrase hits its own tenant's entry and never another tenant's."""
    stats = httpx.get(semantic_cluster_proxy.url + "/cache/stats", headers=ADMIN).json()
    assert stats["semantic_enabled"] is True
    served: list[tuple[str, str, str]] = []
    firsts: list[str] = []
    for tenant in range(8):
        key = f"sk-sem-{tenant}-{uuid.uuid4().hex[:6]}"
        with OpenAI(base_url=semantic_cluster_proxy.base_url, api_key=key, max_retries=0) as sdk:
            firsts.append(chat(sdk, "What is the best way to learn Python?")[2])
            served.append(chat(sdk, "What's the best way to learn Python?"))
    with OpenAI(
        base_url=semantic_cluster_proxy.base_url, api_key="sk-sem-outsider", max_retries=0
    ) as outsider:
        foreign = chat(outsider, "What's the best way to learn Python?")

    def vector_sets() -> dict[int, list[bytes]]:
        return {
            port: [k for k in keys if VECTOR_SET.encode() in k]
            for port, keys in redis_cluster.keys().items()
        }

    # The outsider's answer is stored just after it is sent: wait for its vector set.
    deadline = time.monotonic() + 10
    while sum(len(v) for v in vector_sets().values()) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    sets = vector_sets()
    assert served == [("HIT", "semantic", first) for first in firsts]
    assert len(set(firsts)) == 8, "each tenant got its own upstream answer"
    assert foreign[:2] == ("MISS", "")
    assert fake_upstream.calls() == 8 + 1
    assert sum(len(v) for v in sets.values()) == 9
    assert sum(1 for v in sets.values() if v) >= 2, sets


def problems(results: list[Result]) -> list[str]:
    return [
        f"{r.prompt!r}: {r.status} {r.problem} {r.content!r}"
        for r in results
        if r.failed or r.wrong
    ]


@pytest.mark.anyio
async def test_sentinel_failover_under_load_fails_no_request_and_caching_resumes(
    redis_sentinels: SentinelSet, redis_sentinel_url: str, fake_upstream: FakeUpstream
) -> None:
    with ProxyProcess(fake_upstream.url, redis_url=redis_sentinel_url) as proxy:
        async with client_for(proxy.url) as client:
            load = Load(client, PromptMix(uuid.uuid4().hex[:8]), workers=12)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                assert await wait_until(lambda: hits(load.results) >= 10, within=5)
                old_master = redis_sentinels.master_port()
                started = time.monotonic()
                new_master = await anyio.to_thread.run_sync(redis_sentinels.failover)
                switched = time.monotonic()
                resumed = await wait_until(lambda: hits(load.since(switched)) >= 20, within=10)
                stop.set()
            health = (await client.get("/healthz")).json()

    assert new_master != old_master
    assert problems(load.results) == []
    during = [r for r in load.results if started <= r.started < switched]
    assert len(during) >= 20, "too little load during the failover"
    assert resumed, "no cache hits within 10 s of the failover"
    # The new master answers; the failover's own errors still count for a minute (FAILING_AFTER
    # of them, and /healthz says "failing", as documented): how many there were depends on how
    # long the sentinels took, so the status follows the count rather than being fixed here.
    errors = health["store_errors_last_minute"]
    assert health["store"] == ("ok" if errors < FAILING_AFTER else "failing")
    assert health["status"] == ("ok" if errors < FAILING_AFTER else "degraded")


def hits(results: list[Result]) -> int:
    return sum(r.hit for r in results)


@pytest.mark.anyio
async def test_a_cluster_master_frozen_under_load_fails_no_request_and_caching_resumes(
    redis_cluster: RedisClusterSet, redis_cluster_url: str, fake_upstream: FakeUpstream
) -> None:
    env = {**CLUSTER_ENV, "SEMCACHE_REDIS_TIMEOUT": "0.2"}
    frozen = redis_cluster.nodes[1]
    with ProxyProcess(fake_upstream.url, redis_url=redis_cluster_url, env=env) as proxy:
        async with client_for(proxy.url, timeout=5.0) as client:
            load = Load(client, PromptMix(uuid.uuid4().hex[:8]), workers=12)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                assert await wait_until(lambda: hits(load.results) >= 10, within=5)
                frozen.pause()
                paused = time.monotonic()
                try:
                    # Shorter than cluster-node-timeout: the cluster itself stays up.
                    await wait_until(lambda: time.monotonic() - paused >= 2.0, within=3)
                finally:
                    frozen.resume()
                resumed = time.monotonic()
                back = await wait_until(lambda: hits(load.since(resumed)) >= 20, within=8)
                stop.set()

    assert problems(load.results) == []
    during = [r for r in load.results if paused <= r.started < resumed]
    assert len(during) >= 20, "too little load while a master was frozen"
    assert back, "no cache hits within 8 s of the master resuming"
