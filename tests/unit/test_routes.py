"""The cache routes, dispatched straight to their handlers, answer like every other route."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.cache.embeddings import EmbeddingPipeline
from proxy.cache.pipeline import ChatPipeline
from tests.unit.harness import Proxy, chat_body, completion

pytestmark = pytest.mark.anyio


async def broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug, not a request problem")


async def test_a_bug_in_the_chat_route_is_an_openai_format_500(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ChatPipeline, "handle", broken)
    response = await proxy.chat(chat_body())
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "unexpected error on POST /v1/chat/completions" in caplog.text
    assert "sk-test-a" not in caplog.text


async def test_a_bug_in_the_embeddings_route_is_an_openai_format_500(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddingPipeline, "handle", broken)
    response = await proxy.client.post(
        "/v1/embeddings",
        json={"model": "emb-test", "input": "x"},
        headers={"authorization": "Bearer sk-test-a"},
    )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_other_methods_on_a_cache_route_pass_through(proxy: Proxy, method: str) -> None:
    route = proxy.upstream.request(method, "/chat/completions").respond(200, json={"object": "x"})
    response = await proxy.client.request(
        method, "/v1/chat/completions", headers={"authorization": "Bearer sk-test-a"}
    )
    assert response.status_code == 200
    assert route.call_count == 1
    assert response.headers["x-cache"] == "BYPASS"


async def test_a_trailing_slash_is_not_the_cache_route(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions/").respond(200, json={"object": "x"})
    response = await proxy.client.post(
        "/v1/chat/completions/", json=chat_body(), headers={"authorization": "Bearer sk-test-a"}
    )
    assert response.status_code == 200
    assert route.call_count == 1
    assert response.headers["x-cache"] == "BYPASS"  # forwarded as any other route


@pytest.mark.parametrize(
    "path", ["/v1/chat%2Fcompletions", "/v1/chat/%63ompletions", "/v1/%72esponses"]
)
async def test_an_escaped_path_is_passed_through_as_sent_never_cached(
    proxy: Proxy, path: str
) -> None:
    """A path with percent-escapes reads as a cache route once decoded, but which route it is
    is the upstream's to say (a slash escaped is no separator to most): it goes on as the
    client wrote it, and is never cached."""
    route = proxy.upstream.route().respond(200, json=completion())
    answers = [
        await proxy.client.post(path, json=chat_body(), headers={"authorization": "Bearer sk-a"})
        for _ in range(2)
    ]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert answers[0].headers["x-cache-reason"] == "not-cacheable:route"
    assert route.call_count == 2
    assert [c.request.url.raw_path for c in route.calls] == [path.encode()] * 2


async def test_a_client_cannot_forge_lines_in_the_debug_log(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """``--log-level debug`` logs each request's path, which arrives percent-decoded: an
    escaped CR or LF (``/v1/x%0D%0A...``) would otherwise start a line of the client's choosing
    in the operator's log. Control characters are written escaped; the line stays one line."""
    caplog.set_level("DEBUG", logger="semcache.requests")
    forged = "2026-01-01 00:00:00,000 INFO semcache.app: cache cleared"
    await proxy.client.get(f"/nothing%0D%0A{forged.replace(' ', '%20')}%1B[2J")
    [record] = [r for r in caplog.records if r.name == "semcache.requests"]
    line = record.getMessage()
    for control in ("\n", "\r", "\x1b"):
        assert control not in line
    assert "/nothing\\r\\n2026-01-01" in line  # still there to read, escaped
