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
import select
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

Origin = tuple[str, str, int]
Headers = list[tuple[bytes, bytes]]

# Below the 5 s idle timeout of uvicorn and Node servers: reusing a connection the server is
# closing at that very moment would fail the request (a POST cannot be retried blindly).
KEEPALIVE_EXPIRY_SECONDS = 4.0
_HIGH_WATER = 256 * 1024
_CHUNKED_END = b"0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, None for ever: to connect, for each read and write, for a free slot."""

    connect: float | None = 10.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0


Content = bytes | AsyncIterable[bytes] | None


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
        self._idle: dict[Origin, deque[_Connection]] = {}
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
        connection: _Connection | None = None
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

    def _reuse(self, origin: Origin) -> _Connection | None:
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

    def _release(self, connection: _Connection) -> None:
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

    async def _connect(self, origin: Origin, wait_seconds: float | None) -> _Connection:
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
                    lambda: _Connection(origin),
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
        connection: _Connection,
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


class _Connection(asyncio.Protocol):
    """One socket, one request at a time; httptools calls the ``on_*`` methods."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._lost = False
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable = True
        self._drained: asyncio.Future[None] | None = None
        self._start(head_only=False)

    # -- state of the response in flight --

    def _start(self, *, head_only: bool) -> None:
        self._head_only = head_only
        self._active = False
        self._status = 0
        self._reason = b""
        self._headers: Headers = []
        self._has_head = False
        self._finished = False
        self._keep_alive = False
        self._until_close = False
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def reusable(self) -> bool:
        return (
            self._finished
            and self._keep_alive
            and not self._lost
            and self._error is None
            and not self._paused
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def readable_while_idle(self) -> bool:
        """The server closed (or wrote to) this idle connection and the event loop has not
        seen it yet: under load, or with servers that drop idle connections in under a few
        seconds. One non-blocking poll of the socket, as httpcore does."""
        transport = self._transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    # -- used by the transport --

    async def send(
        self, head: bytes, content: Content, write_timeout: float | None, *, head_only: bool
    ) -> None:
        self._start(head_only=head_only)
        self._active = True
        transport = self._transport
        assert transport is not None, "connected before use"
        if content is None or isinstance(content, bytes):
            if content and len(content) >= _HIGH_WATER:
                transport.write(head)
                transport.write(content)
            else:
                transport.write(head + content if content else head)  # one segment, usually
            await self._drain(write_timeout)
            return
        transport.write(head)
        async for part in content:
            if self._error is not None:
                raise self._error
            if part:
                transport.write(b"%x\r\n%b\r\n" % (len(part), part))
                await self._drain(write_timeout)
        transport.write(_CHUNKED_END)
        await self._drain(write_timeout)

    async def receive_head(self, read_timeout: float | None) -> tuple[int, bytes, Headers]:
        while not self._has_head:
            await self._wait(read_timeout)
        return self._status, self._reason, self._headers

    async def next_chunk(self, read_timeout: float | None) -> bytes | None:
        while True:
            chunks = self._chunks
            if chunks:
                # Whatever already arrived goes on as one piece: one write to the client, not
                # one per upstream chunk, and no added wait.
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                return chunk
            if self._finished:
                return None
            await self._wait(read_timeout)

    def close(self) -> None:
        self._lost = True
        if self._transport is not None:
            self._transport.close()

    async def _wait(self, wait_seconds: float | None) -> None:
        """Until something arrives or fails; the caller checks which. A failure counts only
        for what has not arrived: bytes past a complete response fail the connection, not
        that response."""
        if self._error is not None:
            raise self._error
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await _within(
                waiter, wait_seconds, httpx.ReadTimeout, "the upstream sent nothing in time"
            )
        finally:
            self._waiter = None

    async def _drain(self, wait_seconds: float | None) -> None:
        if self._writable and self._error is None:
            return
        if self._error is not None:
            raise self._error
        drained = self._drained = asyncio.get_running_loop().create_future()
        try:
            await _within(
                drained, wait_seconds, httpx.WriteTimeout, "the upstream took nothing in time"
            )
        finally:
            self._drained = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        for waiter in (self._waiter, self._drained):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self._lost = True  # bytes nobody asked for: the connection is out of step
            if self._transport is not None:
                self._transport.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._protocol_error("the upstream switched protocols")
        except httptools.HttpParserError as exc:
            self._protocol_error(f"malformed response from the upstream: {exc}")

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._active and not self._finished:
            if self._has_head and self._until_close and exc is None:
                self._finished = True  # a body delimited by the end of the connection
                self._wake()
            elif self._has_head:
                self._fail(
                    httpx.RemoteProtocolError(
                        "the upstream closed the connection before the body ended",
                    )
                )
            else:
                self._fail(
                    httpx.RemoteProtocolError(
                        "the upstream closed the connection without a response",
                    )
                )
        drained = self._drained
        if drained is not None and not drained.done():
            self._fail(httpx.WriteError("the connection was lost"))

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools callbacks --

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_message_begin(self) -> None:
        if self._finished or not self._active:
            # Bytes past the end of the response, in the same read: the upstream is out of
            # step (or splitting responses). Raising stops the parser; the connection goes.
            raise httpx.RemoteProtocolError("the upstream sent more than one response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._has_head:  # after the head come only chunked trailers: not headers
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._reason = b""
            self._headers = []
            return  # an interim response (100 Continue): the real one follows
        self._status = status
        self._has_head = True
        self._keep_alive = self._parser.should_keep_alive()
        if self._head_only:
            self._finished = True
            self._active = False  # stray body bytes now drop the connection
            self._keep_alive = False  # the parser would wait for a body HEAD never gets
        elif status not in (204, 304):
            names = {name for name, _ in self._headers}
            self._until_close = b"content-length" not in names and not _is_chunked(self._headers)
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._has_head:
            return  # end of an interim response
        self._finished = True
        self._active = False
        self._wake()

    def _protocol_error(self, message: str) -> None:
        self._fail(httpx.RemoteProtocolError(message))
        self.close()


async def _within(
    future: asyncio.Future[None],
    wait_seconds: float | None,
    failure: type[httpx.TimeoutException],
    message: str,
) -> None:
    """Await ``future``; after ``wait_seconds`` raise ``failure`` (a timer, not a task)."""
    loop = asyncio.get_running_loop()
    timer = None if wait_seconds is None else loop.call_later(wait_seconds, _expire, future)
    try:
        await future
    except TimeoutError:
        raise failure(message) from None
    finally:
        if timer is not None:
            timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


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


def _is_chunked(headers: Headers) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers
    )
