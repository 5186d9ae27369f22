"""A lean Redis client for the store's hot commands (GET, SET, VSIM): one connection, pipelined.

redis-py's asyncio client costs about 150 us of CPU per GET here (its retry wrapper, a
``wait_for`` per read, the connection pool, observability hooks, the parser); this one 25-40
us alone, about 10 us when 64 GETs come in the same event-loop turn. Commands issued in one
turn go out in one write at its end (auto-pipelining, as ioredis and node-redis do); replies
come back in order, each caller awaits its own future, and one read may answer many.

Failures: a lost connection fails every pending command with :class:`ConnectionError`; the
oldest pending command past ``timeout_seconds`` aborts the connection and fails them all with
:class:`TimeoutError` (a frozen server). Both are :class:`OSError`. An error reply fails its
own command only, with :class:`ReplyError`. The next command opens a new connection; a command
that found its reused connection already dead is retried once on a fresh one (a restarted
server), as redis-py's ``Retry(NoBackoff(), 1)`` did.

Only RESP2 is understood: bulk, simple, integer and error replies, and arrays of them (a
VSIM's candidates). Anything else is a protocol error, which aborts the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.connection import RedisSSLContext, SSLConnection, parse_url

Reply = bytes | int | list["Reply"] | None


class ReplyError(Exception):
    """The server answered a command with an error reply."""


class ProtocolError(ConnectionError):
    """The server sent something that is not a reply we understand; the connection goes."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    """A Unix socket instead of host and port."""
    ssl_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Address:
        """Where ``redis://``, ``rediss://`` or ``unix://`` points, as redis-py reads it."""
        kwargs: dict[str, Any] = dict(parse_url(url))
        context = None
        if kwargs.get("connection_class") is SSLConnection:
            # redis-py's own TLS setup, from the same ``ssl_*`` URL options and defaults, so
            # both clients of the store connect alike.
            options: dict[str, Any] = {"cert_reqs": "required", "check_hostname": True}
            for name, value in kwargs.items():
                if name.startswith("ssl_"):
                    options[name.removeprefix("ssl_")] = value
            context = RedisSSLContext(**options).get()
        return cls(
            host=kwargs.get("host", "127.0.0.1"),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path"),
            ssl_context=context,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=int(kwargs.get("db", 0)),
        )


class CommandClient:
    """``get`` and ``set`` spelled with :meth:`command`, for clients that route or adapt
    commands (:class:`~proxy.stores.cluster_routing.ClusterRouter`, the redis-py adapter)."""

    async def command(self, *args: bytes) -> Reply:
        raise NotImplementedError

    async def get(self, key: str) -> bytes | None:
        reply = await self.command(b"GET", key.encode())
        assert reply is None or isinstance(reply, bytes), type(reply)
        return reply

    async def set(self, key: str, value: bytes, *, px: int) -> None:
        await self.command(b"SET", key.encode(), value, b"PX", b"%d" % px)


class RespClient:
    def __init__(self, address: Address, *, timeout_seconds: float) -> None:
        self._address = address
        self._timeout_seconds = timeout_seconds
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self.pending = 0
        """Commands asked for and not yet answered (or failed)."""

    async def get(self, key: str) -> bytes | None:
        raw = key.encode()
        reply = await self._request(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(raw), raw))
        assert reply is None or isinstance(reply, bytes), reply
        return reply

    async def set(self, key: str, value: bytes, *, px: int) -> None:
        await self._request(encode(b"SET", key.encode(), value, b"PX", b"%d" % px))

    async def command(self, *args: bytes) -> Reply:
        """Any command whose reply is a string, an integer, nil or an array of those."""
        return await self._request(encode(*args))

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _request(self, payload: bytes) -> Reply:
        self.pending += 1
        try:
            return await self._send(payload)
        finally:
            self.pending -= 1

    async def _send(self, payload: bytes) -> Reply:
        connection = self._connection
        if connection is None or connection.closed:
            return await (await self._connect()).send(payload)
        try:
            return await connection.send(payload)
        except _LostError:
            return await (await self._connect()).send(payload)

    async def _connect(self) -> _Connection:
        """One connection attempt, shared by every caller that needs it (and not cancelled
        with any one of them)."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, task: asyncio.Task[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        a = self._address
        timeout = self._timeout_seconds
        async with asyncio.timeout(timeout):
            if a.path is not None:
                _, connection = await loop.create_unix_connection(
                    lambda: _Connection(timeout), a.path
                )
            else:
                _, connection = await loop.create_connection(
                    lambda: _Connection(timeout), a.host, a.port, ssl=a.ssl_context
                )
            try:
                setup = []
                if a.password is not None or a.username is not None:
                    # A user without a password (``redis://user@host``: an ACL ``nopass``
                    # user) is still that user, as redis-py authenticates it, not ``default``.
                    user = () if a.username is None else (a.username.encode(),)
                    password = (a.password or "").encode()
                    setup.append(connection.send(encode(b"AUTH", *user, password)))
                if a.db:
                    setup.append(connection.send(encode(b"SELECT", b"%d" % a.db)))
                for reply in setup:
                    await reply
            except BaseException:
                connection.close()
                for reply in setup:
                    if not reply.cancelled():
                        reply.exception()  # retrieved: raised once, above
                raise
        return connection


def encode(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)


class _Incomplete(Exception):
    def __init__(self, end: int) -> None:
        self.end = end
        """Where the data would have to reach, at least, for the reply to be whole."""


def _array(data: bytes, start: int, eol: int) -> tuple[Reply, int]:
    """The array whose header runs from ``start`` to ``eol``, and where it ends; raises
    :class:`_Incomplete` when ``data`` ends first. Only rarely-used replies come this way, so
    this is the plain recursive reader, not the inlined one above."""
    count = int(data[start + 1 : eol])
    end = eol + 2
    if count < 0:
        return None, end
    items: list[Reply] = []
    for _ in range(count):
        item, end = _element(data, end)
        items.append(item)
    return items, end


def _element(data: bytes, start: int) -> tuple[Reply, int]:
    eol = data.find(b"\r\n", start)
    if eol < 0:
        raise _Incomplete(len(data) + 1)
    kind = data[start]
    if kind == 0x24:  # $ bulk string
        length = int(data[start + 1 : eol])
        if length < 0:
            return None, eol + 2
        end = eol + length + 4
        if end > len(data):
            raise _Incomplete(end)
        return data[eol + 2 : end - 2], end
    if kind == 0x2B:  # + simple string
        return data[start + 1 : eol], eol + 2
    if kind == 0x3A:  # : integer
        return int(data[start + 1 : eol]), eol + 2
    if kind == 0x2A:  # * array
        return _array(data, start, eol)
    # An error inside an array (EXEC's) never answers the commands sent here.
    raise ProtocolError(f"unexpected element type {bytes([kind])!r}")


class _LostError(ConnectionError):
    """The connection went before the reply came: on a reused connection, worth one retry on
    a fresh one (GET and SET may be sent twice)."""


class _Connection(asyncio.Protocol):
    def __init__(self, timeout_seconds: float) -> None:
        self._timeout_seconds = timeout_seconds
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[asyncio.Future[Reply], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []
        """Commands of this event-loop turn, written together at its end."""
        self._buffer = bytearray()
        self._wanted = 0
        """How many buffered bytes the next reply needs at least."""
        self.closed = False

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        if self.closed or self._transport is None:
            raise ConnectionError("redis connection is closed")
        future: asyncio.Future[Reply] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout_seconds
        self._pending.append((future, deadline))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
        self._unsent.append(payload)
        if len(self._unsent) == 1:
            self._loop.call_soon(self._flush)
        return future

    def close(self) -> None:
        self._fail(ConnectionError("redis connection closed"))

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_LostError(f"redis connection lost: {exc or 'closed by the server'}"))

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._wanted:
                return
            data = bytes(self._buffer)
            self._buffer = bytearray()
        try:
            used = self._parse(data)
        except (ProtocolError, ValueError) as exc:
            self._fail(ProtocolError(f"redis protocol error: {exc}"))
            return
        if used < len(data):
            self._buffer = bytearray(data[used:])

    # -- internals --

    def _parse(self, data: bytes) -> int:
        """Resolve the futures of every complete reply in ``data``; return the bytes used."""
        start, size = 0, len(data)
        while start < size:
            eol = data.find(b"\r\n", start)
            if eol < 0:
                self._wanted = size - start + 1
                return start
            kind = data[start]
            reply: Reply | ReplyError
            if kind == 0x24:  # $ bulk string
                length = int(data[start + 1 : eol])
                if length < 0:
                    reply, end = None, eol + 2
                else:
                    end = eol + length + 4
                    if end > size:
                        self._wanted = end - start
                        return start
                    reply = data[eol + 2 : end - 2]
            elif kind == 0x2B:  # + simple string
                reply, end = data[start + 1 : eol], eol + 2
            elif kind == 0x3A:  # : integer
                reply, end = int(data[start + 1 : eol]), eol + 2
            elif kind == 0x2D:  # - error
                reply, end = ReplyError(data[start + 1 : eol].decode(errors="replace")), eol + 2
            elif kind == 0x2A:  # * array
                try:
                    reply, end = _array(data, start, eol)
                except _Incomplete as missing:
                    self._wanted = missing.end - start
                    return start
            else:
                raise ProtocolError(f"unexpected reply type {bytes([kind])!r}")
            if not self._pending:
                raise ProtocolError("a reply nobody asked for")
            future, _ = self._pending.popleft()
            if not future.done():  # its caller may have been cancelled
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
            start = end
        return start

    def _flush(self) -> None:
        if not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._unsent))
        self._unsent.clear()

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        _, deadline = self._pending[0]
        if self._loop.time() >= deadline:
            self._fail(TimeoutError(f"redis did not answer within {self._timeout_seconds} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _fail(self, error: Exception) -> None:
        if not self.closed:
            self.closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._transport is not None:
                self._transport.abort()
        while self._pending:
            future, _ = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
