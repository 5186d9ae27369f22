"""POST /v1/embeddings cached per input item."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.unit.harness import Proxy

pytestmark = pytest.mark.anyio


def vector_for(item: object, dims: int = 4) -> list[float]:
    seed = sum(orjson.dumps(item)) % 1000
    return [round((seed + k) / 1000, 3) for k in range(dims)]


def fake_embeddings(request: httpx.Request) -> httpx.Response:
    body = orjson.loads(request.content)
    value = body["input"]
    items = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else value
    dims = body.get("dimensions", 4)
    data = []
    for i, item in enumerate(items):
        vec = np.asarray(vector_for(item, dims), dtype=np.float32)
        emb: Any = (
            base64.b64encode(vec.tobytes()).decode()
            if body.get("encoding_format") == "base64"
            else vec.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    usage = {"prompt_tokens": 3 * len(items), "total_tokens": 3 * len(items)}
    return httpx.Response(
        200, json={"object": "list", "data": data, "model": body["model"], "usage": usage}
    )


async def embed(proxy: Proxy, **body: Any) -> httpx.Response:
    return await proxy.client.post(
        "/v1/embeddings",
        json={"model": "emb-test", **body},
        headers={"authorization": "Bearer sk-test-a"},
    )


def vectors(response: httpx.Response) -> list[list[float]]:
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    out = []
    for d in data:
        emb = d["embedding"]
        if isinstance(emb, str):
            emb = np.frombuffer(base64.b64decode(emb), dtype="<f4").tolist()
        out.append([round(x, 3) for x in emb])
    return out


async def test_single_string_is_cached(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    first = await embed(proxy, input="hello")
    second = await embed(proxy, input="hello")
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert vectors(second) == vectors(first) == [vector_for("hello")]
    assert second.json()["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert route.call_count == 1


async def test_only_missing_items_go_upstream_and_order_is_kept(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input=["b", "d"])
    response = await embed(proxy, input=["a", "b", "c", "d"])
    assert orjson.loads(route.calls.last.request.content)["input"] == ["a", "c"]
    assert vectors(response) == [vector_for(x) for x in ["a", "b", "c", "d"]]
    assert response.headers["x-cache"] == "MISS"
    assert response.headers["x-cache-hit-items"] == "2/4"
    full = await embed(proxy, input=["d", "c", "b", "a"])
    assert full.headers["x-cache"] == "HIT"
    assert vectors(full) == [vector_for(x) for x in ["d", "c", "b", "a"]]
    assert route.call_count == 2


async def test_a_hit_says_its_age_and_one_items_entry(proxy: Proxy) -> None:
    """As every hit does: ``Age`` (a batch is as old as its oldest item) and, for one input,
    the ``X-Cache-Entry-Id`` of its entry (a batch's items are several entries: none named)."""
    proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input="old")
    proxy.clock.advance(30)
    await embed(proxy, input="new")
    proxy.clock.advance(12)
    one = await embed(proxy, input="old")
    batch = await embed(proxy, input=["new", "old"])
    assert (one.headers["x-cache"], one.headers["age"]) == ("HIT", "42")
    assert len(one.headers["x-cache-entry-id"]) == 16
    assert (batch.headers["x-cache"], batch.headers["age"]) == ("HIT", "42")
    assert "x-cache-entry-id" not in batch.headers
    partial = await embed(proxy, input=["old", "fresh"])
    assert partial.headers["x-cache"] == "MISS"
    assert "age" not in partial.headers


async def test_token_arrays_are_items(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input=[1, 2, 3])
    response = await embed(proxy, input=[[1, 2, 3], [4, 5]])
    assert orjson.loads(route.calls.last.request.content)["input"] == [[4, 5]]
    assert vectors(response) == [vector_for([1, 2, 3]), vector_for([4, 5])]


@pytest.mark.parametrize("first_format", ["float", "base64"])
async def test_vectors_are_served_in_the_format_asked(proxy: Proxy, first_format: str) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    first = await embed(proxy, input="x", encoding_format=first_format)
    other = "base64" if first_format == "float" else "float"
    second = await embed(proxy, input="x", encoding_format=other)
    assert second.headers["x-cache"] == "HIT"
    assert isinstance(second.json()["data"][0]["embedding"], str if other == "base64" else list)
    assert vectors(second) == vectors(first)
    assert route.call_count == 1


async def test_float_output_keeps_float32_spelling(proxy: Proxy) -> None:
    proxy.upstream.post("/embeddings").respond(
        200,
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.1234567]}],
            "model": "emb-test",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        },
    )
    await embed(proxy, input="x")
    hit = await embed(proxy, input="x")
    assert b"[0.0023064255,-0.1234567]" in hit.content


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"model": "emb-a"}, {"model": "emb-b"}, id="model"),
        pytest.param({"dimensions": 4}, {"dimensions": 8}, id="dimensions"),
        pytest.param({}, {"dimensions": 4}, id="dimensions-absent"),
    ],
)
async def test_model_and_dimensions_never_share_entries(
    proxy: Proxy, first: dict[str, Any], second: dict[str, Any]
) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input="x", **first)
    response = await embed(proxy, input="x", **second)
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_tenants_do_not_share_embeddings(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input="x")
    other = await proxy.client.post(
        "/v1/embeddings",
        json={"model": "emb-test", "input": "x"},
        headers={"authorization": "Bearer sk-test-b"},
    )
    assert other.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_upstream_error_is_relayed_and_nothing_stored(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").respond(
        500, json={"error": {"message": "down", "type": "server_error"}}
    )
    response = await embed(proxy, input=["a", "b"])
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "down"
    await embed(proxy, input=["a", "b"])
    assert route.call_count == 2
    assert (await proxy.store.stats()).entries == 0


async def test_answer_with_wrong_item_count_is_relayed_not_stored(proxy: Proxy) -> None:
    body = {"object": "list", "data": [], "model": "emb-test", "usage": {}}
    route = proxy.upstream.post("/embeddings").respond(200, json=body)
    response = await embed(proxy, input=["a", "b"])
    assert response.json() == body
    assert (await proxy.store.stats()).entries == 0
    assert route.call_count == 1


async def test_bypass_relays_untouched(proxy: Proxy) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input="x")
    raw = b'{"model": "emb-test",  "input": "x"}'  # as the client spelled it, spaces and all
    response = await proxy.client.post(
        "/v1/embeddings",
        content=raw,
        headers={"authorization": "Bearer sk-test-a", "x-cache-bypass": "1"},
    )
    assert response.headers["x-cache"] == "BYPASS"
    assert route.call_count == 2
    sent = route.calls.last.request
    assert sent.content == raw
    assert "x-cache-bypass" not in sent.headers
    assert response.content == route.calls.last.response.content


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"input": "x"}, id="no-model"),
        pytest.param({"model": "m"}, id="no-input"),
        pytest.param({"model": "m", "input": []}, id="empty-list"),
        pytest.param({"model": "m", "input": [1, "a"]}, id="mixed"),
        pytest.param({"model": "m", "input": [[]]}, id="empty-token-array"),
        pytest.param({"model": "m", "input": 5}, id="number"),
        pytest.param({"model": "m", "input": "x", "encoding_format": 8}, id="format"),
    ],
)
async def test_bad_embedding_requests_are_400(proxy: Proxy, body: dict[str, Any]) -> None:
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    response = await proxy.client.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "m", "input": "x", "encoding_format": "bytes"}, "encoding-format"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "messages-input"),
    ],
    ids=["vllm-bytes", "vllm-messages"],
)
async def test_what_vllm_takes_and_semcache_cannot_cache_goes_upstream_as_sent(
    proxy: Proxy, body: dict[str, Any], reason: str
) -> None:
    """vLLM answers ``encoding_format: bytes`` and chat-style ``messages`` in place of
    ``input``; semcache caches neither, and a 400 would refuse what the upstream takes."""
    route = proxy.upstream.post("/embeddings").respond(200, content=b"vllm's own answer")
    raw = orjson.dumps(body)
    answers = [
        await proxy.client.post(
            "/v1/embeddings", content=raw, headers={"authorization": "Bearer sk-test-a"}
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-cache-reason"] for a in answers] == [f"bypass:{reason}"] * 2
    assert answers[1].content == b"vllm's own answer"
    assert route.call_count == 2
    assert route.calls.last.request.content == raw


async def test_strings_mixed_with_token_arrays_go_upstream_whole_never_cached(
    proxy: Proxy,
) -> None:
    """``input`` is one string, strings, token ids or token arrays (the OpenAI spec's oneOf):
    ``["a", [1, 2]]`` is none of them, and vLLM's request type refuses it. Split into items, its
    cached ones were served and only the rest went upstream: a 200 the upstream never gave."""
    route = proxy.upstream.post("/embeddings").mock(side_effect=fake_embeddings)
    await embed(proxy, input=[[1, 2]])
    await embed(proxy, input="a")
    response = await embed(proxy, input=["a", [1, 2]])
    assert response.headers["x-cache"] == "BYPASS"
    assert response.headers["x-cache-reason"] == "bypass:mixed-input"
    assert orjson.loads(route.calls.last.request.content)["input"] == ["a", [1, 2]]
    assert route.call_count == 3


@pytest.mark.parametrize(("field", "value"), [("embed_dtype", "float16"), ("endianness", "big")])
async def test_a_base64_whose_bytes_a_field_redefines_never_serves_a_float_request(
    proxy: Proxy, field: str, value: str
) -> None:
    """vLLM's ``embed_dtype`` and ``endianness`` say what a base64 vector's bytes are
    (float16, big-endian float32); its ``float`` answer is the plain numbers. Read as
    little-endian float32 and served to a ``float`` request with the same fields, they were
    other numbers (half as many, for float16)."""
    truth = np.asarray([0.5, -0.25, 0.125, 1.0], dtype=np.float32)

    def vllm(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        emb: Any = truth.tolist()
        if body.get("encoding_format") == "base64":
            raw = truth.astype(np.float16) if body.get("embed_dtype") == "float16" else truth
            raw = raw.byteswap() if body.get("endianness") == "big" else raw
            emb = base64.b64encode(raw.tobytes()).decode()
        data = [{"object": "embedding", "index": 0, "embedding": emb}]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        return httpx.Response(200, json={"data": data, "model": "emb-test", "usage": usage})

    route = proxy.upstream.post("/embeddings").mock(side_effect=vllm)
    packed = await embed(proxy, input="x", encoding_format="base64", **{field: value})
    again = await embed(proxy, input="x", encoding_format="base64", **{field: value})
    plain = await embed(proxy, input="x", encoding_format="float", **{field: value})
    assert again.headers["x-cache"] == "HIT"
    assert again.json()["data"] == packed.json()["data"]  # the same bytes, as they came
    assert plain.json()["data"][0]["embedding"] == truth.tolist()
    assert route.call_count == 2


async def test_a_whole_miss_is_the_upstreams_own_answer(proxy: Proxy) -> None:
    """With nothing from the cache, the client gets the upstream's bytes: its own fields (vLLM's
    ``id`` and ``created``), its numbers as it wrote them, its usage. Only a batch merged with
    hits is semcache's writing."""

    def vllm(request: httpx.Request) -> httpx.Response:
        answer = fake_embeddings(request).json()
        answer |= {"id": "embd-1", "created": 1700000000}
        answer["data"][0]["embedding"] = [0.1257302165031433, -0.5]  # float32 as float64 text
        answer["usage"] = {"prompt_tokens": 7, "total_tokens": 7}
        return httpx.Response(200, content=orjson.dumps(answer))

    route = proxy.upstream.post("/embeddings").mock(side_effect=vllm)
    miss = await embed(proxy, input="a")
    assert (miss.headers["x-cache"], miss.headers["x-cache-hit-items"]) == ("MISS", "0/1")
    assert miss.content == orjson.dumps(vllm(route.calls.last.request).json())
    hit = await embed(proxy, input="a")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json()["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [round(x, 6) for x in hit.json()["data"][0]["embedding"]] == [0.12573, -0.5]


async def test_a_miss_carries_the_upstreams_own_headers(proxy: Proxy) -> None:
    """The SDK reads ``x-request-id``; rate-limit headers tell the caller its budget. A miss
    (or a partial one) relays them with its answer; the body's type and length are semcache's."""

    def with_headers(request: httpx.Request) -> httpx.Response:
        answer = fake_embeddings(request)
        return httpx.Response(
            200, content=answer.content, headers={
                "content-type": "application/json", "x-request-id": "req_123",
                "x-ratelimit-remaining-requests": "99", "openai-processing-ms": "12",
            },
        )  # fmt: skip

    proxy.upstream.post("/embeddings").mock(side_effect=with_headers)
    await embed(proxy, input=["a"])
    partial = await embed(proxy, input=["a", "b"])
    full_hit = await embed(proxy, input=["a", "b"])
    assert partial.headers["x-cache"] == "MISS"
    assert partial.headers["x-request-id"] == "req_123"
    assert partial.headers["x-ratelimit-remaining-requests"] == "99"
    assert partial.headers["content-type"] == "application/json"
    assert int(partial.headers["content-length"]) == len(partial.content)
    assert full_hit.headers["x-cache"] == "HIT"
    assert "x-ratelimit-remaining-requests" not in full_hit.headers  # no stale budget on a hit


async def test_a_hit_names_the_model_that_made_the_vectors(proxy: Proxy) -> None:
    """The upstream answers an alias with the model it ran (``text-embedding-ada-002`` is
    answered by ``...-v2``): a hit says what the miss said, not the name asked for."""

    def versioned(request: httpx.Request) -> httpx.Response:
        answer = fake_embeddings(request)
        return httpx.Response(200, json={**answer.json(), "model": "emb-test-v2"})

    route = proxy.upstream.post("/embeddings").mock(side_effect=versioned)
    miss = await embed(proxy, input=["a", "b"])
    hit = await embed(proxy, input=["b", "a"])
    assert (miss.headers["x-cache"], hit.headers["x-cache"], route.call_count) == (
        "MISS", "HIT", 1,
    )  # fmt: skip
    assert miss.json()["model"] == hit.json()["model"] == "emb-test-v2"
