"""The upstream client (httpx on :mod:`proxy.upstream.transport`) against a scripted server over
real loopback sockets.

The server writes exactly the bytes each test names, so framing, keep-alive, faults and
timeouts are exercised as an upstream could produce them. Failures are asserted as the proxy
sees them, after :class:`~proxy.upstream.Upstream` translated them (502 or 504).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from proxy.errors import UpstreamTimeoutError, UpstreamUnreachableError
from proxy.metrics import Metrics
from proxy.upstream import Headers, Timeouts, Upstream, UpstreamResponse
from proxy.upstream.client import Content
from proxy.upstream.transport import upstream_transport
from tests.support.ports import free_port

pytestmark = pytest.mark.anyio

TIMEOUTS = Timeouts(connect=5, read=5, write=5, pool=5)


@pytest.fixture(autouse=True)
def direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment: these tests talk to their server directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@dataclass
class Received:
    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes
    connection: int
    fields: list[tuple[bytes, bytes]]
    """Every header field as it came, repeated ones included (``headers`` keeps the last)."""


Respond = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedServer:
    respond: Respond
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].split(b" ", 2)
                headers = {}
                fields = []
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(b":")
                        headers[name.strip().lower()] = value.strip()
                        fields.append((name.strip().lower(), value.strip()))
                if headers.get(b"transfer-encoding") == b"chunked":
                    body = b""
                    while True:
                        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if size == 0:
                            break
                else:
                    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                request = Received(method, target, headers, body, number, fields)
                self.requests.append(request)
                await self.respond(request, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()


def reply(body: bytes, *, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


async def ok(request: Received, writer: asyncio.StreamWriter) -> None:
    writer.write(reply(b'{"echo": "' + request.target + b'"}'))
    await writer.drain()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Respond], Awaitable[ScriptedServer]]]:
    servers: list[ScriptedServer] = []

    async def start(respond: Respond) -> ScriptedServer:
        server = await ScriptedServer(respond).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)


class Client:
    """A few httpx-like calls over :class:`Upstream`, so the tests read plainly."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport | None = None, timeouts: Timeouts = TIMEOUTS
    ) -> None:
        self.transport = upstream_transport("http://127.0.0.1") if transport is None else transport
        self.metrics = Metrics()
        self.upstream = Upstream(
            self.transport, base_url="http://127.0.0.1", api_key=None, metrics=self.metrics,
            timeouts=timeouts,
        )  # fmt: skip

    async def send(
        self, method: str, url: str, *, content: Content = None, headers: Headers | None = None
    ) -> UpstreamResponse:
        return await self.upstream.send(method, url, headers=headers or [], content=content)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, content: Content = None, headers: Headers | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        response = await self.send(method, url, content=content, headers=headers)
        try:
            yield response
        finally:
            await response.aclose()

    async def request(
        self, method: str, url: str, *, content: Content = None, headers: Headers | None = None
    ) -> Answer:
        async with self.stream(method, url, content=content, headers=headers) as r:
            with self.upstream.errors():
                body = await r.aread()
        names = {k.decode(): v.decode() for k, v in r.headers}
        return Answer(r.status_code, names, body)

    async def close(self) -> None:
        await self.upstream.close()

    async def get(self, url: str, *, headers: Headers | None = None) -> Answer:
        return await self.request("GET", url, headers=headers)

    async def head(self, url: str) -> Answer:
        return await self.request("HEAD", url)

    async def post(
        self, url: str, *, content: Content = None, headers: Headers | None = None
    ) -> Answer:
        return await self.request("POST", url, content=content, headers=headers)


MakeClient = Callable[..., Client]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``Client(...)``, closed after the test."""
    made: list[Client] = []

    def make(
        transport: httpx.AsyncBaseTransport | None = None, timeouts: Timeouts = TIMEOUTS
    ) -> Client:
        made.append(Client(transport, timeouts))
        return made[-1]

    yield make
    for c in made:
        await c.close()


@pytest.fixture
def client(make_client: MakeClient) -> Client:
    return make_client()


Serve = Callable[[Respond], Awaitable[ScriptedServer]]


async def test_a_connection_is_kept_and_reused(serve: Serve, client: Client) -> None:
    server = await serve(ok)
    for i in range(5):
        r = await client.post(server.url + f"/v1/x?i={i}", content=b'{"q": 1}')
        assert r.status_code == 200
        assert r.json() == {"echo": f"/v1/x?i={i}"}
    assert server.connections == 1
    assert [q.body for q in server.requests] == [b'{"q": 1}'] * 5
    assert server.requests[0].headers[b"host"] == f"127.0.0.1:{server.port}".encode()


async def test_chunked_and_close_delimited_bodies(serve: Serve, client: Client) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b"hello ", b"chunked ", b"world"):
                writer.write(b"%x\r\n%b\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:  # no length, no chunks: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()

    server = await serve(respond)
    assert (await client.get(server.url + "/chunked")).content == b"hello chunked world"
    assert (await client.get(server.url + "/close")).content == b"until the end"
    assert (await client.get(server.url + "/chunked")).content == b"hello chunked world"
    assert server.connections == 2  # the closed one was not reused


async def test_streamed_upload_is_sent_chunked(serve: Serve, client: Client) -> None:
    server = await serve(ok)

    async def upload() -> AsyncIterator[bytes]:
        for part in (b"one ", b"", b"two ", b"three"):
            yield part

    r = await client.post(server.url + "/up", content=upload())
    assert r.status_code == 200
    assert server.requests[0].headers[b"transfer-encoding"] == b"chunked"
    assert server.requests[0].body == b"one two three"


async def test_a_large_body_streams_through_bounded_buffers(serve: Serve, client: Client) -> None:
    big = bytes(range(256)) * 16_384  # 4 MiB, far above the transport's read-ahead bound

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(big))
        await writer.drain()

    server = await serve(respond)
    async with client.stream("POST", server.url + "/big", content=big) as r:
        received = b""
        async for chunk in r.aiter_raw():
            received += chunk
            await anyio.sleep(0.001)  # a slow reader
    assert received == big
    assert server.requests[0].body == big


async def test_a_reader_that_does_not_read_holds_the_server_back(
    serve: Serve, client: Client
) -> None:
    """Read-ahead is bounded: a stalled reader leaves the rest in the server's hands instead
    of buffering the whole body in semcache's memory."""
    size = 64 * 1024 * 1024  # more than any socket buffers hold
    sent_all = asyncio.Event()

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        sent_all.set()

    server = await serve(respond)
    async with client.stream("GET", server.url + "/huge") as r:
        chunks = r.aiter_raw()
        received = len(await chunks.__anext__())
        await anyio.sleep(0.3)
        assert not sent_all.is_set()
        async for chunk in chunks:
            received += len(chunk)
    assert received == size
    assert sent_all.is_set()


async def test_events_arrive_before_the_body_ends(serve: Serve, client: Client) -> None:
    release = asyncio.Event()

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\nfirst\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"5\r\nlast\n\r\n0\r\n\r\n")

    server = await serve(respond)
    async with client.stream("GET", server.url + "/events") as r:
        chunks = r.aiter_raw()
        assert await chunks.__anext__() == b"first\n"  # while the server still holds the rest
        release.set()
        assert [c async for c in chunks] == [b"last\n"]


async def test_an_idle_connection_the_server_closed_is_not_reused(
    serve: Serve, client: Client
) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(b"{}"))  # keep-alive promised, then dropped while idle
        await writer.drain()
        writer.close()

    server = await serve(respond)
    assert (await client.get(server.url + "/a")).status_code == 200
    await anyio.sleep(0.05)
    assert (await client.get(server.url + "/b")).status_code == 200
    assert server.connections == 2


async def test_an_expired_idle_connection_is_replaced(
    serve: Serve, make_client: MakeClient
) -> None:
    server = await serve(ok)
    client = make_client(upstream_transport(server.url, keepalive_expiry=0.05))
    await client.get(server.url + "/a")
    await anyio.sleep(0.1)
    await client.get(server.url + "/b")
    assert server.connections == 2


async def test_cut_bodies_and_missing_responses_are_errors(serve: Serve, client: Client) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/cut":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        elif request.target == b"/garbage":
            writer.write(b"this is not HTTP\r\n\r\n")
        elif request.target == b"/fine":
            writer.write(reply(b"{}"))
        await writer.drain()
        writer.close()

    server = await serve(respond)
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/cut")
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/silent")
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/garbage")
    assert client.metrics.upstream_errors["unreachable"] == 3
    assert (await client.get(server.url + "/fine")).status_code == 200  # the pool recovered


async def test_timeouts_and_refused_connections(serve: Serve, make_client: MakeClient) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        await anyio.sleep(10)

    server = await serve(respond)
    client = make_client(timeouts=Timeouts(read=0.2))
    with pytest.raises(UpstreamTimeoutError):  # a 504
        await client.get(server.url + "/slow")
    with pytest.raises(UpstreamUnreachableError):  # a 502
        await client.get(f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    assert client.metrics.upstream_errors == {"timeout": 1, "unreachable": 1}


async def test_the_pool_bounds_connections_and_waits(serve: Serve, make_client: MakeClient) -> None:
    release = asyncio.Event()

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/hold":
            await release.wait()
        writer.write(reply(b"{}"))
        await writer.drain()

    server = await serve(respond)
    c = make_client(upstream_transport(server.url, max_connections=1), Timeouts(read=5, pool=0.1))
    held = asyncio.create_task(c.get(server.url + "/hold"))
    await anyio.sleep(0.05)
    with pytest.raises(UpstreamUnreachableError, match="connect timeout"):
        await c.get(server.url + "/other")
    release.set()
    assert (await held).status_code == 200
    assert (await c.get(server.url + "/other")).status_code == 200
    assert server.connections == 1


async def test_an_abandoned_response_closes_its_connection(serve: Serve, client: Client) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        if request.target == b"/whole":
            writer.write(b"0\r\n\r\n")

    server = await serve(respond)
    async with client.stream("GET", server.url + "/abandoned") as r:
        await r.aiter_raw().__anext__()
    # Had the connection gone back to the pool, this response would start with the rest of
    # the first one.
    assert (await client.get(server.url + "/whole")).content == b"first"
    assert server.connections == 2


async def test_closing_a_response_read_to_its_end_leaves_the_reused_connection_alone(
    serve: Serve, client: Client
) -> None:
    release = asyncio.Event()

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/second":
            await release.wait()
        writer.write(reply(b"{}"))
        await writer.drain()

    server = await serve(respond)
    first = await client.send("GET", server.url + "/first")
    assert [chunk async for chunk in first.aiter_raw()] == [b"{}"]
    second = asyncio.create_task(client.get(server.url + "/second"))
    await anyio.sleep(0.05)  # the connection now carries the second request
    await first.aclose()
    release.set()
    assert (await second).status_code == 200
    assert server.connections == 1


async def test_interim_head_and_empty_responses(serve: Serve, client: Client) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"after"))
        elif request.method == b"HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    server = await serve(respond)
    # Unasked for (semcache never forwards Expect: it has the body already): a client must
    # read past an interim response all the same (RFC 9110 §15.2).
    r = await client.post(server.url + "/continue", content=b"x")
    assert (r.status_code, r.content) == (200, b"after")
    head = await client.head(server.url + "/head")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "5000")
    assert (await client.get(server.url + "/empty")).status_code == 204
    assert (await client.get(server.url + "/empty")).status_code == 204


async def test_header_injection_is_refused_before_sending(serve: Serve, client: Client) -> None:
    server = await serve(ok)
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/", headers=[(b"x-evil", b"a\r\nx-injected: 1")])
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/", headers=[(b"x-evil", b"a\nb")])
    assert server.requests == []


async def test_bodies_come_as_sent_and_headers_lower_cased(serve: Serve, client: Client) -> None:
    packed = gzip.compress(b'{"ok": true}')

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(packed, extra=b"Content-Encoding: gzip\r\nX-Mixed-Case: Kept\r\n"))
        await writer.drain()

    server = await serve(respond)
    r = await client.get(server.url + "/gz")
    assert r.content == packed  # decoding is the caller's choice (proxy.upstream does it)
    assert (r.headers["content-encoding"], r.headers["x-mixed-case"]) == ("gzip", "Kept")
    assert server.requests[0].headers.keys() == {b"host"}  # nothing added but Host


async def test_repeated_request_headers_arrive_as_sent(serve: Serve, client: Client) -> None:
    """Neither merged into one field nor reordered (httpx-aiohttp joined them with commas)."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(b"{}"))
        await writer.drain()

    server = await serve(respond)
    sent = [(b"x-trace", b"a"), (b"x-other", b"1"), (b"x-trace", b"b, c")]
    await client.post(server.url + "/v1/chat/completions", content=b"{}", headers=sent)
    fields = [f for f in server.requests[0].fields if f[0].startswith(b"x-")]
    assert fields == sent
    assert server.requests[0].headers[b"content-length"] == b"2"


async def test_bytes_sent_while_idle_drop_the_connection(serve: Serve, client: Client) -> None:
    """The stray answer is parsed and queued on the idle connection; without the guard it
    would be served as the answer to the next request (another tenant's, perhaps)."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(b"{}"))
        await writer.drain()
        await anyio.sleep(0.02)
        writer.write(reply(b'{"stray": true}'))  # an answer to no request
        await writer.drain()

    server = await serve(respond)
    await client.get(server.url + "/a")
    await anyio.sleep(0.1)
    assert (await client.get(server.url + "/b")).json() == {}
    assert server.connections == 2


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (and its key), made by openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        capture_output=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    return cert, key


async def test_https_with_a_trusted_certificate(
    certificate: tuple[Path, Path], make_client: MakeClient
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = await ScriptedServer(ok).start(ssl_context=server_tls)
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        client = make_client(upstream_transport(server.url, ssl_context=trusted))
        r = await client.get(f"https://localhost:{server.port}/secure")
        assert r.json() == {"echo": "/secure"}
        with pytest.raises(UpstreamUnreachableError):  # self-signed: not trusted by default
            await make_client().get(f"https://localhost:{server.port}/secure")
    finally:
        await server.close()


async def test_a_tls_close_the_event_loop_has_not_seen_yet_is_detected_before_reuse(
    certificate: tuple[Path, Path], make_client: MakeClient
) -> None:
    """As the test below, over TLS: the server's FIN waits in the socket of an idle connection;
    the guard sees it there and connects anew."""
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []

    def serve_and_close() -> None:
        for _ in range(2):
            raw, _ = listener.accept()
            connections.append(1)
            with server_tls.wrap_socket(raw, server_side=True) as conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(reply(b"{}"))  # keep-alive promised, then closed
                # Later than the answer (arriving with it, TLS would report the close at once),
                # while the client's loop is busy.
                time.sleep(0.05)

    thread = threading.Thread(target=serve_and_close, daemon=True)
    thread.start()
    trusted = ssl.create_default_context(cafile=str(cert))
    client = make_client(upstream_transport("https://localhost", ssl_context=trusted))
    try:
        answer = await client.post(f"https://localhost:{port}/a", content=b"1")
        assert answer.content == b"{}"
        time.sleep(0.2)  # a busy loop: the close is in the socket, not yet seen  # noqa: ASYNC251
        answer = await client.post(f"https://localhost:{port}/b", content=b"2")
        assert answer.content == b"{}"
    finally:
        thread.join(timeout=5)
        listener.close()
    assert len(connections) == 2


async def test_a_body_that_arrived_while_nobody_read_is_not_served_to_the_next(
    serve: Serve, make_client: MakeClient
) -> None:
    """Read-ahead paused (the reader stalled), the rest of the body arrived, and the response is
    closed unread: the next request on the pool gets its own answer, none of the first's bytes.
    (aiohttp's parser delimits the first body, so it may reuse the connection; the old client
    closed it.)"""
    body = b"x" * (300 * 1024)

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(reply(body if request.target == b"/big" else b"{}"))
        await writer.drain()

    server = await serve(respond)
    client = make_client(timeouts=Timeouts(read=2))
    big = await client.send("GET", server.url + "/big")
    await anyio.sleep(0.2)  # the whole body arrives while nobody reads
    await big.aclose()
    nxt = await client.get(server.url + "/next")
    assert (nxt.content, nxt.headers["content-length"]) == (b"{}", "2")
    assert [r.target for r in server.requests] == [b"/big", b"/next"]


async def test_bytes_past_the_end_of_a_response_drop_the_connection(
    serve: Serve, make_client: MakeClient
) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        if request.target == b"/split":  # a second, unasked-for response in the same write
            writer.write(reply(b"{}") + reply(b'{"injected": true}'))
        else:
            writer.write(reply(b'{"fine": true}'))
        await writer.drain()

    server = await serve(respond)
    client = make_client()
    first = await client.get(server.url + "/split")
    assert first.content == b"{}"
    assert first.headers["content-length"] == "2"
    assert (await client.get(server.url + "/next")).json() == {"fine": True}
    assert server.connections == 2


async def test_trailers_are_not_headers(serve: Serve, client: Client) -> None:
    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\nx-trailer: late\r\n\r\n"
        )
        await writer.drain()

    server = await serve(respond)
    r = await client.get(server.url + "/t")
    assert r.content == b"{}"
    assert "x-trailer" not in r.headers


@pytest.mark.parametrize("poll", [True, False], ids=["poll", "no-poll"])
async def test_a_close_the_event_loop_has_not_seen_yet_is_detected_before_reuse(
    poll: bool, monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    """The server closes right after answering; the loop is busy and has not processed the
    FIN when the next request picks the idle connection (the guard asks the socket first, with
    ``select.select``). Nothing depends on ``select.poll``, which Windows lacks: the no-poll
    case runs without it."""
    if not poll:
        monkeypatch.delattr(select, "poll")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []

    def serve_and_close() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            connections.append(1)
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(reply(b"{}"))  # keep-alive promised, then closed at once

    thread = threading.Thread(target=serve_and_close, daemon=True)
    thread.start()
    client = make_client()
    try:
        assert (await client.post(f"http://127.0.0.1:{port}/a", content=b"1")).content == b"{}"
        time.sleep(0.2)  # a busy loop: the FIN is in the socket, not yet seen  # noqa: ASYNC251
        assert (await client.post(f"http://127.0.0.1:{port}/b", content=b"2")).content == b"{}"
    finally:
        thread.join(timeout=5)
        listener.close()
    assert len(connections) == 2


async def test_a_connection_on_a_descriptor_above_1023_is_reused(
    serve: Serve, client: Client
) -> None:
    """``select()`` cannot look at a descriptor above 1023 (FD_SETSIZE); a proxy with many
    clients has such descriptors, and its upstream connections must still be reused."""
    resource = pytest.importorskip("resource")  # POSIX only; Windows has no such limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"RLIMIT_NOFILE {soft} is too low to open descriptors above 1023")
    server = await serve(ok)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        for i in range(3):
            assert (await client.get(server.url + f"/{i}")).json() == {"echo": f"/{i}"}
    finally:
        for fd in held:
            os.close(fd)
    assert server.connections == 1


async def test_a_response_with_bare_lf_line_endings_is_read(serve: Serve, client: Client) -> None:
    """As httpx and aiohttp read it: LF without CR ends a line."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-length: 2\n\n{}")
        await writer.drain()

    server = await serve(respond)
    answer = await client.get(server.url + "/lf")
    assert answer.status_code == 200
    assert answer.content == b"{}"
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-bad: a\rb\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-bad: a\x00b\r\ncontent-length: 2\r\n\r\n",
    ],
    ids=["duplicate-content-length", "content-length-and-chunked", "bare-cr", "nul"],
)
async def test_ambiguous_framing_is_an_error_not_a_guess(
    serve: Serve, client: Client, head: bytes
) -> None:
    """Refused (the request gets a 502 from the proxy): a guess at the framing could pass part
    of one answer off as another, and a value with a CR or NUL is not relayed to a client."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(head + b"{}")
        await writer.drain()

    server = await serve(respond)
    with pytest.raises(UpstreamUnreachableError):
        await client.get(server.url + "/odd")


async def test_an_obs_folded_value_is_unfolded_to_a_space(serve: Serve, client: Client) -> None:
    """aiohttp's parser replaces obs-fold with a space, as RFC 9112 §5.2 lets a recipient do:
    the value relayed to a client carries no line break."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    server = await serve(respond)
    answer = await client.get(server.url + "/fold")
    assert (answer.content, answer.headers["x-folded"]) == (b"{}", "a b")
