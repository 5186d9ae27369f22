"""uvicorn's HTTP protocol, with a response's head and the first piece of its body sent as one.

uvicorn writes a response's head and its body with two ``transport.write`` calls, so a buffered
answer leaves in two TCP segments and wakes the client twice. Here the head is held back and
joined to the body's first write; it goes out alone only if no body follows in the same pass of
the event loop (a stream whose first chunk is not there yet). Every later write goes straight
through, so streamed chunks are never held.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
"""A request's line and headers together (h11, uvicorn's other parser, stops at 16 KB; nginx
at 4 x 8 KB). uvicorn's httptools protocol has no bound: a client could grow one head forever."""


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`_HeadJoiningTransport`, with the size of a
    request's head bounded (:data:`MAX_HEAD_BYTES`): counted per read while the head is
    incomplete, not per header (the hot path pays one check per read)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._joining = _HeadJoiningTransport(transport, self.loop)
        self._in_head = True
        self._head_bytes = 0
        super().connection_made(self._joining)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head:  # all of it was head, and the head goes on
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.send_400_response("Request head too large.")

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._joining.next_response()
        super().on_response_complete()


class _HeadJoiningTransport:
    """Holds the first write of each response (its head) until the next write, or the end of
    the loop pass, then writes both at once."""

    __slots__ = ("_held", "_hold", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._hold = True
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._held is not None:
            data = self._held + data
            self._held = None
        elif self._hold:
            self._hold = False
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def next_response(self) -> None:
        """The response ended: what it wrote is out; the next write is the next one's head."""
        self.flush()
        self._hold = True

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()  # an upgrade: the new protocol writes to the socket itself
        self._hold = False
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else len(self._held)
        return self._transport.get_write_buffer_size() + held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
