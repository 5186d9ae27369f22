"""Whole-cache totals: each process adds its counts to the store; every process reads the sum."""

from __future__ import annotations

from typing import Any

import pytest

import proxy.totals
from proxy.errors import StoreError
from proxy.metrics import Metrics
from proxy.stores.base import Entry
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore
from proxy.totals import COUNTERS, Totals, summary
from tests.unit.harness import FakeClock, chat_body, completion, make_proxy


class FlakyStore(MemoryStore):
    """Counter writes fail while ``down`` is set."""

    down = False

    async def incr_counters(self, name: str, deltas: dict[str, int]) -> None:
        if self.down:
            raise StoreError("down")
        await super().incr_counters(name, deltas)


def served(metrics: Metrics, *, hits: int, misses: int, tokens: int = 0) -> None:
    for _ in range(hits):
        metrics.request("chat", "hit")
        metrics.hit("exact", Entry("00" * 8, b"{}", 0.0, tokens), model="gpt-test")
    for _ in range(misses):
        metrics.request("chat", "miss")


@pytest.mark.anyio
async def test_two_processes_on_one_store_read_the_same_sum() -> None:
    store = MemoryStore(max_entries=10, max_bytes=10_000)
    a_metrics, b_metrics = Metrics(), Metrics()
    a = Totals(Cache(store, a_metrics), a_metrics)
    b = Totals(Cache(store, b_metrics), b_metrics)
    served(a_metrics, hits=3, misses=1, tokens=5)
    served(b_metrics, hits=1, misses=2, tokens=5)
    assert await b.flush()
    seen_by_a = await a.read()
    assert seen_by_a == await b.read()
    assert seen_by_a == {
        "requests": {"chat hit": 4, "chat miss": 3},
        "hits": 4,
        "misses": 3,
        "hit_rate": round(4 / 7, 4),
        "hits_by_lookup": {"exact": 4},
        "tokens_saved": 20,
    }


@pytest.mark.anyio
async def test_each_count_is_added_once_across_flushes() -> None:
    store = MemoryStore(max_entries=10, max_bytes=10_000)
    metrics = Metrics()
    totals = Totals(Cache(store, metrics), metrics)
    served(metrics, hits=2, misses=1)
    assert await totals.flush()
    assert await totals.flush()  # nothing new: nothing added
    served(metrics, hits=1, misses=0)
    assert await totals.flush()
    assert await store.read_counters(COUNTERS) == {
        "requests:chat:hit": 3,
        "requests:chat:miss": 1,
        "hits:exact": 3,
    }  # a count that never moved is never written


@pytest.mark.anyio
async def test_counts_a_failed_flush_could_not_send_go_with_the_next() -> None:
    store = FlakyStore(max_entries=10, max_bytes=10_000)
    metrics = Metrics()
    totals = Totals(Cache(store, metrics), metrics)
    served(metrics, hits=1, misses=1)
    store.down = True
    assert not await totals.flush()
    assert await totals.read() == summary({})  # reads work, nothing was added
    served(metrics, hits=1, misses=0)
    store.down = False
    assert await totals.flush()
    stored = summary(await store.read_counters(COUNTERS))
    assert (stored["hits"], stored["misses"]) == (2, 1)


@pytest.mark.anyio
async def test_a_process_that_stops_adds_what_it_counted_since_the_last_flush(
    upstream_mock: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy.totals, "FLUSH_SECONDS", 3600.0)  # no periodic flush in this test
    upstream_mock.post("/chat/completions").respond(200, json=completion())
    async with make_proxy(upstream_mock, clock) as semcache:
        await semcache.chat(chat_body())
        await semcache.chat(chat_body())
        store = semcache.store
        assert await store.read_counters(COUNTERS) == {}
    stored = summary(await store.read_counters(COUNTERS))
    assert (stored["hits"], stored["misses"]) == (1, 1)
