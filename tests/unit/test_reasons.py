"""``X-Cache-Reason``: every miss and bypass says why, and never tells of another tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import respx

from proxy.semantic.embedders import EmbedderError, HashEmbedder, Vector
from tests.unit.harness import (
    QUESTION,
    SAME_WORDS,
    FakeClock,
    Proxy,
    chat_body,
    make_proxy,
    numbered,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64)) as p:
        yield p


async def reason(proxy: Proxy, body: dict[str, Any], **headers: str) -> str:
    response = await proxy.chat(body, **headers)
    assert response.status_code == 200
    assert response.headers["x-cache"] in ("MISS", "BYPASS"), response.headers["x-cache"]
    return response.headers["x-cache-reason"]


async def test_a_first_question_has_no_entry(proxy: Proxy) -> None:
    assert await reason(proxy, chat_body(QUESTION)) == "no-entry"


async def test_a_hit_gives_no_reason(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION))
    hit = await proxy.chat(chat_body(QUESTION))
    assert hit.headers["x-cache"] == "HIT"
    assert "x-cache-reason" not in hit.headers


async def test_a_neighbour_under_the_line_is_below_threshold_with_its_similarity(
    proxy: Proxy,
) -> None:
    await proxy.chat(chat_body("How do I bake bread at home"))
    got = await reason(proxy, chat_body("How do I bake sourdough bread at home"))
    kind, _, similarity = got.partition(" ")
    assert kind == "below-threshold"
    assert 0.5 < float(similarity) < 1.0


async def test_a_rule_names_itself(proxy: Proxy) -> None:
    await proxy.chat(chat_body("What is 2 plus 2?"))
    got = await reason(proxy, chat_body("What is 2 plus 3?"), **{"x-cache-threshold": "0.3"})
    assert got == "rejected:number"


async def test_another_tenants_entry_is_never_mentioned(proxy: Proxy) -> None:
    """Tenants b and c ask what tenant a stored, word for word and reworded: they hear only
    that nothing is there, exactly as if a had never asked (no similarity, no 'stale')."""
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    for key, text in (("sk-b", QUESTION), ("sk-c", SAME_WORDS)):
        assert await reason(proxy, chat_body(text), authorization=f"Bearer {key}") == "no-entry"
    stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["miss_reasons"] == {"no-entry": 3}


async def test_an_entry_too_old_for_max_age_is_stale(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION))
    proxy.clock.advance(120)
    assert await reason(proxy, chat_body(QUESTION), **{"cache-control": "max-age=60"}) == "stale"


async def test_no_cache_skips_the_lookup(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION))
    assert await reason(proxy, chat_body(QUESTION), **{"cache-control": "no-cache"}) == "no-cache"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-cache-bypass": "true"}, "bypass:header"),
        ({"cache-control": "no-cache, no-store"}, "bypass:cache-control"),
    ],
)
async def test_a_bypass_says_why(proxy: Proxy, headers: dict[str, str], expected: str) -> None:
    await proxy.chat(chat_body(QUESTION))
    response = await proxy.chat(chat_body(QUESTION), **headers)
    assert response.headers["x-cache"] == "BYPASS"
    assert response.headers["x-cache-reason"] == expected
    text = (await proxy.client.get("/metrics")).text
    assert f'semcache_miss_reasons_total{{reason="{expected}"}} 1' in text


async def test_semantic_off_for_the_request(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION))
    got = await reason(proxy, chat_body(SAME_WORDS), **{"x-cache-semantic": "off"})
    assert got == "semantic-off"


async def test_semantic_off_without_an_embedder(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(upstream_mock, clock) as p:
        assert await reason(p, chat_body(QUESTION)) == "semantic-off"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "x " * 600}], "too-long"),
        (
            [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c1", "content": "Paris"},
            ],
            "no-user-text",
        ),
    ],
)
async def test_prompts_semantic_lookup_cannot_compare(
    proxy: Proxy, messages: list[dict[str, Any]], expected: str
) -> None:
    assert await reason(proxy, {"model": "gpt-test", "messages": messages}) == expected


class BrokenEmbedder:
    name = "broken"

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        raise EmbedderError("embedder is down")


async def test_an_embedder_failure_is_semantic_unavailable(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(upstream_mock, clock, embedder=BrokenEmbedder()) as p:
        assert await reason(p, chat_body(QUESTION)) == "semantic-unavailable"


async def test_shadow_mode_says_it_would_have_hit(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), semantic_mode="shadow"
    ) as p:
        await p.chat(chat_body(QUESTION))
        response = await p.chat(chat_body(SAME_WORDS))
    assert response.headers["x-cache"] == "MISS"
    assert response.headers["x-cache-shadow"] == "HIT"
    assert response.headers["x-cache-reason"] == "shadow"
    assert route.call_count == 2


async def test_a_streamed_miss_says_why_too(proxy: Proxy) -> None:
    proxy.upstream.routes.clear()
    proxy.upstream.post("/chat/completions").respond(
        200,
        content=b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"Paris"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n",
        headers={"content-type": "text/event-stream"},
    )
    response = await proxy.chat(chat_body(QUESTION, stream=True))
    assert response.headers["x-cache"] == "MISS"
    assert response.headers["x-cache-reason"] == "no-entry"


async def test_embeddings_misses_say_why(proxy: Proxy) -> None:
    proxy.upstream.post("/embeddings").respond(
        200,
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "model": "e",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        },
    )
    body = {"model": "e", "input": "hello"}
    headers = {"authorization": "Bearer sk-test-a"}
    miss = await proxy.client.post("/v1/embeddings", json=body, headers=headers)
    hit = await proxy.client.post("/v1/embeddings", json=body, headers=headers)
    bypass = await proxy.client.post(
        "/v1/embeddings", json=body, headers={**headers, "x-cache-bypass": "1"}
    )
    assert miss.headers["x-cache-reason"] == "no-entry"
    assert "x-cache-reason" not in hit.headers
    assert bypass.headers["x-cache-reason"] == "bypass:header"
