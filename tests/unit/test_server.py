"""The serving protocol's transport: a response's head leaves with its body's first write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.http.server import _HeadJoiningTransport

pytestmark = pytest.mark.anyio


class Recorder:
    """The socket's side: what was written, one entry per write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name == "sockname" else default


def joining() -> tuple[_HeadJoiningTransport, Recorder]:
    inner = Recorder()
    return _HeadJoiningTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


async def test_head_and_body_of_one_pass_leave_in_one_write() -> None:
    transport, inner = joining()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.writes == []
    transport.write(b"{}")
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_a_head_without_a_body_yet_leaves_at_the_end_of_the_pass() -> None:
    transport, inner = joining()
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    transport.write(b"data: 1\n\n")  # a streamed chunk, later: straight through
    assert inner.writes[-1] == b"data: 1\n\n"


async def test_only_the_head_is_held_streamed_chunks_go_at_once() -> None:
    transport, inner = joining()
    for part in (b"head", b"chunk 1", b"chunk 2"):
        transport.write(part)
    assert inner.writes == [b"headchunk 1", b"chunk 2"]
    await asyncio.sleep(0)  # the end-of-pass flush finds nothing more to send
    assert inner.writes == [b"headchunk 1", b"chunk 2"]


async def test_each_response_on_a_kept_connection_has_its_head_joined() -> None:
    transport, inner = joining()
    transport.write(b"head 1")
    transport.write(b"body 1")
    transport.next_response()
    transport.write(b"head 2")
    transport.next_response()  # a response with an empty body: its head goes now
    assert inner.writes == [b"head 1body 1", b"head 2"]


async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    transport, inner = joining()
    transport.write(b"head")
    transport.close()
    assert inner.writes == [b"head"]
    assert inner.closed

    transport, inner = joining()
    transport.write(b"head")
    transport.abort()
    await asyncio.sleep(0)
    assert inner.writes == []
    assert inner.aborted


async def test_other_transport_calls_reach_the_socket() -> None:
    transport, inner = joining()
    transport.write(b"head")
    assert transport.get_write_buffer_size() == 4
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 8080)
    transport.write(b"")  # uvicorn's empty final body: nothing to write, nothing released
    assert inner.writes == []
