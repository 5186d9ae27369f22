"""Routes semcache forwards without caching, through a real ``semcache serve``: what reaches
the client over HTTP (uvicorn frames the answer) and what reaches the upstream."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess


@pytest.fixture(scope="module")
def served(fake_upstream_server: FakeUpstream) -> Iterator[ProxyProcess]:
    with ProxyProcess(fake_upstream_server.url) as proxy:
        yield proxy


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("path", ["/v1/models", "/api/tags"])
def test_an_answer_has_the_upstream_length(
    served: ProxyProcess, fake_upstream: FakeUpstream, path: str, method: str
) -> None:
    """uvicorn frames a relayed body with the upstream's length, not chunked; a HEAD answer
    has no body but the length a GET would get."""
    direct = httpx.request(method, fake_upstream.url.removesuffix("/v1") + path, timeout=10)
    relayed = httpx.request(method, served.url + path, timeout=10)
    assert relayed.status_code == direct.status_code == 200
    assert int(relayed.headers["content-length"]) > 0
    assert relayed.headers["content-length"] == direct.headers["content-length"]
    assert "transfer-encoding" not in relayed.headers
    assert relayed.content == direct.content
    assert (relayed.content == b"") == (method == "HEAD")


def test_an_escaped_cache_route_reaches_the_upstream_as_sent(
    served: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    """``/v1/chat%2Fcompletions`` is not the chat route as sent: relayed twice, never cached,
    and the upstream sees the path the client wrote."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "Hi?"}]}
    answers = [
        httpx.post(served.base_url + "/chat%2Fcompletions", json=body, timeout=10) for _ in range(2)
    ]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert [r.raw_path for r in fake_upstream.requests] == [b"/v1/chat%2Fcompletions"] * 2
