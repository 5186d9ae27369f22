"""Chat completions through the app, upstream simulated with respx."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from proxy.cache.policy import served_tier
from proxy.errors import StoreError
from proxy.http.validate import has_duplicate_keys, has_inexact_numbers
from tests.unit.harness import (
    FakeClock,
    Proxy,
    chat_body,
    completion,
    make_proxy,
    numbered,
    tier_served,
)

pytestmark = pytest.mark.anyio

TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def answer_numbered(request: httpx.Request, route: Any) -> httpx.Response:
    """Each upstream call answers differently, so a wrong hit is visible in the content."""
    return httpx.Response(200, json=completion(f"answer {route.call_count + 1}"))


async def test_repeat_is_served_from_cache_with_one_upstream_call(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)

    first = await proxy.chat(chat_body())
    second = await proxy.chat(chat_body())

    assert route.call_count == 1
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-lookup"] == "exact"
    assert len(second.headers["x-cache-entry-id"]) == 16
    assert second.headers["age"] == "0"
    assert second.json() == first.json()
    assert second.json()["choices"][0]["message"]["content"] == "answer 1"


async def test_age_counts_from_the_upstream_answer(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(200, json=completion())
    await proxy.chat(chat_body())
    proxy.clock.advance(42.7)
    assert (await proxy.chat(chat_body())).headers["age"] == "42"


async def test_upstream_receives_the_body_unchanged(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").respond(200, json=completion())
    raw = b'{"model": "gpt-test",  "messages": [{"role": "user", "content": " hi\\r\\n"}]}'
    await proxy.client.post("/v1/chat/completions", content=raw, headers={"x-custom": "1"})
    sent = route.calls.last.request
    assert sent.content == raw
    assert sent.headers["x-custom"] == "1"


def _zstd_framed(data: bytes) -> bytes:
    """Bytes that begin as a zstd frame does (no zstd library here): neither JSON, nor a BOM,
    nor a NUL in the first four bytes, so only ``Content-Encoding`` tells what they are."""
    return b"\x28\xb5\x2f\xfd" + data


@pytest.mark.parametrize(
    ("path", "upstream_path", "body"),
    [
        ("/v1/chat/completions", "/chat/completions", chat_body()),
        ("/v1/responses", "/responses", {"model": "gpt-test", "input": "hi", "store": False}),
        ("/v1/embeddings", "/embeddings", {"model": "e", "input": "hi"}),
    ],
)
@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("zstd", _zstd_framed)]
)
async def test_a_compressed_body_is_sent_on_as_it_came_not_refused(
    proxy: Proxy,
    path: str,
    upstream_path: str,
    body: dict[str, Any],
    encoding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    """Codex compresses large Responses bodies (gzip, zstd) and OpenAI reads them; semcache
    read the compressed bytes as JSON and answered 400. Whether the upstream takes the
    encoding is the upstream's to say: the request goes to it untouched, uncached."""
    route = proxy.upstream.post(upstream_path).respond(200, json=completion())
    compressed = compress(orjson.dumps(body))
    headers = {"content-encoding": encoding, "content-type": "application/json"}
    answers = [await proxy.client.post(path, content=compressed, headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert answers[0].headers["x-cache-reason"] == "bypass:content-encoding"
    assert route.call_count == 2
    sent = route.calls.last.request
    assert sent.content == compressed
    assert sent.headers["content-encoding"] == encoding


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: b"\xef\xbb\xbf" + text.encode(),  # UTF-8 with a BOM
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-16-le"),
        lambda text: text.encode("utf-32"),
    ],
    ids=["utf-8-bom", "utf-16", "utf-16-le", "utf-32"],
)
async def test_json_in_another_encoding_is_sent_on_as_it_came_not_refused(
    proxy: Proxy, encode: Any
) -> None:
    """JSON is UTF-8 without a BOM (RFC 8259), and semcache reads only that; but Python's reader
    (FastAPI's: vLLM) takes a BOM, UTF-16 and UTF-32, so a 400 here refused what such an
    upstream accepts. Such a body goes to the upstream as it came, uncached."""
    route = proxy.upstream.post("/chat/completions").respond(200, json=completion())
    raw = encode(json.dumps(chat_body()))
    answers = [
        await proxy.client.post(
            "/v1/chat/completions", content=raw, headers={"authorization": "Bearer k"}
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-cache-reason"] for a in answers] == ["bypass:charset"] * 2
    assert route.call_count == 2
    assert route.calls.last.request.content == raw


@pytest.mark.parametrize(
    ("content_type", "cached"),
    [
        ("application/json; charset=iso-8859-1", False),
        ('application/json; charset="windows-1252"', False),
        ("application/json;charset=Latin1", False),
        ("application/json; charset=UTF-8", True),
        ('application/json; charset="utf8"', True),
        ("application/json; foo=bar", True),
    ],
)
async def test_a_body_said_to_be_in_another_charset_is_sent_on_not_cached(
    proxy: Proxy, content_type: str, cached: bool
) -> None:
    """The same bytes said to be Latin-1 are another text to a server that honours the charset
    (``Ã©`` for ``é``; Express answers 415): never a hit on what UTF-8 stored, nor stored."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    raw = json.dumps(chat_body("Où est la gare?"), ensure_ascii=False).encode()
    utf8 = await proxy.client.post(
        "/v1/chat/completions", content=raw,
        headers={"authorization": "Bearer k", "content-type": "application/json"},
    )  # fmt: skip
    answers = [
        await proxy.client.post(
            "/v1/chat/completions",
            content=raw,
            headers={"authorization": "Bearer k", "content-type": content_type},
        )
        for _ in range(2)
    ]
    assert utf8.headers["x-cache"] == "MISS"
    if cached:
        assert [a.headers["x-cache"] for a in answers] == ["HIT", "HIT"]
        assert route.call_count == 1
    else:
        assert [a.headers["x-cache-reason"] for a in answers] == ["bypass:charset"] * 2
        assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [
            "answer 2", "answer 3"
        ]  # fmt: skip
        assert route.call_count == 3
        assert route.calls.last.request.headers["content-type"] == content_type
        assert route.calls.last.request.content == raw


def fastapi_like(answer: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    """An upstream reading a body as FastAPI (vLLM) does: as JSON only when it says it is (or
    says nothing), else a 422."""

    def respond(request: httpx.Request) -> httpx.Response:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in ("", "application/json"):
            return httpx.Response(422, json={"detail": [{"type": "model_attributes_type"}]})
        return httpx.Response(200, json=answer)

    return respond


TEXT_COMPLETION = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-test",
                   "choices": [{"text": " hi", "index": 0, "finish_reason": "stop"}]}  # fmt: skip
RESPONSE = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-test",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi."}]}]}  # fmt: skip
EMBEDDINGS = {"object": "list", "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1},
              "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}]}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "upstream_path", "body", "answer"),
    [
        ("/v1/chat/completions", "/chat/completions", chat_body(), completion()),
        ("/v1/completions", "/completions", {"model": "gpt-test", "prompt": "hi"}, TEXT_COMPLETION),
        ("/v1/responses", "/responses", {"model": "gpt-test", "input": "hi"}, RESPONSE),
        ("/v1/embeddings", "/embeddings", {"model": "e", "input": "hi"}, EMBEDDINGS),
    ],
    ids=["chat", "completions", "responses", "embeddings"],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_of_another_content_type_is_passed_through_never_served(
    proxy: Proxy,
    path: str,
    upstream_path: str,
    body: dict[str, Any],
    answer: dict[str, Any],
    content_type: str,
) -> None:
    """A JSON body sent as ``text/plain`` (or as curl's ``-d`` default) is refused by a FastAPI
    upstream (vLLM: 422): the entry for the same JSON must not answer it. It goes on as it
    came, every time, and the upstream's answer is relayed."""
    route = proxy.upstream.post(upstream_path).mock(side_effect=fastapi_like(answer))
    key = {"authorization": "Bearer sk-test-a"}
    raw = orjson.dumps(body)
    await proxy.client.post(path, content=raw, headers=key)  # stored
    answers = [
        await proxy.client.post(path, content=raw, headers={**key, "content-type": content_type})
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert [a.headers["x-cache-reason"] for a in answers] == ["bypass:content-type"] * 2
    assert route.call_count == 3
    assert route.calls.last.request.content == raw
    assert route.calls.last.request.headers["content-type"] == content_type
    assert proxy.metrics.miss_reasons["bypass:content-type"] == 2
    stored = await proxy.client.post(path, content=raw, headers=key)
    assert stored.headers["x-cache"] == "HIT"  # the entry was there all along


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json"]
)
async def test_json_said_any_way_is_cached(proxy: Proxy, content_type: str) -> None:
    """The openai and ollama libraries send ``application/json``; a charset parameter, or
    capitals (media types are case-insensitive, RFC 9110 §8.3.1), change nothing."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=fastapi_like(completion()))
    headers = {"authorization": "Bearer sk-test-a", "content-type": content_type}
    raw = orjson.dumps(chat_body())
    first = await proxy.client.post("/v1/chat/completions", content=raw, headers=headers)
    again = await proxy.client.post("/v1/chat/completions", content=raw, headers=headers)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert route.call_count == 1


async def test_normalized_text_and_number_spelling_share_an_entry(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body("Caf\u0065\u0301 hours?\r\n", temperature=1))
    hit = await proxy.chat(chat_body("Caf\u00e9 hours?\n  ", temperature=1.0))
    assert hit.headers["x-cache"] == "HIT"
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({}, {"model": "gpt-other"}, id="model"),
        pytest.param({"temperature": 0}, {"temperature": 0.2}, id="temperature"),
        pytest.param({"top_p": 1}, {"top_p": 0.5}, id="top_p"),
        pytest.param({"max_tokens": 100}, {"max_tokens": 101}, id="max_tokens"),
        pytest.param({"max_completion_tokens": 9}, {}, id="max_completion_tokens"),
        pytest.param({"seed": 1}, {"seed": 2}, id="seed"),
        pytest.param({"n": 1}, {"n": 2}, id="n"),
        pytest.param({"stop": ["\n"]}, {"stop": ["."]}, id="stop"),
        pytest.param({"presence_penalty": 0}, {"presence_penalty": 1}, id="presence_penalty"),
        pytest.param({"frequency_penalty": 0}, {"frequency_penalty": 1}, id="frequency_penalty"),
        pytest.param({"logit_bias": {"50256": -100}}, {}, id="logit_bias"),
        pytest.param({"tools": [TOOL]}, {}, id="tools"),
        pytest.param(
            {"tools": [TOOL], "tool_choice": "auto"},
            {"tools": [TOOL], "tool_choice": "none"},
            id="tool_choice",
        ),
        pytest.param({"response_format": {"type": "json_object"}}, {}, id="response_format"),
        pytest.param({"reasoning_effort": "low"}, {"reasoning_effort": "high"}, id="unknown-field"),
        pytest.param({"some_new_field": 1}, {}, id="field-we-do-not-know"),
    ],
)
async def test_answer_changing_fields_never_share_an_entry(
    proxy: Proxy, first: dict[str, Any], second: dict[str, Any]
) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat({**chat_body(), **first})
    response = await proxy.chat({**chat_body(), **second})
    assert response.headers["x-cache"] == "MISS"
    assert response.json()["choices"][0]["message"]["content"] == "answer 2"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(
            [{"role": "user", "content": "What is the capital of Spain?"}], id="user-text"
        ),
        pytest.param(
            [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            id="system-prompt",
        ),
        pytest.param(
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            id="earlier-turns",
        ),
        pytest.param(
            [{"role": "user", "content": "What is the capital of France?", "name": "bob"}],
            id="message-name",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "What is the capital of France!"}],
                }
            ],
            id="content-parts",
        ),
    ],
)
async def test_any_message_difference_is_a_miss(
    proxy: Proxy, messages: list[dict[str, Any]]
) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body())
    response = await proxy.chat({"model": "gpt-test", "messages": messages})
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_another_api_key_never_sees_the_entry(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body(), authorization="Bearer sk-tenant-a")
    other = await proxy.chat(chat_body(), authorization="Bearer sk-tenant-b")
    anonymous = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert other.headers["x-cache"] == "MISS"
    assert anonymous.headers["x-cache"] == "MISS"
    assert other.json()["choices"][0]["message"]["content"] == "answer 2"
    assert route.call_count == 3
    same = await proxy.chat(chat_body(), authorization="Bearer sk-tenant-a")
    assert same.headers["x-cache"] == "HIT"


async def test_stream_and_user_fields_do_not_change_the_key(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body(user="alice", stream=False))
    hit = await proxy.chat(chat_body(user="bob", metadata={"x": "y"}))
    assert hit.headers["x-cache"] == "HIT"
    assert route.call_count == 1


def tiered(request: httpx.Request, route: Any) -> httpx.Response:
    """As the API does: the answer names the tier that served it (:func:`tier_served`)."""
    return httpx.Response(200, json={**completion(f"answer {route.call_count + 1}"),
                                     "service_tier": tier_served(request)})  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "asked", "shown"),
    [
        pytest.param("flex", "priority", "priority", id="flex-then-priority"),
        pytest.param("flex", None, "default", id="flex-then-none"),
        pytest.param("flex", "auto", "default", id="flex-then-auto"),
        pytest.param(None, "flex", "flex", id="none-then-flex"),
        pytest.param("priority", "fast", "priority", id="priority-then-fast"),
    ],
)
async def test_a_hit_names_the_tier_this_request_is_served_on(
    proxy: Proxy, stored: str | None, asked: str | None, shown: str
) -> None:
    """``service_tier`` is left out of the key (it does not change the answer), but the answer
    names the tier that served it: a hit never shows a ``priority`` request the ``flex`` tier
    the stored answer was made on, streamed or not."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=tiered)
    first = await proxy.chat(chat_body(**({} if stored is None else {"service_tier": stored})))
    fields = {} if asked is None else {"service_tier": asked}
    hit = await proxy.chat(chat_body(**fields))
    streamed = await proxy.chat(chat_body(stream=True, **fields))
    assert (hit.headers["x-cache"], streamed.headers["x-cache"]) == ("HIT", "HIT")
    assert hit.json() == {**first.json(), "service_tier": shown}
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert {c["service_tier"] for c in chunks} == {shown}
    assert route.call_count == 1


async def test_a_hit_on_its_own_tier_or_from_an_upstream_naming_none_is_served_as_stored(
    proxy: Proxy,
) -> None:
    """No tier is made up where the upstream names none (vLLM, Ollama), and an answer that
    names this request's tier is served byte for byte."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=tiered)
    first = await proxy.chat(chat_body(service_tier="flex"))
    assert (await proxy.chat(chat_body(service_tier="flex"))).content == first.content
    route.mock(side_effect=None, return_value=httpx.Response(200, json=completion("Rome.")))
    await proxy.chat(chat_body("What is the capital of Italy?"))
    hit = await proxy.chat(chat_body("What is the capital of Italy?", service_tier="priority"))
    assert hit.headers["x-cache"] == "HIT"
    assert "service_tier" not in hit.json()
    streamed = await proxy.chat(
        chat_body("What is the capital of Italy?", stream=True, service_tier="priority")
    )
    assert streamed.headers["x-cache"] == "HIT"
    assert b"service_tier" not in streamed.content  # a streamed hit makes none up either
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("stored", "asked", "shown"),
    [
        ("flex", "priority", "priority"),
        ("default", "fast", "priority"),
        ("scale", "auto", "scale"),
        ("scale", None, "scale"),
        ("priority", None, "default"),
        ("flex", "default", "default"),
        (None, "priority", None),
    ],
)
def test_the_tier_a_hit_shows(stored: str | None, asked: str | None, shown: str | None) -> None:
    assert served_tier(stored, asked) == shown


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, {"error": {"message": "boom", "type": "server_error"}}, id="5xx"),
        pytest.param(400, {"error": {"message": "bad", "type": "invalid_request_error"}}, id="4xx"),
        pytest.param(200, completion(finish="length"), id="length"),
        pytest.param(200, completion(finish="content_filter"), id="content-filter"),
        pytest.param(200, completion(""), id="empty"),
        pytest.param(200, completion("   "), id="whitespace"),
        pytest.param(200, completion(None), id="null-content"),
        pytest.param(200, {**completion(), "choices": []}, id="no-choices"),
        pytest.param(200, {"unexpected": True}, id="not-a-completion"),
    ],
)
async def test_failed_or_incomplete_answers_are_relayed_but_never_stored(
    proxy: Proxy, status: int, body: dict[str, Any]
) -> None:
    route = proxy.upstream.post("/chat/completions").respond(status, json=body)
    first = await proxy.chat(chat_body())
    second = await proxy.chat(chat_body())
    assert first.status_code == status
    assert first.json() == body
    assert second.headers["x-cache"] == "MISS"
    assert route.call_count == 2
    assert (await proxy.store.stats()).entries == 0


async def test_non_json_200_is_not_stored(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").respond(200, content=b"<html>oops</html>")
    first = await proxy.chat(chat_body())
    await proxy.chat(chat_body())
    assert first.content == b"<html>oops</html>"
    assert route.call_count == 2


async def test_tool_call_answers_are_stored(proxy: Proxy) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    route = proxy.upstream.post("/chat/completions").respond(
        200, json=completion(None, finish="tool_calls", tool_calls=[call])
    )
    await proxy.chat(chat_body(tools=[TOOL]))
    hit = await proxy.chat(chat_body(tools=[TOOL]))
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json()["choices"][0]["message"]["tool_calls"] == [call]
    assert route.call_count == 1


async def test_upstream_error_status_and_headers_pass_through(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(
        429, json={"error": {"message": "slow down"}}, headers={"retry-after": "7"}
    )
    response = await proxy.chat(chat_body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": {"message": "slow down"}}


@pytest.mark.parametrize(
    ("path", "doubled", "plain"),
    [
        (
            "/v1/chat/completions",
            b'{"model":"m","temperature":1,"messages":[{"role":"user","content":"Hi"}],'
            b'"temperature":0}',
            {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0},
        ),
        (
            "/v1/embeddings",
            b'{"model":"e","input":"a","dimensions":8,"dimensions":16}',
            {"model": "e", "input": "a", "dimensions": 16},
        ),
    ],
    ids=["chat", "embeddings"],
)
async def test_a_body_naming_a_key_twice_is_passed_through_never_cached(
    proxy: Proxy, path: str, doubled: bytes, plain: dict[str, Any]
) -> None:
    """Which value an upstream reads is its parser's choice: the key semcache derives (the last
    value) may not be what was answered. Must NOT be stored, nor served from the cache."""
    upstream_path = path.removeprefix("/v1")
    answer = completion() if "chat" in path else {
        "object": "list", "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5] * 16}],
    }  # fmt: skip
    route = proxy.upstream.post(upstream_path).respond(200, json=answer)
    auth = {"authorization": "Bearer sk-test-a", "content-type": "application/json"}
    first = await proxy.client.post(path, content=doubled, headers=auth)
    plain_miss = await proxy.client.post(path, json=plain, headers=auth)
    again = await proxy.client.post(path, content=doubled, headers=auth)
    assert first.headers["x-cache"] == again.headers["x-cache"] == "BYPASS"
    assert first.headers["x-cache-reason"] == "bypass:duplicate-keys"
    assert plain_miss.headers["x-cache"] == "MISS"
    assert route.calls[0].request.content == doubled  # forwarded as sent
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("raw", "doubled"),
    [
        (b'{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}', False),  # one name, other objects
        (b'{"a":1,"a":1}', True),  # even the same value twice
        (b'{"m":[{"role":"user","content":"x","content":"y"}]}', True),  # deep in an array
        (b'{"a":{"b":{"c":1,"c":2}}}', True),
        (b'{"content":"\\"a\\":1,\\"a\\":2"}', False),  # only inside a string
        (b'{"a" : 1, "a"\n:2}', True),  # space before the colon
        (b'{"s":"x\\" :y"}', False),  # a quote and a colon inside a string, spaced
        (b'{"a":1,"a":2,"s":"\\u0022:"}', True),  # an escaped quote balancing the count
        (b'{"k\\u0061":1,"ka":2}', True),  # the same key written two ways
        (b'{"model":"a","Model":"b"}', True),  # one field to Go, which folds case
        (b'{"m":[{"role":"user","Content":"x","content":"y"}]}', True),  # deep
        (b'{"system":"a","\xc5\xbfystem":"b"}', True),  # long s folds to s in Go
        (b'{"model":"a","models":"b","mode":"c"}', False),
        (b'{"a":{"model":1},"b":{"Model":2}}', False),  # two objects: each one field to Go
    ],
)
@pytest.mark.parametrize("fast", [True, False], ids=["with-the-parse", "alone"])
def test_duplicate_keys_are_found_at_any_depth(raw: bytes, doubled: bool, fast: bool) -> None:
    assert has_duplicate_keys(raw, orjson.loads(raw) if fast else None) is doubled


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (b'"model":"gpt-a","Model":"gpt-b"', b'"Model":"gpt-b","model":"gpt-a"'),
        (
            b'"model":"m","temperature":0,"TEMPERATURE":1.5',
            b'"model":"m","TEMPERATURE":1.5,"temperature":0',
        ),
    ],
    ids=["model", "temperature"],
)
async def test_keys_that_differ_only_in_case_are_passed_through(
    proxy: Proxy, first: bytes, then: bytes
) -> None:
    """Go's encoding/json (Ollama, its OpenAI API included) reads ``Model`` as ``model``, the
    last one written winning: these two bodies are two requests to it (gpt-b, then gpt-a), but
    one key to semcache, which sorts the keys it read. Must NOT be stored, nor served."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    messages = b'"messages":[{"role":"user","content":"Hi"}]'
    answers = [
        await proxy.client.post(
            "/v1/chat/completions", content=b"{" + fields + b"," + messages + b"}",
            headers={"content-type": "application/json"},
        )
        for fields in (first, then)
    ]  # fmt: skip
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert answers[0].headers["x-cache-reason"] == "bypass:duplicate-keys"
    assert answers[1].json()["choices"][0]["message"]["content"] == "answer 2"
    assert route.call_count == 2


def _schema(const: int) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "id", "strict": True, "schema": {
        "type": "object", "properties": {"id": {"const": const}}, "required": ["id"]}}}  # fmt: skip


async def test_integers_beyond_64_bits_are_passed_through(proxy: Proxy) -> None:
    """orjson reads an integer beyond 64 bits as the nearest float: these two schemas (each
    answer must be its own number) made one key. Python's reader, the upstream's, keeps them
    apart. Must NOT share an entry: both are passed through."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    bodies = [{**chat_body(), "response_format": _schema(n)}
              for n in (12345678901234567890123, 12345678901234567890124)]  # fmt: skip
    answers = []
    for body in bodies:
        raw = json.dumps(body).encode()
        answers.append(await proxy.client.post(
            "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
        ))  # fmt: skip
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert answers[1].headers["x-cache-reason"] == "bypass:big-number"
    assert answers[1].json()["choices"][0]["message"]["content"] == "answer 2"
    assert route.call_count == 2
    assert route.calls[1].request.content == json.dumps(bodies[1]).encode()  # as sent


@pytest.mark.parametrize(
    ("raw", "inexact"),
    [
        (b'{"seed":18446744073709551615}', False),  # 2**64 - 1: orjson holds it
        (b'{"seed":18446744073709551616}', True),  # 2**64
        (b'{"seed":-9223372036854775808}', False),
        (b'{"seed":-9223372036854775809}', True),
        (b'{"a":[{"b":123456789012345678901234567890}]}', True),
        (b'{"s":"1234567890123456789012345"}', False),  # digits in a string
        (b'{"x":1.2345678901234567890123e5}', False),  # a float: read alike by both
    ],
)
def test_inexact_integers_are_found(raw: bytes, inexact: bool) -> None:
    assert has_inexact_numbers(raw, orjson.loads(raw)) is inexact


async def test_azure_on_your_data_is_passed_through(proxy: Proxy) -> None:
    """``data_sources`` grounds the answer in a search index the account keeps and may change:
    the same request can mean another answer tomorrow. Must NOT be cached."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    source = {"type": "azure_search", "parameters": {"endpoint": "https://s", "index_name": "i"}}
    body = {**chat_body(), "data_sources": [source]}
    answers = [await proxy.chat(body) for _ in range(2)]
    assert [a.headers["x-cache-reason"] for a in answers] == ["bypass:server-state"] * 2
    assert route.call_count == 2


async def test_bypass_header_skips_lookup_and_store(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body())
    bypassed = await proxy.chat(chat_body(), **{"x-cache-bypass": "1"})
    assert bypassed.headers["x-cache"] == "BYPASS"
    assert bypassed.json()["choices"][0]["message"]["content"] == "answer 2"
    assert "x-cache-bypass" not in route.calls.last.request.headers
    await proxy.chat(chat_body("new question"), **{"x-cache-bypass": "true"})
    assert (await proxy.chat(chat_body("new question"))).headers["x-cache"] == "MISS"


async def test_no_cache_refreshes_the_entry(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body())
    fresh = await proxy.chat(chat_body(), **{"cache-control": "no-cache"})
    assert fresh.headers["x-cache"] == "MISS"
    hit = await proxy.chat(chat_body())
    assert hit.json()["choices"][0]["message"]["content"] == "answer 2"
    assert route.call_count == 2


async def test_no_store_answers_without_storing(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body(), **{"cache-control": "no-store"})
    assert (await proxy.chat(chat_body())).headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_no_store_still_serves_an_existing_entry(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body())
    assert (await proxy.chat(chat_body(), **{"cache-control": "no-store"})).headers[
        "x-cache"
    ] == "HIT"


async def test_max_age_refuses_older_entries(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body())
    proxy.clock.advance(120)
    assert (await proxy.chat(chat_body(), **{"cache-control": "max-age=60"})).headers[
        "x-cache"
    ] == "MISS"
    assert (await proxy.chat(chat_body(), **{"cache-control": "max-age=600"})).headers[
        "x-cache"
    ] == "HIT"
    assert route.call_count == 2


async def test_ttl_header_sets_the_entry_lifetime(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.chat(chat_body(), **{"x-cache-ttl": "30"})
    proxy.clock.advance(29)
    assert (await proxy.chat(chat_body())).headers["x-cache"] == "HIT"
    proxy.clock.advance(2)
    assert (await proxy.chat(chat_body())).headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_default_ttl_expires_entries(upstream_mock: Any, clock: FakeClock) -> None:
    route = upstream_mock.post("/chat/completions").mock(side_effect=answer_numbered)
    async with make_proxy(upstream_mock, clock, ttl_seconds=10) as proxy:
        await proxy.chat(chat_body())
        clock.advance(11)
        assert (await proxy.chat(chat_body())).headers["x-cache"] == "MISS"
    assert route.call_count == 2


@pytest.mark.parametrize("value", ["0", "-5", "abc", "1.5", "", "1e3", "99999999999999"])
async def test_bad_ttl_header_is_a_400_that_never_reaches_upstream(
    proxy: Proxy, value: str
) -> None:
    route = proxy.upstream.post("/chat/completions").respond(200, json=completion())
    response = await proxy.chat(chat_body(), **{"x-cache-ttl": value})
    assert response.status_code == 400
    assert "X-Cache-TTL" in response.json()["error"]["message"]
    assert route.call_count == 0


async def test_max_temperature_skips_hot_requests(upstream_mock: Any, clock: FakeClock) -> None:
    route = upstream_mock.post("/chat/completions").mock(side_effect=answer_numbered)
    async with make_proxy(upstream_mock, clock, max_temperature=0.5) as proxy:
        hot = [await proxy.chat(chat_body(temperature=0.9)) for _ in range(2)]
        default = [await proxy.chat(chat_body()) for _ in range(2)]
        cold = [await proxy.chat(chat_body(temperature=0.2)) for _ in range(2)]
    assert [r.headers["x-cache"] for r in hot + default] == ["BYPASS"] * 4
    assert [r.headers["x-cache"] for r in cold] == ["MISS", "HIT"]
    assert route.call_count == 5


async def test_upstream_key_is_sent_only_when_the_client_has_none(
    upstream_mock: Any, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion())
    async with make_proxy(upstream_mock, clock, upstream_api_key="sk-server") as proxy:
        await proxy.client.post("/v1/chat/completions", json=chat_body("one"))
        assert route.calls.last.request.headers["authorization"] == "Bearer sk-server"
        await proxy.chat(chat_body("two"), authorization="Bearer sk-client")
        assert route.calls.last.request.headers["authorization"] == "Bearer sk-client"
        await proxy.client.post(
            "/v1/chat/completions",
            json=chat_body("three"),
            headers={"ocp-apim-subscription-key": "sub-client"},
        )
        assert "authorization" not in route.calls.last.request.headers


async def test_upstream_unreachable_is_a_502_in_openai_format(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    response = await proxy.chat(chat_body())
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_upstream_timeout_is_a_504(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    response = await proxy.chat(chat_body())
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        pytest.param(b"", None, id="empty"),
        pytest.param(b"{not json", None, id="not-json"),
        pytest.param(b"[1, 2]", None, id="not-object"),
        pytest.param(b'"text"', None, id="string"),
        pytest.param(b'{"messages": [{"role": "user", "content": "x"}]}', "model", id="no-model"),
        pytest.param(
            b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}',
            "model",
            id="model-type",
        ),
        pytest.param(b'{"model": "m"}', "messages", id="no-messages"),
        pytest.param(b'{"model": "m", "messages": []}', "messages", id="empty-messages"),
        pytest.param(b'{"model": "m", "messages": "hi"}', "messages", id="messages-type"),
        pytest.param(b'{"model": "m", "messages": ["hi"]}', "messages[0]", id="message-type"),
        pytest.param(
            b'{"model": "m", "messages": [{"content": "x"}]}', "messages[0]", id="no-role"
        ),
        pytest.param(
            b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}',
            "stream",
            id="stream-type",
        ),
        pytest.param(
            b'{"model": "m", "messages": [{"role": "user"}], "temperature": "hot"}',
            "temperature",
            id="temperature-type",
        ),
        pytest.param(
            b'{"model": "m", "messages": [{"role": "user", "content": '
            + b"[" * 900
            + b"]" * 900
            + b"}]}",
            None,
            id="deeply-nested",
        ),
    ],
)
async def test_bad_requests_get_a_400_and_never_reach_upstream(
    proxy: Proxy, raw: bytes, param: str | None
) -> None:
    route = proxy.upstream.post("/chat/completions").respond(200, json=completion())
    response = await proxy.client.post("/v1/chat/completions", content=raw)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]
    assert route.call_count == 0


async def test_body_over_the_limit_is_a_413(upstream_mock: Any, clock: FakeClock) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion())
    async with make_proxy(upstream_mock, clock, max_body_bytes=1000) as proxy:
        response = await proxy.chat(chat_body("x" * 2000))
        small = await proxy.chat(chat_body("x"))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert small.status_code == 200
    assert route.call_count == 1


async def test_stats_and_metrics_count_hits_misses_and_tokens(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(200, json=completion())
    for _ in range(3):
        await proxy.chat(chat_body())
    await proxy.client.post("/v1/chat/completions", content=b"{")
    stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["hits"] == 2
    assert stats["misses"] == 1
    assert stats["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert stats["tokens_saved"] == 24
    assert stats["store"]["entries"] == 1
    # One process: the whole cache's figures are its own (flushed to the store when asked).
    whole = stats["whole_cache"]
    assert (whole["hits"], whole["misses"], whole["tokens_saved"]) == (2, 1, 24)
    assert whole["requests"] == stats["requests"]
    assert whole["store"] == stats["store"]
    text = (await proxy.client.get("/metrics")).text
    assert 'semcache_requests_total{route="chat",outcome="hit"} 2' in text
    assert 'semcache_requests_total{route="chat",outcome="bad_request"} 1' in text
    assert 'semcache_cache_hits_total{lookup="exact"} 2' in text
    assert "semcache_store_entries 1" in text
    assert "semcache_upstream_latency_seconds_count 1" in text


async def test_unknown_route_is_a_404_in_openai_format(proxy: Proxy) -> None:
    response = await proxy.client.get("/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_wrong_method_on_an_ops_route_is_an_openai_format_error(proxy: Proxy) -> None:
    response = await proxy.client.post("/healthz")
    assert response.status_code == 405
    assert orjson.loads(response.content)["error"]["message"]


async def test_a_websocket_upgrade_is_refused_not_sent_on_as_a_plain_request(
    proxy: Proxy,
) -> None:
    route = proxy.upstream.get("/realtime").respond(200, json={"object": "not a socket"})
    upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13"}
    refused = await proxy.client.get("/v1/realtime?model=m", headers=upgrade)
    assert refused.status_code == 501
    assert refused.json()["error"]["code"] == "not_supported_by_proxy"
    h2c = await proxy.client.get(
        "/v1/realtime", headers={"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c"}
    )
    assert h2c.status_code == 200  # an h2c upgrade may be ignored: answered in HTTP/1.1
    assert route.call_count == 1


async def test_other_methods_on_chat_route_go_upstream_untouched(proxy: Proxy) -> None:
    route = proxy.upstream.get("/chat/completions").respond(405, json={"error": {"message": "no"}})
    response = await proxy.client.get("/v1/chat/completions")
    assert response.status_code == 405
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("?key=tenant-a", "?key=tenant-b", id="key-in-query"),
        pytest.param("?api-version=2024-01-01", "?api-version=2025-01-01", id="api-version"),
        pytest.param("", "?key=x", id="query-added"),
    ],
)
async def test_a_different_query_string_never_shares_an_entry(
    proxy: Proxy, first: str, second: str
) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    for query in (first, second):
        await proxy.client.post("/v1/chat/completions" + query, json=chat_body())
    again = await proxy.client.post("/v1/chat/completions" + second, json=chat_body())
    assert route.call_count == 2
    assert again.headers["x-cache"] == "HIT"


@pytest.mark.parametrize(
    ("header", "first", "second"),
    [
        ("x-portkey-provider", "openai", "anthropic"),
        ("x-portkey-config", "pc-fast", "pc-smart"),
        ("anthropic-version", "2023-06-01", "2024-10-22"),
        ("openai-beta", "assistants=v1", "assistants=v2"),
        ("anthropic-beta", "prompt-caching-2024-07-31", "output-128k-2025-02-19"),
        ("x-portkey-virtual-key", "vk-openai", "vk-azure"),
        ("helicone-target-url", "https://api.openai.com", "https://api.groq.com/openai"),
        ("x-litellm-model", "gpt-4o-mini", "claude-3-5-haiku"),
    ],
)
async def test_a_routing_header_never_shares_an_entry(
    proxy: Proxy, header: str, first: str, second: str
) -> None:
    """Must NOT share: a gateway's provider or config, or an API's version, picks the answer."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    for value in (first, second):
        sent = await proxy.client.post(
            "/v1/chat/completions", json=chat_body(), headers={header: value}
        )
        assert sent.headers["x-cache"] == "MISS"
    without = await proxy.client.post("/v1/chat/completions", json=chat_body())
    again = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(), headers={header.upper(): second}
    )
    assert without.headers["x-cache"] == "MISS"
    assert again.headers["x-cache"] == "HIT"
    assert route.call_count == 3


async def test_x_cache_namespace_never_shares_an_entry_and_is_not_sent_upstream(
    proxy: Proxy,
) -> None:
    """Must NOT share: ``X-Cache-Namespace`` partitions the caller's entries (one end user's
    from another's); the same value hits; the header stays with semcache."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    answers = [
        await proxy.chat(chat_body(), **({"x-cache-namespace": value} if value else {}))
        for value in ("user-1", "user-2", "", "user-1")
    ]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS", "MISS", "HIT"]
    assert answers[3].content == answers[0].content
    assert route.call_count == 3
    assert all("x-cache-namespace" not in call.request.headers for call in route.calls)


@pytest.mark.parametrize(
    "header", ["x-api-key", "x-goog-api-key", "api-key", "ocp-apim-subscription-key"]
)
async def test_keys_in_other_headers_separate_tenants(proxy: Proxy, header: str) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    await proxy.client.post("/v1/chat/completions", json=chat_body(), headers={header: "key-a"})
    other = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(), headers={header: "key-b"}
    )
    keyless = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert other.headers["x-cache"] == "MISS"
    assert keyless.headers["x-cache"] == "MISS"  # not the shared namespace either
    assert route.call_count == 3


@pytest.mark.parametrize("header", ["openai-project", "openai-organization"])
async def test_one_keys_projects_and_organizations_never_share_entries(
    proxy: Proxy, header: str
) -> None:
    """One key may use several projects (each with its own models and stored responses):
    which one answers is part of who asks."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=answer_numbered)
    first = await proxy.chat(chat_body(), **{header: "proj_a"})
    other = await proxy.chat(chat_body(), **{header: "proj_b"})
    unnamed = await proxy.chat(chat_body())
    again = await proxy.chat(chat_body(), **{header: "proj_a"})
    assert [r.headers["x-cache"] for r in (first, other, unnamed, again)] == [
        "MISS", "MISS", "MISS", "HIT"
    ]  # fmt: skip
    assert route.call_count == 3


async def test_an_operators_identity_header_separates_tenants(
    upstream_mock: Any, clock: FakeClock
) -> None:
    """A gateway's own key header (SEMCACHE_IDENTITY_HEADERS): without it, every caller that
    sends only that header would share the keyless namespace."""
    route = upstream_mock.post("/chat/completions").mock(side_effect=answer_numbered)
    async with make_proxy(upstream_mock, clock, identity_headers="X-Portkey-Api-Key") as proxy:
        for key in ("pk-a", "pk-b"):
            response = await proxy.client.post(
                "/v1/chat/completions", json=chat_body(), headers={"x-portkey-api-key": key}
            )
            assert response.headers["x-cache"] == "MISS"
        again = await proxy.client.post(
            "/v1/chat/completions", json=chat_body(), headers={"x-portkey-api-key": "pk-a"}
        )
    assert again.headers["x-cache"] == "HIT"
    assert route.call_count == 2


async def test_healthz_tells_a_store_that_keeps_failing(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(200, json=completion())
    healthy = (await proxy.client.get("/healthz")).json()
    assert healthy == {"status": "ok", "store": "ok", "store_errors_last_minute": 0}

    async def broken_get(key: str) -> None:
        raise StoreError("MOVED 1234 10.0.0.2:6379")

    proxy.store.get = broken_get  # type: ignore[method-assign]
    for i in range(10):
        response = await proxy.chat(chat_body(f"question {i}"))
        assert response.status_code == 200  # served uncached, never failed
    failing = (await proxy.client.get("/healthz")).json()
    assert failing == {"status": "degraded", "store": "failing", "store_errors_last_minute": 10}
