"""Usage on every hit path: streamed misses ask the upstream for it; a client that did not ask
gets the stream without it; every entry then serves usage (stream/non-stream x entry from a
stream with or without include_usage)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from proxy.upstream import UsageStripper
from tests.unit.harness import Proxy, chat_body

pytestmark = pytest.mark.anyio
USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
WORDS = ["Paris", " is", " the capital."]


def upstream_stream(request: httpx.Request) -> httpx.Response:
    """An upstream that honours stream_options as OpenAI does (usage: null on every chunk)."""
    body = orjson.loads(request.content)
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(WORDS)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m"}
        return httpx.Response(200, json={**answer, "choices": [choice], "usage": USAGE})
    include = bool((body.get("stream_options") or {}).get("include_usage"))
    return httpx.Response(
        200, content=_events(include), headers={"content-type": "text/event-stream"}
    )


def _events(include: bool) -> bytes:
    def chunk(choices: list[Any], usage: Any = None) -> bytes:
        obj: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                               "model": "m", "choices": choices}  # fmt: skip
        if include:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "finish_reason": finish}]

    out = [chunk(choice({"role": "assistant", "content": ""}))]
    out += [chunk(choice({"content": w})) for w in WORDS]
    out.append(chunk(choice({}, "stop")))
    if include:
        out.append(chunk([], USAGE))
    return b"".join(out) + b"data: [DONE]\n\n"


def _chunks(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


def _stream(include_usage: bool) -> dict[str, Any]:
    if include_usage:
        return chat_body(stream=True, stream_options={"include_usage": True})
    return chat_body(stream=True)


@pytest.mark.parametrize("made_with_usage", [False, True])
async def test_every_hit_path_has_usage(proxy: Proxy, made_with_usage: bool) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=upstream_stream)
    miss = await proxy.chat(_stream(made_with_usage))
    assert miss.headers["x-cache"] == "MISS"
    sent = orjson.loads(route.calls.last.request.content)
    assert sent["stream_options"]["include_usage"] is True  # asked for, either way
    chunks = _chunks(miss)
    if made_with_usage:
        assert route.calls.last.request.content == orjson.dumps(_stream(True))  # unchanged
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == USAGE
    else:  # the client gets the stream it asked for: no usage chunk, no usage fields
        assert all("usage" not in c for c in chunks)
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "".join(
            WORDS
        )

    plain = await proxy.chat(chat_body())
    assert plain.headers["x-cache"] == "HIT"
    assert plain.json()["usage"] == USAGE

    streamed_with = _chunks(await proxy.chat(_stream(True)))
    assert streamed_with[-1]["choices"] == []
    assert streamed_with[-1]["usage"] == USAGE

    streamed_without = _chunks(await proxy.chat(_stream(False)))
    assert all(c.get("usage") is None for c in streamed_without)
    assert all(c["choices"] for c in streamed_without)
    assert route.call_count == 1


async def test_an_entry_from_a_plain_call_serves_usage_to_streams(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=upstream_stream)
    assert (await proxy.chat(chat_body())).json()["usage"] == USAGE
    assert _chunks(await proxy.chat(_stream(True)))[-1]["usage"] == USAGE
    assert route.call_count == 1


async def test_an_upstream_that_refuses_stream_options_gets_the_request_as_sent(
    proxy: Proxy,
) -> None:
    refusal = {"error": {"message": "Unrecognized request argument supplied: stream_options"}}

    def refuse_option(request: httpx.Request) -> httpx.Response:
        if b"stream_options" in request.content:
            return httpx.Response(400, json=refusal)
        return httpx.Response(
            200, content=_events(False), headers={"content-type": "text/event-stream"}
        )

    route = proxy.upstream.post("/chat/completions").mock(side_effect=refuse_option)
    response = await proxy.chat(_stream(False))
    assert response.status_code == 200
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in _chunks(response))
    assert route.call_count == 2
    assert route.calls.last.request.content == orjson.dumps(_stream(False))
    # Stored all the same (without usage: the upstream gives none).
    assert (await proxy.chat(chat_body())).headers["x-cache"] == "HIT"
    assert route.call_count == 2


async def test_vllms_continuous_usage_is_not_turned_on_behind_the_clients_back(
    proxy: Proxy,
) -> None:
    """vLLM sends usage on every chunk when ``continuous_usage_stats`` and ``include_usage``
    are both set, and none with the first alone: asked for usage on the client's behalf, its
    every chunk would have carried one the client never asked for. Sent as it came."""

    def vllm(request: httpx.Request) -> httpx.Response:
        options = orjson.loads(request.content).get("stream_options") or {}
        continuous = options.get("include_usage") and options.get("continuous_usage_stats")
        chunks = [
            {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": w},
                          "finish_reason": "stop" if w == WORDS[-1] else None}],
             **({"usage": USAGE} if continuous else {})}
            for w in WORDS
        ]  # fmt: skip
        content = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
        return httpx.Response(
            200,
            content=content + b"data: [DONE]\n\n",
            headers={"content-type": "text/event-stream"},
        )

    route = proxy.upstream.post("/chat/completions").mock(side_effect=vllm)
    asked = {**chat_body(), "stream": True, "stream_options": {"continuous_usage_stats": True}}
    response = await proxy.chat(asked)
    assert all("usage" not in c for c in _chunks(response))
    assert route.calls.last.request.content == orjson.dumps(asked)


async def test_a_client_error_is_relayed_after_one_call(proxy: Proxy) -> None:
    error = {"error": {"message": "model 'nope' not found", "type": "invalid_request_error"}}
    route = proxy.upstream.post("/chat/completions").respond(400, json=error)
    response = await proxy.chat(_stream(False))
    assert response.status_code == 400
    assert response.json() == error
    assert route.call_count == 1


async def test_a_stream_that_is_not_stored_is_forwarded_unchanged(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=upstream_stream)
    response = await proxy.chat(_stream(False), **{"cache-control": "no-store"})
    assert response.status_code == 200
    assert route.calls.last.request.content == orjson.dumps(_stream(False))


@pytest.mark.parametrize("crlf", [1, 0], ids=["one-event-in-crlf", "lf-only"])
def test_the_stripper_keeps_other_events_byte_for_byte_at_any_split(crlf: int) -> None:
    # LF-only streams take the split path, a CR anywhere the regex path: the same bytes out.
    raw = (
        b": keep-alive\n\n"
        + _events(True).replace(b"\n\n", b"\r\n\r\n", crlf)
        + b'data: {"note":"no usage here"}\n\n'
    )
    expected = b": keep-alive\n\n" + _events(False).replace(b"\n\n", b"\r\n\r\n", crlf)
    expected += b'data: {"note":"no usage here"}\n\n'
    for split in range(0, len(raw), 3):
        stripper = UsageStripper()
        out = stripper.feed(raw[:split]) + stripper.feed(raw[split:]) + stripper.flush()
        assert out == expected, split


def test_the_stripper_keeps_a_usage_the_client_can_see_in_choices() -> None:
    # A chunk with choices and a real usage (some servers send it on the last content chunk)
    # is left whole: its text must not be lost.
    event = (
        b'data: {"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"total_tokens":3}}\n\n'
    )
    stripper = UsageStripper()
    assert stripper.feed(event) == event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            b'data: {"id": "c", "choices": [], "usage": null}\n\n',
            b'data: {"id": "c", "choices": []}\n\n',
        ),
        (b'data: {"usage":null,"id":"c"}\n\n', b'data: {"id":"c"}\n\n'),
        (b'data: {"id":"c","delta":"say \\",\\"usage\\":null"}\n\n', None),
    ],
)
def test_the_stripper_handles_each_way_of_writing_a_null_usage(
    event: bytes, expected: bytes | None
) -> None:
    """Spaced, first key, or the words inside a string value (left alone)."""
    assert UsageStripper().feed(event) == (event if expected is None else expected)
