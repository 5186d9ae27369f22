"""Non-streamed answers larger than ``max_entry_bytes``: relayed as they arrive, never held
whole, never stored; on every cached route, compressed or not, followed or not."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
import respx

from proxy.cache import coalesce
from tests.unit.harness import FakeClock, completion, make_proxy

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024
AUTH = {"authorization": "Bearer sk-test-a"}
TEXT = "x" * 400_000
"""The answer's text when it is to be large: six times ``LIMIT``."""


def _chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def _chat_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    return completion(TEXT if large else "Paris.")


def _embeddings(text: str) -> dict[str, Any]:
    return {"model": "m", "input": [f"{text} {i}" for i in range(10 if text == "large" else 1)]}


def _embeddings_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    # Each input's vector an entry over the limit: 20,000 floats, about 240 KB of JSON; half
    # the answer is more than the ten inputs' limits together.
    dims = 20_000 if large else 4
    data = [{"object": "embedding", "index": i, "embedding": [0.123456789] * dims}
            for i in range(len(request["input"]))]  # fmt: skip
    return {"object": "list", "data": data, "model": "m",
            "usage": {"prompt_tokens": 3, "total_tokens": 3}}  # fmt: skip


def _completions_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    choice = {"index": 0, "text": TEXT if large else "Paris.", "finish_reason": "stop",
              "logprobs": None}  # fmt: skip
    return {"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": [choice]}  # fmt: skip


def _responses_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    content = [{"type": "output_text", "text": TEXT if large else "Paris.", "annotations": []}]
    output = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": content}]  # fmt: skip
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "model": "m", "output": output,
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}  # fmt: skip


def _ollama_chat_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    message = {"role": "assistant", "content": TEXT if large else "Paris."}
    return {"model": "m", "created_at": "t", "message": message, "done": True,
            "done_reason": "stop"}  # fmt: skip


def _ollama_embed_answer(request: dict[str, Any], large: bool) -> dict[str, Any]:
    return {"model": "m", "embeddings": [[0.123456789] * (50_000 if large else 4)]}


@dataclass(frozen=True)
class Route:
    path: str
    url: str
    request: Callable[[str], dict[str, Any]]
    answer: Callable[[dict[str, Any], bool], dict[str, Any]]
    encoding: str | None = None
    """The upstream compresses its answer so."""
    length: bool = False
    """The upstream says its answer's ``Content-Length``."""


ROUTES = {
    "chat": Route("/v1/chat/completions", "http://upstream.test/v1/chat/completions", _chat,
                  _chat_answer),
    "chat-gzip": Route("/v1/chat/completions", "http://upstream.test/v1/chat/completions",
                       _chat, _chat_answer, encoding="gzip"),
    "chat-length": Route("/v1/chat/completions", "http://upstream.test/v1/chat/completions",
                         _chat, _chat_answer, length=True),
    "embeddings": Route("/v1/embeddings", "http://upstream.test/v1/embeddings", _embeddings,
                        _embeddings_answer),
    "completions": Route("/v1/completions", "http://upstream.test/v1/completions",
                         lambda text: {"model": "m", "prompt": text}, _completions_answer),
    "responses": Route("/v1/responses", "http://upstream.test/v1/responses",
                       lambda text: {"model": "m", "input": text, "store": False},
                       _responses_answer),
    "ollama-chat": Route("/api/chat", "http://upstream.test/api/chat",
                         lambda text: {**_chat(text), "stream": False}, _ollama_chat_answer),
    "ollama-embed": Route("/api/embed", "http://upstream.test/api/embed",
                          lambda text: {"model": "m", "input": text}, _ollama_embed_answer),
}  # fmt: skip


class Upstream:
    """Answers a request naming ``large`` in two halves, the second only once the test sets
    ``release`` (and, for the first such request, the first only once ``go`` is set); any other
    request at once, small."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.release = anyio.Event()
        self.go = anyio.Event()
        self.go.set()
        self.large_calls = 0

    def large(self, request: dict[str, Any]) -> bytes:
        return orjson.dumps(self.route.answer(request, True))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        asked = orjson.loads(request.content)
        large = b"large" in request.content
        body = orjson.dumps(self.route.answer(asked, large))
        headers = {"content-type": "application/json", "x-request-id": "req-1"}
        if self.route.encoding == "gzip":
            body = gzip.compress(body)
            headers["content-encoding"] = "gzip"
        if not large:
            return httpx.Response(200, content=body, headers=headers)
        if self.route.length:
            headers["content-length"] = str(len(body))
        self.large_calls += 1
        first = self.large_calls == 1
        half = len(body) // 2

        async def halves() -> Any:
            if first:
                await self.go.wait()
            yield body[:half]
            await self.release.wait()
            yield body[half:]

        return httpx.Response(200, stream=halves(), headers=headers)


class Client:
    """One request driven over ASGI, so that the test sees its first body bytes arrive (httpx's
    ASGITransport hands over nothing before the whole answer)."""

    def __init__(self, app: Any, path: str, body: dict[str, Any]) -> None:
        self.app = app
        self.path = path
        self.raw = orjson.dumps(body)
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.started = anyio.Event()
        self.done = anyio.Event()

    async def run(self) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": self.path,
                 "raw_path": self.path.encode(), "query_string": b"", "root_path": "",
                 "server": ("semcache.test", 80), "client": ("127.0.0.1", 1), "headers": [
                     (b"host", b"semcache.test"), (b"content-type", b"application/json"),
                     (b"content-length", str(len(self.raw)).encode()),
                     (b"authorization", b"Bearer sk-test-a")]}  # fmt: skip
        await self.app(scope, self.receive, self.send)

    async def receive(self) -> dict[str, Any]:
        if self.raw:
            raw, self.raw = self.raw, b""
            return {"type": "http.request", "body": raw, "more_body": False}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = dict(message["headers"])
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if self.body:
                self.started.set()
            if not message.get("more_body"):
                self.done.set()


@pytest.mark.parametrize("name", list(ROUTES))
async def test_an_answer_over_the_entry_limit_is_relayed_as_it_arrives_and_not_stored(
    clock: FakeClock, name: str
) -> None:
    """Its first half reaches the client before the upstream sends the rest (it was read whole
    first, 2.6 times its size in memory for a 100 MB answer), byte for byte as the upstream
    sent it (decoded when compressed), and it is not stored: asked again, it goes upstream
    again. An answer under the limit is stored as ever."""
    route = ROUTES[name]
    upstream = Upstream(route)
    with respx.mock(assert_all_called=False) as router:
        calls = router.post(route.url).mock(side_effect=upstream)
        async with make_proxy(router, clock, max_entry_bytes=LIMIT) as proxy:
            small = [
                await proxy.client.post(route.path, json=route.request("small"), headers=AUTH)
                for _ in range(2)
            ]
            assert [r.headers["x-cache"] for r in small] == ["MISS", "HIT"]
            assert calls.call_count == 1

            client = Client(proxy.app, route.path, route.request("large"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.run)
                with anyio.fail_after(5):
                    await client.started.wait()
                assert not client.done.is_set()
                upstream.release.set()
            again = await proxy.client.post(route.path, json=route.request("large"), headers=AUTH)
            stats = (await proxy.client.get("/cache/stats")).json()
    expected = upstream.large(orjson.loads(orjson.dumps(route.request("large"))))
    assert client.status == 200
    assert client.body == expected
    assert again.content == expected
    assert client.headers[b"x-cache"] == b"MISS"
    assert again.headers["x-cache"] == "MISS"
    # As a miss read whole says why it missed:
    assert client.headers[b"x-cache-reason"] == small[0].headers["x-cache-reason"].encode()
    assert client.headers[b"x-request-id"] == b"req-1"  # the upstream's own headers
    assert client.headers[b"content-type"] == b"application/json"
    assert b"content-encoding" not in client.headers
    # The upstream's length when its bytes go on as they came; none when decoded or chunked.
    length = str(len(expected)).encode() if route.length else None
    assert client.headers.get(b"content-length") == length
    if name == "embeddings":
        assert client.headers[b"x-cache-hit-items"] == b"0/10"
    assert calls.call_count == 3
    assert stats["not_stored"] == {"too_large": 2}


@pytest.mark.parametrize("name", ["chat", "completions", "ollama-chat"])
async def test_followers_of_a_leader_whose_answer_is_too_large_ask_for_themselves(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Two identical requests at once, their answer over the limit: the follower is let go as
    soon as the leader knows its answer will not be stored (not once it has relayed all of it),
    asks the upstream itself, and both get the whole answer."""
    route = ROUTES[name]
    upstream = Upstream(route)
    upstream.go = anyio.Event()  # the leader's answer starts once the other request follows
    wait = coalesce.Flight.wait

    async def follow(flight: coalesce.Flight, timeout_seconds: float) -> Any:
        upstream.go.set()
        return await wait(flight, timeout_seconds)

    monkeypatch.setattr(coalesce.Flight, "wait", follow)
    with respx.mock(assert_all_called=False) as router:
        calls = router.post(route.url).mock(side_effect=upstream)
        async with make_proxy(router, clock, max_entry_bytes=LIMIT) as proxy:
            clients = [Client(proxy.app, route.path, route.request("large")) for _ in range(2)]
            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(client.run)
                with anyio.fail_after(5):
                    for client in clients:
                        await client.started.wait()
                upstream.release.set()
    expected = upstream.large(orjson.loads(orjson.dumps(route.request("large"))))
    assert upstream.go.is_set()  # one followed the other
    for client in clients:
        assert client.status == 200
        assert client.body == expected
        assert client.headers[b"x-cache"] == b"MISS"
    assert calls.call_count == 2


async def test_an_embeddings_batch_over_the_entry_limit_is_stored_one_entry_per_input(
    clock: FakeClock,
) -> None:
    """The entry limit bounds each input's vector, not the batch's answer: 40 inputs of 1,000
    floats (about 240 KB, over three times ``LIMIT``; each vector 6 KB, float32 as stored,
    which 0.125 is exactly) are read whole and stored, and asked again served from the cache."""
    body = {"model": "m", "input": [f"passage {i}" for i in range(40)]}
    answer = {"object": "list", "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3},
              "data": [{"object": "embedding", "index": i, "embedding": [0.125] * 1000}
                       for i in range(40)]}  # fmt: skip
    assert len(orjson.dumps(answer)) > 3 * LIMIT
    with respx.mock(assert_all_called=False) as router:
        calls = router.post("http://upstream.test/v1/embeddings").respond(200, json=answer)
        async with make_proxy(router, clock, max_entry_bytes=LIMIT) as proxy:
            answers = [
                await proxy.client.post("/v1/embeddings", json=body, headers=AUTH) for _ in range(2)
            ]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT"]
    assert answers[1].headers["x-cache-hit-items"] == "40/40"
    assert calls.call_count == 1
    assert [d["embedding"] for d in answers[1].json()["data"]] == [[0.125] * 1000] * 40


class _CutClient(Client):
    """As test_large_answers.Client, but records whether the app ended the body cleanly (a
    final ``more_body: False``) or raised (the server then drops the connection: the client
    sees a broken answer, which SDKs retry)."""

    ended_cleanly = False
    raised: BaseException | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.ended_cleanly = True
        await super().send(message)

    async def run(self) -> None:
        try:
            await super().run()
        except Exception as exc:  # what uvicorn would log, then close the connection
            self.raised = exc
            self.done.set()


@pytest.mark.parametrize("encoding", [None, "gzip", "length"])
async def test_an_over_limit_answer_cut_mid_body_is_not_ended_as_if_whole(
    clock: FakeClock, encoding: str | None
) -> None:
    """The upstream sends half of an answer over the entry limit (no Content-Length: chunked,
    or gzip, whose length semcache drops) and then the connection breaks. Read whole (before
    f00f537) the client got a 502 its SDK retries; relayed as it arrives, the status is out,
    but the body must not then end as if it were whole: a chunked answer that ends cleanly
    is a complete 200 to every HTTP client, and a truncated JSON body is a parse error no SDK
    retries. Only a broken connection tells the client."""
    body = orjson.dumps(completion(TEXT))
    headers = {"content-type": "application/json"}
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    if encoding == "length":  # semcache relays it chunked: its own framing, not the upstream's
        headers["content-length"] = str(len(body))
    half = len(body) // 2

    async def cut() -> Any:
        yield body[:half]
        await anyio.lowlevel.checkpoint()
        raise httpx.ReadError("connection reset by peer")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=cut(), headers=headers)

    with respx.mock(assert_all_called=False) as router:
        router.post("http://upstream.test/v1/chat/completions").mock(side_effect=answer)
        async with make_proxy(router, clock, max_entry_bytes=LIMIT) as proxy:
            client = _CutClient(
                proxy.app, "/v1/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "large"}]},
            )  # fmt: skip
            with anyio.fail_after(5):
                await client.run()
    assert client.status == 200
    assert len(client.body) < len(orjson.dumps(completion(TEXT)))
    assert not client.ended_cleanly, "a truncated answer was ended as a complete one"
