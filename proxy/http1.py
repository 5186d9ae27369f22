"""A lean HTTP/1.1 client on asyncio and httptools: semcache's connection pool to the upstream.

httpx's client stack (its models, httpcore over anyio, the pure-Python h11 parser) costs about a
millisecond of CPU per request, more than everything else a cache miss does. This client speaks
HTTP/1.1 over pooled keep-alive connections with the C parser uvicorn already uses (httptools)
and hands back the status, the raw headers and a body that streams as it arrives. Failures
raise httpx's exception classes, so one mapping in :mod:`proxy.upstream` serves both this client
and httpx's transport (kept for HTTP proxies and for respx in unit tests).

Scope: ``http`` and ``https`` origins, HTTP/1.1. The request is sent as given: no header is
added but ``Host`` and the body framing (``Content-Length``, or chunks for a streamed body).

A connection is reused only after a response was read to its end and both sides agreed to keep
it open; one that is idle longer than ``keepalive_expiry``, or that the server closed or wrote
to while idle, is dropped. Body bytes buffered ahead of the reader are bounded: above
``_HIGH_WATER`` the socket stops being read until the reader catches up.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from proxy.connection import Connection, Content, Headers, Origin

# Below the 5 s idle timeout of uvicorn and Node servers: reusing a connection the server is
# closing at that very moment would fail the request (a POST cannot be retried blindly).
KEEPALIVE_EXPIRY_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, None for ever: to connect, for each read and write, for a free slot."""

    connect: float | None = 10.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0


class Http1Client:
    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, deque[Connection]] = {}
        self._idle_count = 0
        self._closed = False

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Headers,
        content: Content = None,
        timeouts: Timeouts = Timeouts(),
    ) -> Response:
        """Send and return once the response head arrived; the body streams from
        :meth:`Response.aiter_raw`, and :meth:`Response.aclose` must follow."""
        origin, host, target = _split(url)
        head = _request_head(method, target, host, headers, content)
        await self._take_slot(timeouts.pool)
        connection: Connection | None = None
        try:
            connection = self._reuse(origin)
            if connection is None:
                connection = await self._connect(origin, timeouts.connect)
            await connection.send(head, content, timeouts.write, head_only=method == "HEAD")
            status, reason, raw_headers = await connection.receive_head(timeouts.read)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return Response(status, reason, raw_headers, self, connection, timeouts.read)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def _take_slot(self, wait_seconds: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in the pool") from None

    def _reuse(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        oldest_kept = time.monotonic() - self._keepalive_expiry
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if (
                connection.reusable
                and connection.idle_since >= oldest_kept
                and not connection.readable_while_idle()
            ):
                return connection
            connection.close()
        return None

    def _release(self, connection: Connection) -> None:
        """Called once per response, when its body was read to the end or abandoned."""
        self._slots.release()
        if not connection.reusable or self._closed:
            connection.close()
            return
        if self._idle_count >= self._max_connections:
            self._drop_oldest_idle()
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, deque()).append(connection)
        self._idle_count += 1

    def _drop_oldest_idle(self) -> None:
        oldest = min(
            (idle for idle in self._idle.values() if idle), key=lambda idle: idle[0].idle_since
        )
        oldest.popleft().close()
        self._idle_count -= 1

    async def _connect(self, origin: Origin, wait_seconds: float | None) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
                self._ssl_context.set_alpn_protocols(["http/1.1"])
            tls = self._ssl_context
        try:
            async with asyncio.timeout(wait_seconds):
                _, connection = await loop.create_connection(
                    lambda: Connection(origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection


class Response:
    """An upstream answer: status and raw headers (names lower-cased), body still to come."""

    __slots__ = ("_client", "_connection", "_read_timeout", "_released", "headers", "reason",
                 "status_code")  # fmt: skip

    def __init__(
        self,
        status_code: int,
        reason: bytes,
        headers: Headers,
        client: Http1Client,
        connection: Connection,
        read_timeout: float | None,
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self._client = client
        self._connection = connection
        self._read_timeout = read_timeout
        self._released = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives, without its transfer framing (chunks are undone)."""
        connection = self._connection
        while True:
            chunk = await connection.next_chunk(self._read_timeout)
            if chunk is None:
                break
            yield chunk
        self._release()

    async def aread(self) -> bytes:
        """The whole body (what :meth:`aiter_raw` gives, without an async generator)."""
        connection = self._connection
        chunks: list[bytes] = []
        while (chunk := await connection.next_chunk(self._read_timeout)) is not None:
            chunks.append(chunk)
        self._release()
        return b"".join(chunks)  # one chunk: join returns it, no copy

    async def aclose(self) -> None:
        if self._released:
            return  # read to the end: the connection may already serve another request
        if not self._connection.finished:
            self._connection.close()  # abandoned halfway: the rest would arrive on reuse
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._client._release(self._connection)


@functools.lru_cache(maxsize=256)
def _split(url: str) -> tuple[Origin, bytes, bytes]:
    """``url`` -> (origin, ``Host`` value, request target); the chat URL repeats, so cached."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    if parts.hostname is None:
        raise httpx.UnsupportedProtocol(f"no host in {url!r}")
    default_port = 443 if scheme == "https" else 80
    port = parts.port if parts.port is not None else default_port
    host = parts.netloc.rpartition("@")[2].encode("idna" if not parts.netloc.isascii() else "ascii")
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return (scheme, parts.hostname, port), host, target.encode("latin-1")


def _request_head(
    method: str, target: bytes, host: bytes, headers: Headers, content: Content
) -> bytes:
    if b" " in target:
        raise httpx.LocalProtocolError("illegal character in the request target")
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    if isinstance(content, bytes):
        lines += (b"content-length: ", b"%d" % len(content), b"\r\n")
    elif content is not None:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # Every line ends in CRLF; a CR, LF or NUL anywhere else would split or end the head early
    # (request smuggling), so the counts must match the lines written.
    lines_written = len(headers) + 3 + (content is not None)
    if head.count(b"\n") != lines_written or head.count(b"\r") != lines_written or b"\0" in head:
        raise httpx.LocalProtocolError("illegal character in a request header or target")
    return head
