"""Adaptive thresholds on a real redis-server: replicas add up their evidence and agree on the
line; a restarted proxy finds it where it was."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from proxy.metrics import Metrics
from proxy.semantic.adaptive import Adaptive, bin_of, edge
from proxy.stores.guard import Cache
from proxy.stores.redis import RedisStore

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
GROUP = "learned:test|gpt-test"


@pytest.fixture
async def replica(redis_url: str, key_prefix: str) -> AsyncIterator[Callable[[], Adaptive]]:
    stores: list[RedisStore] = []

    def start() -> Adaptive:
        store = RedisStore.from_url(redis_url, prefix=key_prefix, timeout_seconds=1.0)
        stores.append(store)
        return Adaptive(Cache(store, Metrics()), 0.005)

    yield start
    for store in stores:
        await store.close()


async def test_replicas_share_evidence_and_a_restart_keeps_it(
    replica: Callable[[], Adaptive],
) -> None:
    a, b = replica(), replica()
    # Each replica sees half the traffic: 300 clean comparisons just below the calibrated line.
    for adaptive in (a, b):
        for _ in range(300):
            adaptive.looked_up(GROUP, -0.05)
            adaptive.observed(GROUP, -0.05, wrong=False)
    await a.sync()
    await b.sync()
    await a.sync()
    line = edge(bin_of(-0.05))
    assert a.offset(GROUP) == b.offset(GROUP) == line  # 600 together: below the line
    assert a.group(GROUP).counters["n"] == 600

    half = replica()  # 300 alone are too few to move the line: it stays calibrated
    for _ in range(300):
        half.looked_up("other|group", -0.05)
        half.observed("other|group", -0.05, wrong=False)
    await half.sync()
    assert half.offset("other|group") == 0.0

    restarted = replica()
    assert restarted.offset(GROUP) == 0.0  # nothing read yet
    await restarted.sync()
    assert restarted.offset(GROUP) == line
    assert restarted.group(GROUP).counters["n"] == 600
