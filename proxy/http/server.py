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

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from proxy.errors import error_body
from proxy.metrics import SERVER

MAX_HEAD_BYTES = 64 * 1024
"""A request's line and headers together (h11, uvicorn's other parser, stops at 16 KB; nginx
at 4 x 8 KB). uvicorn's httptools protocol has no bound: a client could grow one head forever."""
HEAD_TOO_LARGE = error_body(
    f"Request head too large: the request line and headers take at most {MAX_HEAD_BYTES // 1024} "
    "KB.",
    "invalid_request_error",
    code="request_head_too_large",
)


class CoalescingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`_HeadJoiningTransport`, with the size of a
    request's head bounded (:data:`MAX_HEAD_BYTES`): counted per read while the head is
    incomplete, not per header (the hot path pays one addition per read). Only a read that
    would take the count past the bound is searched for the head's end, so a head that ends
    in the read that passes the bound is refused as well, and a body arriving with its head is
    not counted."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._joining = _HeadJoiningTransport(transport, self.loop)
        self._in_head = True
        self._head_bytes = 0
        self._heads = 0  # heads completed on this connection
        super().connection_made(self._joining)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        in_head = self._in_head
        room = MAX_HEAD_BYTES - self._head_bytes
        if in_head and len(data) > room and not _head_ends_within(data, room):
            if not self.transport.is_closing():
                self._refuse_head()
            return
        heads = self._heads
        super().data_received(data)
        if in_head and self._heads == heads:  # all of it was head, and the head goes on
            self._head_bytes += len(data)

    def _refuse_head(self) -> None:
        """A 400 in OpenAI's error format, then the connection closed (the rest of the head is
        never read, so the connection cannot carry on)."""
        SERVER.request_heads_refused += 1
        body = HEAD_TOO_LARGE
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what comes next on this connection is the next request's head
        self._head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._joining.next_response()
        super().on_response_complete()


def _head_ends_within(data: bytes, room: int) -> bool:
    """Whether the blank line ending a head is in the first ``room`` bytes of ``data``. A blank
    line begun in the read before is taken as ending here (a head at most 3 bytes over the
    bound gets through; none within it is refused)."""
    if room <= 0:
        return False
    return data.find(b"\r\n\r\n", 0, room) >= 0 or data.startswith((b"\n", b"\r\n", b"\n\r\n"))


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
