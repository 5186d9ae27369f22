"""Every other /v1/* request is forwarded untouched."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.harness import Proxy

pytestmark = pytest.mark.anyio


async def test_method_path_query_headers_and_body_are_forwarded(proxy: Proxy) -> None:
    route = proxy.upstream.route(method="PATCH").respond(
        201, json={"ok": True}, headers={"x-upstream": "1", "set-cookie": "a=1"}
    )
    response = await proxy.client.patch(
        "/v1/files/abc%2Fdef?limit=2&after=x",
        content=b"raw-bytes",
        headers={"authorization": "Bearer sk-1", "x-extra": "yes", "connection": "keep-alive"},
    )
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert response.headers["x-upstream"] == "1"
    sent = route.calls.last.request
    assert sent.url.raw_path == b"/v1/files/abc%2Fdef?limit=2&after=x"
    assert sent.content == b"raw-bytes"
    assert sent.headers["authorization"] == "Bearer sk-1"
    assert sent.headers["x-extra"] == "yes"


async def test_models_list_passes_through(proxy: Proxy) -> None:
    proxy.upstream.get("/models").respond(200, json={"object": "list", "data": []})
    response = await proxy.client.get("/v1/models")
    assert response.json() == {"object": "list", "data": []}
    # Forwarded, not cached: it says so (and why).
    assert response.headers["x-cache"] == "BYPASS"
    assert response.headers["x-cache-reason"] == "not-cacheable:route"


async def test_error_statuses_pass_through(proxy: Proxy) -> None:
    proxy.upstream.get("/models/nope").respond(404, json={"error": {"message": "no such model"}})
    response = await proxy.client.get("/v1/models/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "no such model"}}


async def test_unreachable_upstream_is_a_502(proxy: Proxy) -> None:
    proxy.upstream.get("/models").mock(side_effect=httpx.ConnectError("refused"))
    response = await proxy.client.get("/v1/models")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


async def test_timeout_is_a_504(proxy: Proxy) -> None:
    proxy.upstream.get("/models").mock(side_effect=httpx.ReadTimeout("slow"))
    response = await proxy.client.get("/v1/models")
    assert response.status_code == 504
