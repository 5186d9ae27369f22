"""Every other /v1/* request is forwarded untouched."""

from __future__ import annotations

import asyncio
import gzip
import logging

import httpx
import pytest

from proxy.http import dashboard
from proxy.upstream.client import OWN_COOKIE_PREFIX
from tests.unit.harness import Proxy, served_on

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


async def test_a_head_answer_keeps_the_upstream_length_and_status(proxy: Proxy) -> None:
    """A HEAD answer has no body: the length it gives is the one a GET would get, so it is
    relayed as the upstream sent it (uvicorn adds none to a HEAD answer)."""
    proxy.upstream.head("/models").respond(
        200, headers={"content-length": "1234", "content-type": "application/json"}
    )
    proxy.upstream.head("/models/nope").respond(
        404, headers={"content-length": "17", "content-type": "text/plain"}
    )
    found = await proxy.client.head("/v1/models")
    missing = await proxy.client.head("/v1/models/nope")
    assert (found.status_code, found.headers["content-length"]) == (200, "1234")
    assert found.headers["content-type"] == "application/json"
    assert found.headers["x-cache"] == "BYPASS"
    # An error with no body to rewrite in OpenAI's format is relayed as it came.
    assert (missing.status_code, missing.headers["content-length"]) == (404, "17")
    assert missing.headers["content-type"] == "text/plain"
    assert found.content == missing.content == b""


async def test_a_relayed_body_keeps_the_upstream_length(proxy: Proxy) -> None:
    """A file download's size reaches the client as the upstream gave it; a gzip body sent on
    encoded keeps the encoded length; an event stream's is not relayed (a cut one ends with an
    error event the length would not allow)."""
    content = b"x" * 5000
    proxy.upstream.get("/files/f1/content").respond(
        200, content=content, headers={"content-type": "application/octet-stream"}
    )
    packed = gzip.compress(content)
    proxy.upstream.get("/files/f2/content").respond(
        200, content=packed, headers={"content-encoding": "gzip"}
    )
    proxy.upstream.get("/events").respond(
        200, content=b"data: 1\n\n", headers={"content-type": "text/event-stream"}
    )
    plain = await proxy.client.get("/v1/files/f1/content")
    assert (plain.headers["content-length"], plain.content) == ("5000", content)
    gzipped = await proxy.client.get("/v1/files/f2/content", headers={"accept-encoding": "gzip"})
    assert gzipped.headers["content-length"] == str(len(packed))
    assert (gzipped.headers["content-encoding"], gzipped.content) == ("gzip", content)
    events = await proxy.client.get("/v1/events")
    assert "content-length" not in events.headers
    assert events.content == b"data: 1\n\n"


@pytest.mark.parametrize(
    "path",
    ["/v1/files/%2e%2e/admin", "/v1/files/..%2F..%2Fadmin", "/v1/files/x%2F..%2F..%2Fadmin",
     "/v1/files/..%5C..%5Cadmin"],
)  # fmt: skip
async def test_a_dot_segment_never_reaches_the_upstream(proxy: Proxy, path: str) -> None:
    """Written plainly, escaped, or behind an escaped slash that a gateway in front of the
    upstream may decode before it resolves the dots (nginx does): each could climb out of the
    upstream's base path, and each is a 400 that never goes upstream."""
    route = proxy.upstream.route().respond(200, json={})
    answer = await proxy.client.get(path)
    assert answer.status_code == 400
    assert "'.' or '..'" in answer.json()["error"]["message"]
    assert route.call_count == 0
    fine = await proxy.client.get("/v1/files/file-a.b..c/content")
    assert (fine.status_code, route.call_count) == (200, 1)


async def test_semcaches_own_cookies_never_reach_the_upstream(proxy: Proxy) -> None:
    """The dashboard's session (a browser signed in before it was scoped to ``/dashboard`` still
    sends it on every route) is an admin credential: it is taken out of a forwarded ``Cookie``,
    the client's other cookies go on, and a header of semcache's cookies alone is dropped."""
    assert dashboard.COOKIE.encode().startswith(OWN_COOKIE_PREFIX)
    route = proxy.upstream.get("/models").respond(200, json={"data": []})
    session = f"{dashboard.COOKIE}=123.abc"
    await proxy.client.get("/v1/models", headers={"cookie": f"a=1; {session}; b=2"})
    assert route.calls.last.request.headers["cookie"] == "a=1; b=2"
    await proxy.client.get("/v1/models", headers={"cookie": session})
    assert "cookie" not in route.calls.last.request.headers
    await proxy.client.get("/v1/models", headers={"cookie": "a=1"})
    assert route.calls.last.request.headers["cookie"] == "a=1"


async def test_an_escaped_v1_prefix_is_refused(proxy: Proxy) -> None:
    """``/%761/models`` reads as ``/v1/models``, but as sent it is no path under the upstream's
    base URL: semcache cannot map it without changing it."""
    route = proxy.upstream.route().respond(200, json={})
    response = await proxy.client.get("/%761/models")
    assert response.status_code == 400
    assert route.call_count == 0


async def _served_by_uvicorn(app: object, request: bytes) -> tuple[bytes, bool, list[str]]:
    """``request`` through semcache's serving protocol (uvicorn's httptools one), which
    holds a body to the ``Content-Length`` it was told: what it wrote, whether it dropped the
    connection, and what it logged as an error."""
    errors: list[str] = []

    class Errors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record.getMessage())

    handler = Errors(logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        protocol, socket = served_on(app)
        protocol.data_received(request)
        for _ in range(200):
            if socket.closed or (protocol.cycle is not None and protocol.cycle.response_complete):
                break
            await asyncio.sleep(0.01)
        dropped = socket.closed
        protocol.connection_lost(None)
    finally:
        logger.removeHandler(handler)
    return socket.written, dropped, errors


async def test_a_not_modified_answer_with_a_length_is_relayed_without_a_failure(
    proxy: Proxy,
) -> None:
    """A 304 may say the length of the representation it stands for (RFC 9110 §8.6) but has
    no body. Relayed with that length on a GET, uvicorn waited for the body the length
    announced, raised 'Response content shorter than Content-Length' (an ASGI exception in the
    log) and dropped the connection."""
    proxy.upstream.get("/files/f1/content").respond(
        304, headers={"etag": '"v1"', "content-length": "5000"}
    )
    written, dropped, errors = await _served_by_uvicorn(
        proxy.app,
        b'GET /v1/files/f1/content HTTP/1.1\r\nhost: semcache.test\r\nif-none-match: "v1"\r\n\r\n',
    )
    assert written.startswith(b"HTTP/1.1 304 ")
    assert b'etag: "v1"' in written
    assert errors == []
    assert not dropped, "the keep-alive connection was dropped"
