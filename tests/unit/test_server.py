"""The serving protocol's transport: a response's head leaves with its body's first write."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from proxy.http.server import _HeadJoiningTransport
from proxy.metrics import SERVER
from tests.unit.harness import FakeSocket, served_on

pytestmark = pytest.mark.anyio


def joining() -> tuple[_HeadJoiningTransport, FakeSocket]:
    inner = FakeSocket()
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


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    """The app behind the protocol: reads the body, answers 200 with how many bytes it read."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def protocol() -> tuple[Any, FakeSocket]:
    """semcache's serving protocol on a recording socket, as uvicorn makes one per connection."""
    return served_on(_ok)


def head(*lines: bytes, method: bytes = b"GET", body: bytes = b"") -> bytes:
    fields = [method + b" /healthz HTTP/1.1", b"Host: x", *lines]
    if body:
        fields.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(fields) + b"\r\n\r\n" + body


async def answers(inner: FakeSocket) -> bytes:
    for _ in range(20):
        await asyncio.sleep(0)
    return b"".join(inner.writes)


@pytest.mark.parametrize("reads", [1, 2, 7])
async def test_a_head_past_the_bound_is_refused_however_it_is_read(reads: int) -> None:
    """In one read (the head ends in the read that passes the bound), or spread over several:
    a 400 in OpenAI's error format and the connection closed, the app never called, the refusal
    counted."""
    made, inner = protocol()
    refused = SERVER.request_heads_refused
    data = head(*[b"X-A: " + b"a" * 1000] * 100)
    step = -(-len(data) // reads)
    for start in range(0, len(data), step):
        if not inner.closed:
            made.data_received(data[start : start + step])
    sent = await answers(inner)
    assert sent.startswith(b"HTTP/1.1 400")
    head_part, _, body = sent.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head_part
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_head_too_large"
    assert error["type"] == "invalid_request_error"
    assert inner.closed
    assert SERVER.request_heads_refused == refused + 1


async def test_a_head_within_the_bound_with_a_larger_body_in_the_same_read_is_served() -> None:
    made, inner = protocol()
    made.data_received(head(b"X-Big: " + b"a" * 60_000, method=b"POST", body=b"b" * 300_000))
    sent = await answers(inner)
    assert sent.startswith(b"HTTP/1.1 200")
    assert b"\r\n300000\r\n" in sent
    assert not inner.closed


async def test_the_next_head_on_a_kept_connection_is_counted_from_its_first_byte() -> None:
    """After a first request the count starts again: the second's ordinary head is served, and
    a third's oversized one, sent in one read, is refused."""
    made, inner = protocol()
    made.data_received(head(b"X-Big: " + b"a" * 50_000))
    assert (await answers(inner)).startswith(b"HTTP/1.1 200")
    made.data_received(head(b"X-Big: " + b"a" * 50_000))
    assert (await answers(inner)).count(b"HTTP/1.1 200") == 2
    made.data_received(head(b"X-Big: " + b"a" * 70_000))
    sent = await answers(inner)
    assert sent.count(b"HTTP/1.1 200") == 2
    assert b"HTTP/1.1 400" in sent
    assert inner.closed
