"""One HTTP/1.1 connection to the upstream: an asyncio protocol fed to httptools.

:class:`~proxy.http1.Http1Client` sends a request on it and reads the answer through it, one at a
time. It parses the response as bytes arrive, buffers body pieces for the reader (reading pauses
above ``_HIGH_WATER``), and knows when it may carry another request: the response was read to
its end, both sides agreed to keep the connection, and nothing arrived or failed since.
Failures raise httpx's exception classes.
"""

from __future__ import annotations

import asyncio
import select
from collections import deque
from collections.abc import AsyncIterable
from typing import Any, cast

import httptools
import httpx

Origin = tuple[str, str, int]
"""(scheme, host, port)"""
Headers = list[tuple[bytes, bytes]]
Content = bytes | AsyncIterable[bytes] | None

_HIGH_WATER = 256 * 1024
_CHUNKED_END = b"0\r\n\r\n"


class Connection(asyncio.Protocol):
    """One socket, one request at a time; httptools calls the ``on_*`` methods."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        # Lines ended by a bare LF, as httpx (h11) and aiohttp take them from a server. (Not
        # obs-fold: llhttp takes that only with every header-value check off, and a value
        # with a raw CR or LF must never be relayed to a client.)
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self._lost = False
        self._error: httpx.TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable = True
        self._drained: asyncio.Future[None] | None = None
        self._poll: select.poll | None = None
        self._socket: Any = None
        """Where ``select.poll`` is missing (Windows), the socket to ``select()`` instead."""
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
        try:
            if self._poll is not None:
                return bool(self._poll.poll(0))
            if self._socket is not None:  # no poll() (Windows): one select() instead
                return bool(select.select([self._socket], [], [], 0)[0])
        except (OSError, ValueError):
            return True
        return False

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
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(select, "poll"):
            # Registered once: a poll of this one socket then costs a third of a select().
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)
        elif sock is not None:
            self._socket = sock

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


def _is_chunked(headers: Headers) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers
    )
