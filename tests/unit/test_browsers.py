"""Browsers and error shapes: CORS (off unless asked), and every error in OpenAI format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from proxy.errors import SettingsError
from proxy.settings import Settings
from tests.unit.harness import FakeClock, Proxy, chat_body, completion, make_proxy

pytestmark = pytest.mark.anyio
APP = "https://app.example.com"
PREFLIGHT = {
    "origin": APP,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


@pytest.fixture
async def cors_proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(upstream_mock, clock, cors_origins=f"{APP}, http://localhost:3000") as p:
        yield p


async def test_preflight_is_answered_by_the_proxy(cors_proxy: Proxy) -> None:
    response = await cors_proxy.client.options("/v1/chat/completions", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert len(cors_proxy.upstream.calls) == 0


async def test_answers_carry_cors_headers_and_expose_the_cache_headers(cors_proxy: Proxy) -> None:
    cors_proxy.upstream.post("/chat/completions").respond(200, json=completion())
    for state in ("MISS", "HIT"):
        response = await cors_proxy.chat(chat_body(), origin=APP)
        assert response.headers["x-cache"] == state
        assert response.headers["access-control-allow-origin"] == APP
        exposed = response.headers["access-control-expose-headers"].lower()
        names = {h.strip() for h in exposed.split(",")}
        assert {"x-cache", "x-cache-entry-id", "age", "x-cache-hit-items"} <= names
        assert "x-cache-shadow" in names
    assert len(cors_proxy.upstream.calls) == 1


async def test_an_origin_not_listed_gets_no_cors_headers(cors_proxy: Proxy) -> None:
    other = {**PREFLIGHT, "origin": "https://evil.example.com"}
    preflight = await cors_proxy.client.options("/v1/chat/completions", headers=other)
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    cors_proxy.upstream.post("/chat/completions").respond(200, json=completion())
    response = await cors_proxy.chat(chat_body(), origin="https://evil.example.com")
    assert response.status_code == 200  # not a browser: the answer itself is not withheld
    assert "access-control-allow-origin" not in response.headers


async def test_cors_is_off_by_default(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(200, json=completion())
    response = await proxy.chat(chat_body(), origin=APP)
    assert "access-control-allow-origin" not in response.headers


async def test_any_origin(upstream_mock: respx.MockRouter, clock: FakeClock) -> None:
    async with make_proxy(upstream_mock, clock, cors_origins="*") as p:
        response = await p.client.options("/v1/embeddings", headers=PREFLIGHT)
        assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origins", ["", " , ", "app.example.com", "ftp://x"])
def test_bad_origins_are_refused(origins: str) -> None:
    with pytest.raises(SettingsError, match="SEMCACHE_CORS_ORIGINS"):
        Settings(cors_origins=origins)


def _is_openai_error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert text in error["message"]
    assert error["code"] == f"upstream_{status}"


async def test_a_plain_text_405_from_the_upstream_becomes_an_openai_error(proxy: Proxy) -> None:
    proxy.upstream.get("/chat/completions").respond(
        405, text="405 method not allowed", headers={"content-type": "text/plain"}
    )
    response = await proxy.client.get("/v1/chat/completions")
    _is_openai_error(response, 405, "405 method not allowed")
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_an_html_gateway_error_becomes_an_openai_error(proxy: Proxy) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    proxy.upstream.post("/chat/completions").respond(
        502, text=page, headers={"content-type": "text/html"}
    )
    for stream in (False, True):
        response = await proxy.chat(chat_body(stream=stream))
        _is_openai_error(response, 502, "502 Bad Gateway")
        assert response.json()["error"]["type"] == "server_error"
        assert response.headers["x-cache"] == "MISS"
    proxy.upstream.post("/embeddings").respond(404, text="404 page not found")
    response = await proxy.client.post("/v1/embeddings", json={"model": "m", "input": "hi"})
    _is_openai_error(response, 404, "404 page not found")


async def test_json_errors_are_relayed_byte_for_byte(proxy: Proxy) -> None:
    raw = b'{"error": {"message": "Invalid model", "type": "invalid_request_error"}}'
    proxy.upstream.post("/chat/completions").respond(
        400, content=raw, headers={"content-type": "application/json"}
    )
    for stream in (False, True):
        response = await proxy.chat(chat_body(stream=stream))
        assert response.status_code == 400
        assert response.content == raw


async def test_semcache_s_own_405_is_an_openai_error(proxy: Proxy) -> None:
    response = await proxy.client.post("/healthz")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"
