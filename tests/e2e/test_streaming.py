"""Streamed answers: captured on a miss, replayed as faithful SSE on a hit, with the real SDK."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import AsyncOpenAI, Omit, OpenAI, omit
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionStreamOptionsParam,
)

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess
from tests.support.sdk import function_calls

AUTH = {"authorization": "Bearer sk-stream"}
TOOLS: list[ChatCompletionFunctionToolParam] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
]


def sdk(proxy: ProxyProcess) -> OpenAI:
    return OpenAI(base_url=proxy.base_url, api_key="sk-stream", max_retries=0)


def stream(
    client: OpenAI,
    text: str,
    model: str = "gpt-fake",
    stream_options: ChatCompletionStreamOptionsParam | Omit = omit,
) -> tuple[str, list[ChatCompletionChunk]]:
    """(X-Cache, the chunks) of one streamed call."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options=stream_options,
    )
    return raw.headers["x-cache"], list(raw.parse())


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_stream_miss_then_stream_hit_sync(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with sdk(proxy) as client:
        miss_state, miss = stream(client, question)
        hit_state, hit = stream(client, question)
    assert (miss_state, hit_state) == ("MISS", "HIT")
    assert text_of(hit) == text_of(miss) == f"answer 1: {question}"
    content_chunks = [c for c in hit if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1
    assert [c.choices[0].delta.content for c in content_chunks] == [
        c.choices[0].delta.content for c in miss if c.choices and c.choices[0].delta.content
    ]
    assert hit[0].choices[0].delta.role == "assistant"
    assert hit[-1].choices[0].finish_reason == "stop"
    assert {(c.id, c.created, c.model) for c in hit} == {(miss[0].id, miss[0].created, "gpt-fake")}
    assert all(c.object == "chat.completion.chunk" for c in hit)
    assert fake_upstream.calls() == 1


@pytest.mark.anyio
async def test_stream_miss_then_stream_hit_async(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    async with AsyncOpenAI(base_url=proxy.base_url, api_key="sk-stream", max_retries=0) as client:
        texts = []
        for _ in range(2):
            chunks = await client.chat.completions.create(
                model="gpt-fake", messages=[{"role": "user", "content": question}], stream=True
            )
            texts.append("".join([c.choices[0].delta.content or "" async for c in chunks]))
    assert texts == [f"answer 1: {question}"] * 2
    assert fake_upstream.calls() == 1


def test_include_usage_yields_a_usage_chunk_on_the_hit(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    options: ChatCompletionStreamOptionsParam = {"include_usage": True}
    with sdk(proxy) as client:
        _, miss = stream(client, question, stream_options=options)
        state, hit = stream(client, question, stream_options=options)
        _, plain = stream(client, question)
    assert state == "HIT"
    assert hit[-1].choices == []
    assert hit[-1].usage is not None
    assert miss[-1].usage is not None
    assert hit[-1].usage.total_tokens == miss[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in plain)
    assert fake_upstream.calls() == 1


def test_stream_entry_answers_a_non_streaming_call_and_back(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with sdk(proxy) as client:
        _, streamed = stream(client, question, stream_options={"include_usage": True})
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-fake", messages=[{"role": "user", "content": question}]
        )
        completion = raw.parse()
        assert raw.headers["x-cache"] == "HIT"
        assert completion.choices[0].message.content == text_of(streamed)
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert completion.system_fingerprint == streamed[0].system_fingerprint

        other = question + " (non-stream first)"
        first = client.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": other}]
        )
        state, replayed = stream(client, other)
    assert state == "HIT"
    assert text_of(replayed) == first.choices[0].message.content
    assert len([c for c in replayed if c.choices and c.choices[0].delta.content]) > 1
    assert fake_upstream.calls() == 2


def test_streamed_tool_calls_are_captured_and_replayed(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with sdk(proxy) as client:
        with client.chat.completions.stream(
            model="fake-tools", messages=[{"role": "user", "content": question}], tools=TOOLS
        ) as s:
            miss = s.get_final_completion()
        with client.chat.completions.stream(
            model="fake-tools", messages=[{"role": "user", "content": question}], tools=TOOLS
        ) as s:
            hit = s.get_final_completion()
        as_json = client.chat.completions.create(
            model="fake-tools", messages=[{"role": "user", "content": question}], tools=TOOLS
        )
    calls = [function_calls(m) for m in (miss, hit, as_json)]
    assert all(len(c) == 1 for c in calls)
    assert {(c[0].id, c[0].function.name, c[0].function.arguments) for c in calls} == {
        (calls[0][0].id, "get_weather", '{"city": "Paris"}')
    }
    assert hit.choices[0].finish_reason == "tool_calls"
    assert fake_upstream.calls() == 1


@pytest.mark.parametrize("model", ["fake-length", "fake-midstream-error", "fake-error-500"])
def test_unfinished_or_failed_streams_are_not_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str, model: str
) -> None:
    with sdk(proxy) as client:
        for _ in range(2):
            try:
                state, _ = stream(client, question, model=model)
            except openai.APIError:
                continue
            assert state == "MISS"
    assert fake_upstream.calls() == 2


def test_a_cut_stream_reaches_the_client_as_sent_and_is_not_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    body = {
        "model": "fake-cut",
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    for _ in range(2):
        with httpx.stream(
            "POST", proxy.base_url + "/chat/completions", json=body, headers=AUTH
        ) as response:
            data = b"".join(response.iter_bytes())
            assert response.headers["x-cache"] == "MISS"
        assert data.count(b'"content"') >= 2  # what upstream sent before it cut
        assert b"[DONE]" not in data
    assert fake_upstream.calls() == 2


def test_events_are_relayed_as_they_arrive(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    """The upstream sends one event, then waits for the test: the client must have it first."""
    body = {
        "model": "fake-hold",
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    with httpx.stream(
        "POST", proxy.base_url + "/chat/completions", json=body, headers=AUTH
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert not fake_upstream.release.is_set()
        assert '"role":"assistant"' in first.replace(" ", "")
        fake_upstream.release.set()
        rest = list(lines)
    assert [line for line in rest if line][-1] == "data: [DONE]"
    with sdk(proxy) as client:
        assert stream(client, question, model="fake-hold")[0] == "HIT"


def test_a_leader_whose_client_leaves_still_answers_its_followers(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    """The client of a streamed miss goes away while identical requests wait for its answer:
    the upstream answer is read to its end all the same and stored, and every follower is
    served it. Each follower used to go upstream on its own (one call per client)."""
    import threading
    import time

    import orjson

    body = {"model": "fake-hold", "stream": True,
            "messages": [{"role": "user", "content": question}]}  # fmt: skip
    answers: list[tuple[str | None, str | None, str]] = []

    def follow() -> None:
        r = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=AUTH, timeout=30)
        answers.append((r.headers.get("x-cache"), r.headers.get("x-cache-lookup"), r.text))

    followers = [threading.Thread(target=follow) for _ in range(3)]
    with httpx.stream(
        "POST", proxy.base_url + "/chat/completions", json=body, headers=AUTH
    ) as response:
        lines = response.iter_lines()  # kept: the leader stays until the block ends
        next(line for line in lines if line.startswith("data:"))
        for follower in followers:
            follower.start()
        time.sleep(0.5)  # the followers are waiting on the flight
        assert fake_upstream.calls() == 1
    # The leader's client is gone; its answer is still wanted.
    assert not fake_upstream.stream_cancelled.wait(timeout=0.5)
    fake_upstream.release.set()
    for follower in followers:
        follower.join(timeout=30)
    assert [(state, lookup) for state, lookup, _ in answers] == [("HIT", "coalesced")] * 3
    for *_, text in answers:
        assert text.endswith("data: [DONE]\n\n")
        events = [orjson.loads(line[6:]) for line in text.splitlines() if line[6:7] == "{"]
        deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
        said = "".join(d.get("content") or "" for d in deltas)
        assert said == f"answer 1: {question}"
    assert fake_upstream.calls() == 1


def test_client_disconnect_cancels_upstream_and_stores_nothing(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    body = {
        "model": "fake-hold",
        "stream": True,
        "messages": [{"role": "user", "content": question}],
    }
    with httpx.stream(
        "POST", proxy.base_url + "/chat/completions", json=body, headers=AUTH
    ) as response:
        next(line for line in response.iter_lines() if line.startswith("data:"))
    # The client is gone: the proxy must cancel its upstream request.
    assert fake_upstream.stream_cancelled.wait(timeout=10)
    fake_upstream.release.set()
    with sdk(proxy) as client:
        state, chunks = stream(client, question, model="fake-hold")
    assert state == "MISS"
    assert text_of(chunks) == f"answer 2: {question}"
    assert fake_upstream.calls() == 2
