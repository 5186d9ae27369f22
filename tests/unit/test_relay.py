"""Relaying an upstream body: what happens when the client stays, and when it leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from starlette.types import Message

from proxy.cache.answers import relay
from proxy.metrics import Metrics
from proxy.upstream import Headers, Timeouts, Upstream

pytestmark = pytest.mark.anyio


class Body:
    """An upstream answer whose chunks the test releases one at a time."""

    def __init__(self, chunks: list[bytes], *, hold_at: int = 1) -> None:
        self.hold_at = hold_at
        self.status_code = 200
        self.headers: Headers = [(b"content-type", b"text/event-stream")]
        self.chunks = chunks
        self.released = anyio.Event()
        self.closed = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.hold_at:
                await self.released.wait()
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        self.closed = True


class NoTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError("not used")


def upstream() -> Upstream:
    return Upstream(NoTransport(), base_url="http://u", api_key=None, metrics=Metrics(),
                    timeouts=Timeouts())  # fmt: skip


class Client:
    """The ASGI side: records what was sent; ``leave`` makes ``receive`` report a disconnect."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.left = anyio.Event()
        self.done = anyio.Event()

    async def receive(self) -> Message:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def on(event: anyio.Event) -> None:
                    await event.wait()
                    scope.cancel()

                tg.start_soon(on, self.left)
                tg.start_soon(on, self.done)
        return {"type": "http.disconnect"}  # as uvicorn: once gone, or once the response ended

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.done.set()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def test_a_client_that_stays_gets_everything_then_completion_runs() -> None:
    body, client = Body([b"data: 1\n\n", b"data: 2\n\n"]), Client()
    calls: list[str] = []

    async def complete() -> None:
        assert not client.done.is_set()  # stored before the response ends: read-your-writes
        await anyio.sleep(0.01)
        calls.append("complete")

    async def finish() -> None:
        calls.append("finish")

    def observe(chunk: bytes) -> bool:
        calls.append(chunk.decode())
        return False

    response = relay(
        upstream(), body, extra_headers=[(b"x-cache", b"MISS")], observe=observe,
        on_complete=complete, on_finish=finish,
    )  # fmt: skip
    body.released.set()
    await response({"type": "http"}, client.receive, client.send)
    assert client.sent[0]["headers"] == [(b"content-type", b"text/event-stream"),
                                         (b"x-cache", b"MISS")]  # fmt: skip
    assert client.body == b"data: 1\n\ndata: 2\n\n"
    assert calls == ["data: 1\n\n", "data: 2\n\n", "complete", "finish"]
    assert body.closed


async def test_a_client_that_leaves_stops_the_relay_without_completion() -> None:
    body, client = Body([b"data: 1\n\n", b"data: 2\n\n"]), Client()
    calls: list[str] = []

    async def complete() -> None:
        calls.append("complete")

    async def finish() -> None:
        calls.append("finish")

    response = relay(upstream(), body, extra_headers=[], on_complete=complete, on_finish=finish)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(response, {"type": "http"}, client.receive, client.send)
            await anyio.sleep(0.05)  # the first chunk is out, the second held upstream
            client.left.set()
    assert client.body == b"data: 1\n\n"
    assert calls == ["finish"]
    assert body.closed  # the upstream request is given up


async def test_an_outer_cancellation_is_not_swallowed() -> None:
    body, client = Body([b"data: 1\n\n", b"data: 2\n\n"]), Client()
    response = relay(upstream(), body, extra_headers=[])
    with anyio.move_on_after(0.05) as scope:
        await response({"type": "http"}, client.receive, client.send)
    assert scope.cancelled_caught
    assert body.closed


async def test_a_client_that_leaves_before_the_first_chunk_stops_the_relay() -> None:
    """The watcher starts once the relay first waits: a slow first token is watched too."""
    body, client = Body([b"data: 1\n\n"], hold_at=0), Client()
    calls: list[str] = []

    async def finish() -> None:
        calls.append("finish")

    response = relay(upstream(), body, extra_headers=[], on_finish=finish)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(response, {"type": "http"}, client.receive, client.send)
            await anyio.sleep(0.05)  # the head is out, nothing of the body yet
            client.left.set()
    assert client.body == b""
    assert calls == ["finish"]
    assert body.closed


async def test_a_client_that_leaves_once_the_answer_is_whole_still_gets_it_completed() -> None:
    """Clients stop reading at [DONE]; the upstream's end of body is just behind it. Once the
    observer says the answer is whole, a client leaving no longer stops the relay."""
    body = Body([b"data: 1\n\n", b"data: [DONE]\n\n", b""], hold_at=2)
    client = Client()
    calls: list[str] = []

    async def complete() -> None:
        calls.append("complete")

    async def finish() -> None:
        calls.append("finish")

    response = relay(
        upstream(), body, extra_headers=[], observe=lambda chunk: b"[DONE]" in chunk,
        on_complete=complete, on_finish=finish,
    )  # fmt: skip
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(response, {"type": "http"}, client.receive, client.send)
            await anyio.sleep(0.05)  # [DONE] is out, the upstream's end held
            client.left.set()
            await anyio.sleep(0.05)  # the client is gone
            body.released.set()
    assert client.body == b"data: 1\n\ndata: [DONE]\n\n"
    assert calls == ["complete", "finish"]
    assert body.closed
