"""A small HTTP forward proxy on a real socket (its own thread and event loop), recording each
request it carries: absolute-form requests for ``http`` targets, ``CONNECT`` tunnels for
``https`` ones. One request per connection (it answers ``Connection: close``), which is all a
test of "did semcache go through the proxy" needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from urllib.parse import urlsplit

_HOP = (b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization")


class ForwardProxy:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        """(method, target) of each request, as the proxy received it."""
        self.credentials: list[bytes | None] = []
        """Each request's ``Proxy-Authorization`` value, or None."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("forward proxy did not start")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, _, fields = head[:-4].partition(b"\r\n")
        method, target, _ = line.split(b" ", 2)
        self.seen.append((method.decode(), target.decode()))
        named = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (f.partition(b":") for f in fields.split(b"\r\n"))
        )
        self.credentials.append(named.get(b"proxy-authorization"))
        if method == b"CONNECT":
            host, _, port = target.decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target.decode())
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
            origin_form = (url.path or "/") + (f"?{url.query}" if url.query else "")
            kept = [
                f for f in fields.split(b"\r\n") if f.partition(b":")[0].strip().lower() not in _HOP
            ]
            up_writer.write(
                b"\r\n".join(
                    [f"{method.decode()} {origin_form} HTTP/1.1".encode(), *kept,
                     b"connection: close", b"", b""]
                )
            )  # fmt: skip
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()
