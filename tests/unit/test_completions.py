"""``POST /v1/completions`` (legacy text completions): exact caching, streamed or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx

from proxy.cache.completions import Joined, replay
from tests.unit.harness import FakeClock, Proxy, make_proxy, tier_served

pytestmark = pytest.mark.anyio


def text_completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9},
    }


def body(prompt: Any = "Once upon a time", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-3.5-turbo-instruct", "prompt": prompt, "max_tokens": 16, **fields}


def sse(*texts: str, logprobs: list[dict[str, Any]] | None = None) -> bytes:
    """A text completion stream, one chunk per text (with its ``logprobs``, if given)."""
    chunks = []
    for i, text in enumerate(texts):
        finish = "stop" if i == len(texts) - 1 else None
        given = None if logprobs is None else logprobs[i]
        choice = {"text": text, "index": 0, "logprobs": given, "finish_reason": finish}
        chunk = {"id": "cmpl-s", "object": "text_completion", "created": 1, "model": "m",
                 "choices": [choice]}  # fmt: skip
        chunks.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(chunks) + b"data: [DONE]\n\n"


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(upstream_mock, clock) as p:
        yield p


async def post(proxy: Proxy, payload: dict[str, Any], **headers: str) -> httpx.Response:
    return await proxy.client.post(
        "/v1/completions", json=payload, headers={"authorization": "Bearer sk-a", **headers}
    )


async def test_a_repeated_completion_is_a_hit(proxy: Proxy) -> None:
    route = proxy.upstream.post("/completions").respond(200, json=text_completion(" there was"))
    first = await post(proxy, body())
    again = await post(proxy, body())
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert again.json() == first.json()
    assert route.call_count == 1


@pytest.mark.parametrize(
    "other",
    [
        body("Once upon a time "),  # a trailing space: the model writes something else next
        body("once upon a time"),
        body(max_tokens=17),
        body(temperature=0.2),
        body(suffix="The end."),
        body(["Once upon a time"]),
        {**body(), "model": "davinci-002"},
    ],
    ids=["trailing-space", "case", "max_tokens", "temperature", "suffix", "list", "model"],
)
async def test_anything_that_changes_the_answer_misses(proxy: Proxy, other: dict[str, Any]) -> None:
    route = proxy.upstream.post("/completions").respond(200, json=text_completion(" ok"))
    await post(proxy, body())
    response = await post(proxy, other)
    assert response.headers["x-cache"] == "MISS"
    assert response.headers["x-cache-reason"] == "no-entry"
    assert route.call_count == 2


async def test_tenants_do_not_share(proxy: Proxy) -> None:
    route = proxy.upstream.post("/completions").respond(200, json=text_completion(" ok"))
    await post(proxy, body())
    other = await proxy.client.post(
        "/v1/completions", json=body(), headers={"authorization": "Bearer sk-b"}
    )
    assert other.headers["x-cache"] == "MISS"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(200, json=text_completion(" cut", finish="length")),
     httpx.Response(500, json={"error": {"message": "boom"}})],
    ids=["length", "500"],
)  # fmt: skip
async def test_incomplete_answers_and_errors_are_not_stored(
    proxy: Proxy, answer: httpx.Response
) -> None:
    route = proxy.upstream.post("/completions").mock(side_effect=[answer, answer])
    await post(proxy, body())
    assert (await post(proxy, body())).headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_a_stream_is_stored_and_serves_both_kinds(proxy: Proxy) -> None:
    route = proxy.upstream.post("/completions").respond(
        200, content=sse(" there", " was a", " cat."), headers={"content-type": "text/event-stream"}
    )
    streamed = await post(proxy, body(stream=True))
    assert streamed.headers["x-cache"] == "MISS"
    assert b"data: [DONE]" in streamed.content
    plain = await post(proxy, body())
    assert plain.headers["x-cache"] == "HIT"
    assert plain.json()["choices"][0]["text"] == " there was a cat."
    again = await post(proxy, body(stream=True, stream_options={"include_usage": True}))
    assert again.headers["x-cache"] == "HIT"
    assert again.headers["content-type"].startswith("text/event-stream")
    joined = Joined()
    for event in again.content.split(b"\n\n"):
        if event:
            joined.feed(event.removeprefix(b"data: "))
    assert joined.result() is not None
    assert joined.result()["choices"][0]["text"] == " there was a cat."  # type: ignore[index]
    assert route.call_count == 1


async def test_bypass_and_no_store(proxy: Proxy) -> None:
    route = proxy.upstream.post("/completions").respond(200, json=text_completion(" ok"))
    bypass = await post(proxy, body(), **{"x-cache-bypass": "1"})
    assert (bypass.headers["x-cache"], bypass.headers["x-cache-reason"]) == (
        "BYPASS",
        "bypass:header",
    )
    await post(proxy, body(), **{"cache-control": "no-store"})
    assert (await post(proxy, body())).headers["x-cache"] == "MISS"
    assert route.call_count == 3


@pytest.mark.parametrize("bad", [{"model": "m"}, {"model": "m", "prompt": 5}, {"prompt": "x"}])
async def test_a_bad_body_is_a_400_and_never_sent(proxy: Proxy, bad: dict[str, Any]) -> None:
    route = proxy.upstream.post("/completions").respond(200, json=text_completion(" ok"))
    response = await post(proxy, bad)
    assert response.status_code == 400
    assert route.call_count == 0


def test_replay_joins_back_to_the_completion() -> None:
    completion = text_completion(" a longer answer, in several words, than one chunk holds")
    joined = Joined()
    for event in replay(completion, include_usage=True).split(b"\n\n"):
        if event:
            joined.feed(event.removeprefix(b"data: "))
    out = joined.result()
    assert out is not None
    assert out["choices"] == completion["choices"]
    assert out["usage"] == completion["usage"]


async def test_concurrent_identical_misses_make_one_upstream_call(proxy: Proxy) -> None:
    release = anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=text_completion(" there was"))

    route = proxy.upstream.post("/completions").mock(side_effect=slow)
    results: list[httpx.Response] = []

    async def ask() -> None:
        results.append(await post(proxy, body()))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert route.call_count == 1
    assert sorted(r.headers["x-cache"] for r in results) == ["HIT"] * 4 + ["MISS"]
    assert {r.headers.get("x-cache-lookup") for r in results} == {None, "coalesced"}
    assert len({r.json()["choices"][0]["text"] for r in results}) == 1


async def test_followers_of_a_failed_leader_ask_for_themselves(proxy: Proxy) -> None:
    release = anyio.Event()
    answers = [httpx.Response(500, json={"error": {"message": "boom"}})] + [
        httpx.Response(200, json=text_completion(" ok"))
    ] * 4

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return answers.pop(0)

    route = proxy.upstream.post("/completions").mock(side_effect=slow)
    statuses: list[int] = []

    async def ask() -> None:
        statuses.append((await post(proxy, body())).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert sorted(statuses) == [200, 200, 500]  # the error is never served to the others
    assert route.call_count == 3


def logprob_stream(tokens: list[str]) -> bytes:
    """A stream that asked for ``logprobs``: one token per chunk, with its logprobs."""
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    logprobs = [
        {"tokens": [token], "token_logprobs": [-0.1 * (i + 1)],
         "top_logprobs": [{token: -0.1 * (i + 1)}], "text_offset": [offsets[i]]}
        for i, token in enumerate(tokens)
    ]  # fmt: skip
    return sse(*tokens, logprobs=logprobs)


async def test_logprobs_asked_for_are_kept_on_every_kind_of_hit(proxy: Proxy) -> None:
    """Must NOT drop: ``logprobs`` is in the key, so its hits answer requests that asked for
    them; a stream's are joined when stored and handed back out, a few tokens per chunk."""
    tokens = [" there", " was", " a", " cat", " on", " the", " mat", "."]
    route = proxy.upstream.post("/completions").respond(
        200, content=logprob_stream(tokens), headers={"content-type": "text/event-stream"}
    )
    await post(proxy, body(stream=True, logprobs=1))
    plain = await post(proxy, body(logprobs=1))
    assert plain.headers["x-cache"] == "HIT"
    logprobs = plain.json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == tokens
    assert logprobs["token_logprobs"] == pytest.approx([-0.1 * (i + 1) for i in range(8)])
    assert logprobs["text_offset"] == [0, 6, 10, 12, 16, 19, 23, 27]
    streamed = await post(proxy, body(stream=True, logprobs=1))
    assert streamed.headers["x-cache"] == "HIT"
    events = [e.removeprefix(b"data: ") for e in streamed.content.split(b"\n\n") if e]
    joined = Joined()
    for e in events:
        joined.feed(e)
    again = joined.result()
    assert again is not None
    assert again["choices"][0]["logprobs"] == logprobs
    assert again["choices"][0]["text"] == "".join(tokens)
    assert len(events) > 3  # in several chunks, each with its tokens' logprobs
    assert route.call_count == 1


def test_logprobs_that_do_not_spell_the_text_go_out_whole_in_one_chunk() -> None:
    completion = text_completion(" hello world")
    completion["choices"][0]["logprobs"] = {"tokens": [" hi"], "token_logprobs": [-1.0]}
    events = [e for e in replay(completion, include_usage=False).split(b"\n\n") if e][:-1]
    (only,) = [orjson.loads(e.removeprefix(b"data: ")) for e in events]
    assert only["choices"][0]["text"] == " hello world"
    assert only["choices"][0]["logprobs"] == {"tokens": [" hi"], "token_logprobs": [-1.0]}


def test_an_azure_first_chunk_does_not_blank_the_stored_id_and_model() -> None:
    joined = Joined()
    joined.feed(orjson.dumps({"id": "", "created": 0, "model": "", "choices": [],
                              "prompt_filter_results": []}))  # fmt: skip
    for event in sse(" there", " was.").split(b"\n\n"):
        if event:
            joined.feed(event.removeprefix(b"data: "))
    out = joined.result()
    assert out is not None
    assert (out["id"], out["created"], out["model"]) == ("cmpl-s", 1, "m")


USAGE = {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def usage_aware_stream(request: httpx.Request) -> httpx.Response:
    """An upstream that streams usage (a ``choices: []`` chunk, ``"usage": null`` on the
    others) only when ``stream_options.include_usage`` asks for it, as OpenAI does."""
    asked = (orjson.loads(request.content).get("stream_options") or {}).get("include_usage")
    chunks = []
    for i, text in enumerate([" there", " was a", " cat."]):
        choice = {"text": text, "index": 0, "logprobs": None,
                  "finish_reason": "stop" if i == 2 else None}  # fmt: skip
        chunk: dict[str, Any] = {"id": "cmpl-s", "object": "text_completion", "created": 1,
                                 "model": "m", "choices": [choice]}  # fmt: skip
        if asked:
            chunk["usage"] = None
        chunks.append(chunk)
    if asked:
        chunks.append({"id": "cmpl-s", "object": "text_completion", "created": 1, "model": "m",
                       "choices": [], "usage": USAGE})  # fmt: skip
    content = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return httpx.Response(
        200, content=content + b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
    )


async def test_a_stream_that_did_not_ask_for_usage_still_serves_hits_with_usage(
    proxy: Proxy,
) -> None:
    """A streamed miss whose client did not ask for usage makes an entry that later serves a
    non-streamed request (whose answer always has ``usage``) and a stream that asks for it
    (``include_usage``): as on chat, the upstream is asked for usage and the client that did
    not ask gets the stream without it."""
    route = proxy.upstream.post("/completions").mock(side_effect=usage_aware_stream)
    first = await post(proxy, body(stream=True))
    assert first.headers["x-cache"] == "MISS"
    assert b'"usage"' not in first.content  # the stream as this client would have had it
    assert first.content == usage_aware_stream(httpx.Request("POST", "http://u", json={})).content
    plain = await post(proxy, body())
    assert plain.headers["x-cache"] == "HIT"
    assert plain.json()["usage"] == USAGE
    streamed = await post(proxy, body(stream=True, stream_options={"include_usage": True}))
    assert streamed.headers["x-cache"] == "HIT"
    events = [e.removeprefix(b"data: ") for e in streamed.content.split(b"\n\n") if e]
    usage_chunk = orjson.loads(events[-2])
    assert (usage_chunk["choices"], usage_chunk["usage"]) == ([], USAGE)
    # As OpenAI streams it: every other chunk says "usage": null.
    assert all(orjson.loads(e)["usage"] is None for e in events[:-2])
    assert route.call_count == 1


def tiered(request: httpx.Request, route: Any) -> httpx.Response:
    """As the API does: the answer names the tier that served it (:func:`tier_served`)."""
    return httpx.Response(
        200, json={**text_completion(" there"), "service_tier": tier_served(request)}
    )


@pytest.mark.parametrize(
    ("stored", "asked", "shown"),
    [
        pytest.param("flex", "priority", "priority", id="flex-then-priority"),
        pytest.param("flex", None, "default", id="flex-then-none"),
        pytest.param("priority", "fast", "priority", id="priority-then-fast"),
        pytest.param(None, "flex", "flex", id="none-then-flex"),
    ],
)
async def test_a_hit_names_the_tier_this_request_is_served_on(
    proxy: Proxy, stored: str | None, asked: str | None, shown: str
) -> None:
    """As on chat: ``service_tier`` is not in the key, and a hit names the tier this request
    would have been served on, not the stored answer's, streamed or not."""
    route = proxy.upstream.post("/completions").mock(side_effect=tiered)
    first = await post(proxy, body(**({} if stored is None else {"service_tier": stored})))
    fields = {} if asked is None else {"service_tier": asked}
    hit = await post(proxy, body(**fields))
    streamed = await post(proxy, body(stream=True, **fields))
    assert (hit.headers["x-cache"], streamed.headers["x-cache"]) == ("HIT", "HIT")
    assert hit.json() == {**first.json(), "service_tier": shown}
    chunks = [orjson.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert {c["service_tier"] for c in chunks} == {shown}
    assert route.call_count == 1


async def test_a_streamed_miss_keeps_the_tier_it_was_served_on(proxy: Proxy) -> None:
    """The stream's chunks name the tier; the joined completion keeps it, so a hit asking that
    tier shows it, and one asking another shows its own."""
    chunk = {"id": "cmpl-s", "object": "text_completion", "created": 1, "model": "m",
             "service_tier": "flex",
             "choices": [{"text": " there", "index": 0, "logprobs": None,
                          "finish_reason": "stop"}]}  # fmt: skip
    stream = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    route = proxy.upstream.post("/completions").respond(
        200, content=stream, headers={"content-type": "text/event-stream"}
    )
    await post(proxy, body(stream=True, service_tier="flex"))
    same = await post(proxy, body(service_tier="flex"))
    other = await post(proxy, body(service_tier="priority"))
    assert (same.headers["x-cache"], other.headers["x-cache"]) == ("HIT", "HIT")
    assert (same.json()["service_tier"], other.json()["service_tier"]) == ("flex", "priority")
    assert route.call_count == 1
