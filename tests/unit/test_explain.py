"""``POST /cache/explain``: what a request would get and why, changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import respx

from proxy.semantic.embedders import HashEmbedder
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

TOKEN = "admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64), admin_token=TOKEN) as p:
        yield p


async def ask(proxy: Proxy, text: str, **fields: Any) -> dict[str, Any]:
    response = await proxy.client.post(
        "/cache/explain", json={"request": chat_body(text), **fields}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_an_exact_hit_is_explained_with_its_entry(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    answer = await ask(proxy, QUESTION, api_key="sk-a")
    real = await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    assert answer["decision"] == "HIT"
    assert answer["lookup"] == real.headers["x-cache-lookup"] == "exact"
    assert answer["entry_id"] == real.headers["x-cache-entry-id"]
    assert answer["exact"]["fresh"] is True


async def test_a_stored_completion_is_explained_as_exact_only(proxy: Proxy) -> None:
    """As the request would be served: ``"store": true`` is matched exactly only."""
    await proxy.chat(chat_body(QUESTION, store=True), authorization="Bearer sk-a")
    answer = await ask(proxy, SAME_WORDS, api_key="sk-a", request=chat_body(SAME_WORDS, store=True))
    real = await proxy.chat(chat_body(SAME_WORDS, store=True), authorization="Bearer sk-a")
    assert (answer["decision"], answer["reason"]) == ("MISS", "stored-response")
    assert real.headers["x-cache-reason"] == "stored-response"
    assert answer["semantic"]["skipped"] == "stored-response"


async def test_a_semantic_hit_shows_the_candidate_and_verdict(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    answer = await ask(proxy, SAME_WORDS, api_key="sk-a")
    real = await proxy.chat(chat_body(SAME_WORDS), authorization="Bearer sk-a")
    assert answer["decision"] == "HIT"
    assert answer["lookup"] == real.headers["x-cache-lookup"] == "semantic"
    assert answer["similarity"] == pytest.approx(1.0, abs=1e-4)
    [candidate] = answer["semantic"]["candidates"]
    assert candidate["entry_id"] == answer["entry_id"] == real.headers["x-cache-entry-id"]
    assert candidate["text"] == QUESTION
    assert candidate["accepted"] is True


async def test_a_refusal_names_the_rule_like_the_real_request(proxy: Proxy) -> None:
    await proxy.chat(chat_body("What is 2 plus 2?"), authorization="Bearer sk-a")
    headers = {"X-Cache-Threshold": "0.3"}
    answer = await ask(proxy, "What is 2 plus 3?", api_key="sk-a", headers=headers)
    real = await proxy.chat(
        chat_body("What is 2 plus 3?"), authorization="Bearer sk-a", **{"x-cache-threshold": "0.3"}
    )
    assert answer["decision"] == "MISS"
    assert answer["reason"] == real.headers["x-cache-reason"] == "rejected:number"
    [candidate] = answer["semantic"]["candidates"]
    assert (candidate["accepted"], candidate["reason"]) == (False, "number")


async def test_another_tenants_entries_never_show(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    for text in (QUESTION, SAME_WORDS):
        answer = await ask(proxy, text, api_key="sk-b")
        assert answer["decision"] == "MISS"
        assert answer["reason"] == "no-entry"
        assert answer["exact"]["found"] is False
        assert answer["semantic"]["candidates"] == []


async def test_a_project_header_is_explained_as_the_request_would_be_served(
    proxy: Proxy,
) -> None:
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a", **{"openai-project": "p1"})
    same = await ask(proxy, QUESTION, api_key="sk-a", headers={"OpenAI-Project": "p1"})
    other = await ask(proxy, QUESTION, api_key="sk-a", headers={"OpenAI-Project": "p2"})
    unnamed = await ask(proxy, QUESTION, api_key="sk-a")
    assert [a["decision"] for a in (same, other, unnamed)] == ["HIT", "MISS", "MISS"]


async def test_explaining_changes_nothing(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    before = (await proxy.client.get("/cache/stats", headers=ADMIN)).json()
    for text in (QUESTION, SAME_WORDS, "Something else entirely", "x " * 600):
        await ask(proxy, text, api_key="sk-a")
    after = (await proxy.client.get("/cache/stats", headers=ADMIN)).json()
    assert proxy.upstream.routes[0].call_count == 1
    for field in ("requests", "semantic", "semantic_rejections", "miss_reasons", "stored", "store"):
        assert after[field] == before[field], field
    # Nothing was stored for the explained prompts: the real request still misses.
    assert (await proxy.chat(chat_body(SAME_WORDS + "!"), authorization="Bearer sk-c")).headers[
        "x-cache"
    ] == "MISS"


async def test_bypass_and_stale_are_explained(proxy: Proxy) -> None:
    await proxy.chat(chat_body(QUESTION))
    bypass = await ask(proxy, QUESTION, api_key="sk-test-a", headers={"X-Cache-Bypass": "1"})
    assert (bypass["decision"], bypass["reason"]) == ("BYPASS", "bypass:header")
    proxy.clock.advance(120)
    stale = await ask(proxy, QUESTION, api_key="sk-test-a", headers={"Cache-Control": "max-age=60"})
    assert (stale["decision"], stale["reason"]) == ("MISS", "stale")


async def test_a_key_the_proxy_refuses_is_explained_as_refused(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN, client_keys="sk-allowed") as p:
        response = await p.client.post(
            "/cache/explain", json={"request": chat_body(), "api_key": "sk-other"}, headers=ADMIN
        )
    assert response.status_code == 200
    assert response.json()["decision"] == "REFUSED"
    assert response.json()["status"] == 401


async def test_explain_needs_the_admin_token(
    proxy: Proxy, upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    body = {"request": chat_body()}
    assert (await proxy.client.post("/cache/explain", json=body)).status_code == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert (await proxy.client.post("/cache/explain", json=body, headers=wrong)).status_code == 401
    async with make_proxy(upstream_mock, clock) as without_token:
        off = await without_token.client.post("/cache/explain", json=body, headers=ADMIN)
    assert off.status_code == 403


@pytest.mark.parametrize(
    "body",
    [{}, {"request": "hi"}, {"request": {"model": "m"}}, {"request": chat_body(), "api_key": 5}],
)
async def test_a_bad_explain_body_is_a_400(proxy: Proxy, body: dict[str, Any]) -> None:
    response = await proxy.client.post("/cache/explain", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("name", "value", "other"),
    [
        ("OpenAI-Beta", "assistants=v2", "assistants=v1"),
        ("x-portkey-config", "pc-prod", "pc-test"),
    ],
)
async def test_a_routing_header_scopes_the_explanation_as_the_request(
    proxy: Proxy, name: str, value: str, other: str
) -> None:
    """A request with a routing header (``ROUTING_HEADERS``) has a namespace of its own: the
    explanation, given the same header, finds the entry that request made; given another value
    or none, it does not, as the real requests would not."""
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a", **{name: value})
    same = await ask(proxy, QUESTION, api_key="sk-a", headers={name: value})
    changed = await ask(proxy, QUESTION, api_key="sk-a", headers={name: other})
    without = await ask(proxy, QUESTION, api_key="sk-a")
    hit = await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a", **{name: value})
    real = await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a", **{name: other})
    assert (same["decision"], same["entry_id"]) == ("HIT", hit.headers["x-cache-entry-id"])
    assert (changed["decision"], without["decision"]) == ("MISS", "MISS")
    assert changed["reason"] == without["reason"] == real.headers["x-cache-reason"] == "no-entry"
    assert len({same["namespace"], changed["namespace"], without["namespace"]}) == 3
