"""Live quality across real processes: two ``semcache serve`` replicas on one redis-server add up
their evidence, and a restarted replica finds it; shadow mode serves nothing semantically."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess

pytestmark = pytest.mark.redis
ENV = {"SEMCACHE_EMBED_MODEL": "hash:64", "SEMCACHE_SEMANTIC_MODE": "shadow"}
PAIRS = 20


def ask(proxy: ProxyProcess, text: str) -> httpx.Response:
    body = {"model": "gpt-fake", "messages": [{"role": "user", "content": text}]}
    headers = {"authorization": "Bearer sk-live-quality"}
    response = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers)
    assert response.status_code == 200
    return response


def group(proxy: ProxyProcess) -> dict[str, Any]:
    stats = httpx.get(proxy.url + "/cache/stats").json()
    (found,) = [g for g in stats["groups"] if g["group"].endswith("|gpt-fake")]
    return dict(found)


def settled(proxies: list[ProxyProcess], compared: int) -> list[dict[str, Any]]:
    """Each replica's view once it shows ``compared`` comparisons (they sync every 2 s)."""
    deadline = time.monotonic() + 20
    while True:
        views = [group(p) for p in proxies]
        if all(v["evidence"]["compared"] == compared for v in views):
            return views
        assert time.monotonic() < deadline, views
        time.sleep(0.5)


def test_replicas_share_the_evidence_and_a_restart_keeps_it(
    fake_upstream: FakeUpstream, redis_url: str
) -> None:
    with (
        ProxyProcess(fake_upstream.url, redis_url=redis_url, env=ENV) as a,
        ProxyProcess(fake_upstream.url, redis_url=redis_url, env=ENV) as b,
    ):
        for i in range(PAIRS):
            replica = a if i % 2 else b
            ask(replica, f"alpha{i} beta{i} gamma{i} delta{i}")
            # Three words of four in common: a candidate below the line, compared for free
            # (the fake upstream numbers its answers, so the two differ).
            near = ask(replica, f"alpha{i} beta{i} gamma{i} epsilon{i}")
            assert near.headers["x-cache"] == "MISS"
            assert "x-cache-shadow" not in near.headers
        view_a, view_b = settled([a, b], PAIRS)
        assert view_a["lookups"] == view_b["lookups"] == 2 * PAIRS
        assert view_a["evidence"] == view_b["evidence"] == {"compared": PAIRS, "different": PAIRS}
        assert view_a["threshold_offset"] == view_b["threshold_offset"]
        a.stop()
        with ProxyProcess(fake_upstream.url, redis_url=redis_url, env=ENV) as restarted:
            ask(restarted, "an unrelated question to wake the group up")
            (view,) = settled([restarted], PAIRS)
            assert view["lookups"] == 2 * PAIRS + 1
    assert fake_upstream.calls() == 2 * PAIRS + 1  # shadow mode: every request went upstream
