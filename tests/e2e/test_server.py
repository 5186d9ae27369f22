"""``semcache serve``'s own HTTP server, over raw sockets: what it refuses before any route."""

from __future__ import annotations

import contextlib
import socket

import httpx
import orjson

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess


def head_with(proxy: ProxyProcess, headers: list[bytes]) -> bytes:
    """Send a GET /healthz with ``headers``; everything the server answers before it closes."""
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may close while the head is being sent
            sock.sendall(  # in one piece: the server may read it all at once
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + b"".join(line + b"\r\n" for line in headers)
                + b"\r\n"
            )
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def test_a_request_head_is_bounded_in_size(fake_upstream: FakeUpstream) -> None:
    """uvicorn's httptools protocol keeps every header line of a head that never ends: four
    connections sending 96 MB of them took 380 MB. Past 64 KB the head is refused with a 400
    and the connection closed, also when the read that passes 64 KB holds the head's end (how
    the server reads a head is tested in tests/unit/test_server.py); an ordinary large head,
    or a body larger than that arriving with its head, still works."""
    with ProxyProcess(fake_upstream.url) as proxy:
        ordinary = head_with(proxy, [b"X-Big: " + b"a" * 30_000, b"X-Other: 1"])
        assert ordinary.startswith(b"HTTP/1.1 200")
        too_long = head_with(proxy, [b"X-A: " + b"a" * 1000] * 100)
        assert too_long.startswith(b"HTTP/1.1 400")
        error = orjson.loads(too_long.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "request_head_too_large"
        metrics = httpx.get(proxy.url + "/metrics").text
        assert "semcache_request_heads_refused_total 1\n" in metrics
        body = b'{"model": "m", "input": "' + b"a" * 300_000 + b'"}'
        large = httpx.post(proxy.url + "/v1/embeddings", content=body, timeout=30,
                           headers={"content-type": "application/json"})  # fmt: skip
        assert large.status_code == 200
        assert httpx.get(proxy.url + "/healthz").status_code == 200  # still serving
