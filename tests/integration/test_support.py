"""The test support pieces themselves: real redis-server, real HTTP fake upstream."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import httpx
import numpy as np
import orjson
import pytest
import redis

from tests.support.fake_upstream import FakeUpstream, embedding_vector, iter_sse_data
from tests.support.redis_server import RedisServer


def chat(model: str = "gpt-test", text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.redis
def test_redis_answers_ping_and_is_v8(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping() is True
        assert int(str(client.info("server")["redis_version"]).split(".")[0]) >= 8
        client.set("k", "v")
        assert client.get("k") == b"v"


@pytest.mark.redis
def test_redis_kill_and_restart_keep_port(redis_server: RedisServer, redis_url: str) -> None:
    port = redis_server.port
    with redis.Redis.from_url(redis_url, socket_timeout=1) as client:
        client.set("k", "v")
        redis_server.kill()
        assert not redis_server.ping()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        redis_server.restart()
        assert redis_server.port == port
        assert redis_server.url == f"redis://127.0.0.1:{port}/0"
        assert client.get("k") is None  # no persistence across restarts


def test_chat_json_is_unique_per_call_and_recorded(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.url) as client:
        first = client.post("/chat/completions", json=chat(n=2), headers={"X-Trace": "abc"})
        second = client.post("/chat/completions", json=chat())
    assert first.status_code == 200
    assert first.headers["x-upstream"] == "fake"
    assert first.headers["x-request-id"] == "req-1"
    body = first.json()
    assert body["id"] == "chatcmpl-fake-1"
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert [c["message"]["content"] for c in body["choices"]] == [
        "answer 1: hello there",
        "answer 1: hello there (1)",
    ]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 2 + body["usage"]["completion_tokens"]
    assert second.json()["choices"][0]["message"]["content"] == "answer 2: hello there"
    assert fake_upstream.calls() == 2
    recorded = fake_upstream.requests[0]
    assert recorded.method == "POST"
    assert recorded.headers["x-trace"] == "abc"
    assert recorded.json == chat(n=2)
    assert orjson.loads(recorded.body) == chat(n=2)


def test_chat_stream_is_real_sse(fake_upstream: FakeUpstream) -> None:
    request = chat(stream=True, stream_options={"include_usage": True})
    with (
        httpx.Client(base_url=fake_upstream.url) as client,
        client.stream("POST", "/chat/completions", json=request) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        data = list(iter_sse_data(response.iter_lines()))
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        ("chatcmpl-fake-1", chunks[0]["created"], "gpt-test", "chat.completion.chunk")
    }
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) >= 3
    text = "".join(c["choices"][0]["delta"]["content"] for c in content_chunks)
    assert text == "answer 1: hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


def test_stream_tool_call_arguments_are_split(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.url) as client:
        response = client.post("/chat/completions", json=chat("fake-tools", stream=True))
    chunks = [orjson.loads(d) for d in iter_sse_data(response.iter_lines()) if d != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    pieces = [tc["function"]["arguments"] for d in deltas for tc in d.get("tool_calls", [])]
    assert len(pieces) > 2
    assert orjson.loads("".join(pieces)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.anyio
async def test_hold_waits_for_release(fake_upstream: FakeUpstream) -> None:
    send, receive = anyio.create_memory_object_stream[str](10)

    async def read_stream() -> None:
        async with (
            send,
            httpx.AsyncClient(base_url=fake_upstream.url) as client,
            client.stream("POST", "/chat/completions", json=chat("fake-hold", stream=True)) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    await send.send(line[5:].strip())

    async with receive, anyio.create_task_group() as tg:
        tg.start_soon(read_stream)
        with anyio.fail_after(5):
            first = orjson.loads(await receive.receive())
        assert first["choices"][0]["delta"]["role"] == "assistant"
        with anyio.move_on_after(0.3) as held:
            await receive.receive()
        assert held.cancelled_caught, "the rest of the stream arrived before release"
        fake_upstream.release.set()
        with anyio.fail_after(5):
            rest = [d async for d in receive]
    assert rest[-1] == "[DONE]"
    assert (
        "".join(orjson.loads(d)["choices"][0]["delta"].get("content", "") for d in rest[:-1])
        == "answer 1: hello there"
    )


def test_error_switches_and_cut(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.url) as client:
        limited = client.post("/chat/completions", json=chat("fake-429"))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "7"
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert (
            client.post("/embeddings", json={"model": "fake-error-500", "input": "x"}).status_code
            == 500
        )
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/chat/completions", json=chat("fake-cut", stream=True))
        echo = client.post("/files?purpose=x", content=b"raw")
    assert echo.json() == {
        "method": "POST",
        "path": "/v1/files",
        "query": "purpose=x",
        "body": "raw",
    }
    assert fake_upstream.calls() == 2
    assert fake_upstream.calls("/v1/embeddings") == 1


def test_embeddings_base64_matches_float(fake_upstream: FakeUpstream) -> None:
    inputs = ["What is the capital of France?", "something else entirely"]
    with httpx.Client(base_url=fake_upstream.url) as client:
        floats = client.post("/embeddings", json={"model": "e", "input": inputs}).json()
        b64 = client.post(
            "/embeddings",
            json={"model": "e", "input": inputs, "encoding_format": "base64", "dimensions": 8},
        ).json()
        tokens = client.post("/embeddings", json={"model": "e", "input": [[1, 2, 3], [4]]}).json()
    assert fake_upstream.embedding_items == [2, 2, 2]
    assert floats["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    assert tokens["usage"]["prompt_tokens"] == 4
    for f, b, text in zip(floats["data"], b64["data"], inputs, strict=True):
        as_float = np.array(f["embedding"], dtype=np.float32)
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.shape == (8,)
        np.testing.assert_array_equal(decoded, as_float)
        np.testing.assert_array_equal(decoded, embedding_vector(text))
        assert abs(float(np.linalg.norm(decoded)) - 1.0) < 1e-6
    near = float(embedding_vector("what is the capital of france") @ embedding_vector(inputs[0]))
    far = float(embedding_vector(inputs[1]) @ embedding_vector(inputs[0]))
    assert near > 0.98
    assert far < near - 0.1
