"""Semantic lookup plumbing, with a deterministic bag-of-words embedder (meaning is tested with
the real MiniLM model in tests/integration/test_semantic_meaning.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import httpx
import numpy as np
import pytest
import respx

from proxy.errors import OverloadedError
from proxy.metrics import Metrics
from proxy.semantic.embedders import EmbedderError, HashEmbedder, HTTPEmbedder, Vector
from proxy.semantic.sketch import Projection, Sketch, make_sketch
from proxy.semantic.verifier import Verdict
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore
from proxy.stores.similarity import Neighbor
from proxy.upstream import Upstream
from tests.unit.harness import (
    INDENTED,
    QUESTION,
    SAME_WORDS,
    FakeClock,
    Proxy,
    chat_body,
    completion,
    make_proxy,
    numbered,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64)) as p:
        yield p


def content(response: httpx.Response) -> str:
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


async def test_rephrased_question_is_a_semantic_hit(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    first = await proxy.chat(chat_body(QUESTION))
    hit = await proxy.chat(chat_body(SAME_WORDS))
    assert first.headers["x-cache"] == "MISS"
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-lookup"] == "semantic"
    assert float(hit.headers["x-cache-similarity"]) == pytest.approx(1.0, abs=1e-4)
    assert (
        hit.headers["x-cache-entry-id"]
        == (await proxy.chat(chat_body(QUESTION))).headers["x-cache-entry-id"]
    )
    assert content(hit) == "answer 1"
    assert route.call_count == 1
    stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["hits_by_lookup"] == {"semantic": 1, "exact": 1}
    assert stats["semantic_enabled"] is True


async def test_a_stored_completion_is_never_served_to_a_rewording(proxy: Proxy) -> None:
    """Must NOT hit: with ``"store": true`` the answer's id is a stored completion its client
    may fetch, whose messages are the first wording's; a rewording asks the upstream (exact
    only, ``stored-response``, as on the Responses API), the same request still hits."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body(QUESTION, store=True))
    reworded = await proxy.chat(chat_body(SAME_WORDS, store=True))
    again = await proxy.chat(chat_body(QUESTION, store=True))
    assert (reworded.headers["x-cache"], reworded.headers["x-cache-reason"]) == (
        "MISS", "stored-response"
    )  # fmt: skip
    assert content(reworded) == "answer 2"
    assert (again.headers["x-cache"], again.headers["x-cache-lookup"]) == ("HIT", "exact")
    assert route.call_count == 2


async def test_semantic_hit_replays_as_a_stream(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").respond(200, json=completion("Paris is the capital."))
    await proxy.chat(chat_body(QUESTION))
    hit = await proxy.chat(chat_body(SAME_WORDS, stream=True))
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert hit.headers["x-cache-lookup"] == "semantic"
    assert b"Paris" in hit.content
    assert hit.content.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({}, {"model": "gpt-other"}, id="model"),
        pytest.param({}, {"temperature": 0.1}, id="params"),
        pytest.param({}, {"tools": [{"type": "function", "function": {"name": "f"}}]}, id="tools"),
        pytest.param(
            {"system": "Answer in French."}, {"system": "Answer in German."}, id="system-prompt"
        ),
        pytest.param({"history": "Hi"}, {"history": "Hello"}, id="earlier-turns"),
        pytest.param({"history": "Hi"}, {}, id="no-history"),
    ],
)
async def test_other_context_never_hits(
    proxy: Proxy, first: dict[str, Any], second: dict[str, Any]
) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(with_context(QUESTION, first))
    response = await proxy.chat(with_context(SAME_WORDS, second))
    assert response.headers["x-cache"] == "MISS"
    assert content(response) == "answer 2"
    assert route.call_count == 2


def refusing_unknown_fields(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """As the API does: a body with a field it does not know is a 400."""
    if b"__semcache_api" in request.content:
        return httpx.Response(400, json={"error": {"message": "Unrecognized request argument "
                                                   "supplied: __semcache_api"}})  # fmt: skip
    return numbered(request, route)


@pytest.mark.parametrize("value", ["x", None])
async def test_a_body_with_semcaches_partition_field_never_hits_one_without(
    proxy: Proxy, value: str | None
) -> None:
    """Must NOT hit: ``__semcache_api`` was the name semcache wrote a partition's API under, and
    took out of a chat body; a body carrying it is one the upstream refuses, and was served the
    answer to the same words without it."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=refusing_unknown_fields)
    await proxy.chat(chat_body(QUESTION))
    response = await proxy.chat(chat_body(SAME_WORDS, __semcache_api=value))
    assert response.status_code == 400
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


def with_context(text: str, context: dict[str, Any]) -> dict[str, Any]:
    context = dict(context)
    messages: list[dict[str, Any]] = []
    if "system" in context:
        messages.append({"role": "system", "content": context.pop("system")})
    if "history" in context:
        messages += [
            {"role": "user", "content": context.pop("history")},
            {"role": "assistant", "content": "Hello!"},
        ]
    messages.append({"role": "user", "content": text})
    return {"model": "gpt-test", "messages": messages, **context}


async def test_other_tenant_never_hits(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body(QUESTION), authorization="Bearer sk-a")
    response = await proxy.chat(chat_body(SAME_WORDS), authorization="Bearer sk-b")
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_another_cache_namespace_never_hits(proxy: Proxy) -> None:
    """Must NOT hit: the same words, same key, another ``X-Cache-Namespace``."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body(QUESTION), **{"x-cache-namespace": "user-1"})
    other = await proxy.chat(chat_body(SAME_WORDS), **{"x-cache-namespace": "user-2"})
    same = await proxy.chat(chat_body(SAME_WORDS), **{"x-cache-namespace": "user-1"})
    assert other.headers["x-cache"] == "MISS"
    assert (same.headers["x-cache"], same.headers["x-cache-lookup"]) == ("HIT", "semantic")
    assert route.call_count == 2


SPELL = [{"type": "text", "text": "Spell the word 'in"}, {"type": "text", "text": "to' backwards."}]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(INDENTED, INDENTED.lstrip(), id="first-line-indented"),
        pytest.param("Spell the word 'in\nto' backwards.", SPELL, id="string-vs-parts"),
    ],
)
async def test_the_same_compared_text_in_another_shape_never_hits(
    proxy: Proxy, first: str | list[dict[str, str]], second: str | list[dict[str, str]]
) -> None:
    """Must NOT hit: the text compared is the last message's, its parts joined with a line
    break and its leading whitespace stripped, so these pairs compared as the same text in one
    partition. Yet the first line's indentation is code the model reads (Python refuses the
    indented snippet), and the upstream joins text parts without a separator (the second asks
    about 'into', the first about 'in', a line break, 'to')."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    for text in (first, second):
        response = await proxy.chat({"model": "gpt-test",
                                     "messages": [{"role": "user", "content": text}]})  # fmt: skip
    assert response.headers["x-cache"] == "MISS"
    assert content(response) == "answer 2"
    assert route.call_count == 2


async def test_a_rule_refuses_a_candidate_above_the_threshold(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body("What is 2 plus 2?"))
    # The bag-of-words embedder scores these highly; only the number rule stands between.
    response = await proxy.chat(chat_body("What is 2 plus 3?"), **{"x-cache-threshold": "0.3"})
    assert response.headers["x-cache"] == "MISS"
    assert content(response) == "answer 2"
    assert route.call_count == 2
    stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["semantic_rejections"] == {"number": 1}
    text = (await proxy.client.get("/metrics")).text
    assert 'semcache_semantic_rejections_total{reason="number"} 1' in text


async def test_semantic_header_off_skips_the_lookup(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body(QUESTION))
    response = await proxy.chat(chat_body(SAME_WORDS), **{"x-cache-semantic": "off"})
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_per_request_threshold_can_refuse_a_hit(proxy: Proxy) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat(chat_body("How do I bake bread at home"))
    response = await proxy.chat(
        chat_body("How do I bake sourdough bread at home"), **{"x-cache-threshold": "1.0"}
    )
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_a_stricter_request_threshold_is_never_overridden_by_the_line(proxy: Proxy) -> None:
    """Must NOT hit: a neighbour above the calibrated cosine (0.95) but under the request's own
    threshold. The margin is measured from the calibrated cosine (for the evidence), the request's
    threshold still decides."""
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    stored = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike"
    asked = stored + " november"
    hashed = HashEmbedder(64)
    similarity = float(hashed.encode(stored) @ hashed.encode(asked))
    assert 0.95 < similarity < 0.99
    await proxy.chat(chat_body(stored))
    threshold = {"x-cache-threshold": f"{similarity + 0.005}", "cache-control": "no-store"}
    strict = await proxy.chat(chat_body(asked), **threshold)
    assert strict.headers["x-cache"] == "MISS"
    loose = await proxy.chat(chat_body(asked), **{"x-cache-threshold": "0.9"})
    assert loose.headers["x-cache-lookup"] == "semantic"
    assert route.call_count == 2


@pytest.mark.parametrize("value", ["0", "1.5", "high", "-0.2", "nan"])
async def test_bad_threshold_header_is_a_400(proxy: Proxy, value: str) -> None:
    route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    response = await proxy.chat(chat_body(QUESTION), **{"x-cache-threshold": value})
    assert response.status_code == 400
    assert "X-Cache-Threshold" in response.json()["error"]["message"]
    assert route.call_count == 0


async def test_semantic_max_age_limits_semantic_hits_only(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), semantic_max_age_seconds=60
    ) as proxy:
        await proxy.chat(chat_body(QUESTION))
        clock.advance(61)
        assert (await proxy.chat(chat_body(SAME_WORDS))).headers["x-cache"] == "MISS"
        assert (await proxy.chat(chat_body(QUESTION))).headers["x-cache"] == "HIT"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(
            [{"role": "user", "content": "x " * 600}], id="longer-than-semantic-max-chars"
        ),
        pytest.param(
            [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c1", "content": "Paris"},
            ],
            id="last-message-not-user",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            id="image",
        ),
    ],
)
async def test_ineligible_prompts_are_exact_only(
    proxy: Proxy, messages: list[dict[str, Any]]
) -> None:
    proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
    await proxy.chat({"model": "gpt-test", "messages": messages})
    stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["semantic"] == {"ineligible": 1}


class BrokenEmbedder:
    name = "broken"

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        raise EmbedderError("embedder is down")


class SlowEmbedder(HashEmbedder):
    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        await anyio.sleep(5)
        return self.encode(text)


@pytest.mark.parametrize("embedder", [BrokenEmbedder(), SlowEmbedder(16)], ids=["down", "slow"])
async def test_embedder_failure_degrades_to_exact_only(
    upstream_mock: respx.MockRouter, clock: FakeClock, embedder: Any
) -> None:
    route = upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    async with make_proxy(upstream_mock, clock, embedder=embedder, embed_timeout_seconds=0.05) as p:
        first = await p.chat(chat_body(QUESTION))
        again = await p.chat(chat_body(QUESTION))
        other = await p.chat(chat_body(SAME_WORDS))
        stats = (await p.client.get("/cache/stats")).json()
    assert [first.status_code, again.status_code, other.status_code] == [200, 200, 200]
    assert [r.headers["x-cache"] for r in (first, again, other)] == ["MISS", "HIT", "MISS"]
    assert stats["semantic"]["embedder_errors"] == 2
    assert route.call_count == 2


class FullUpstream:
    """Every upstream slot taken (``SEMCACHE_MAX_INFLIGHT``) until the queue timeout."""

    def forward_headers(self, headers: list[tuple[bytes, bytes]], **_: Any) -> Any:
        return headers

    async def send(self, *_: Any, **__: Any) -> Any:
        raise OverloadedError("too many requests in flight to the upstream; retry shortly")


async def test_an_http_embedder_without_a_free_slot_is_an_embedder_failure() -> None:
    """It must degrade to exact-only like any embedder failure, never fail the request (503)."""
    cache = Cache(MemoryStore(max_entries=10, max_bytes=1 << 20), Metrics())
    embedder = HTTPEmbedder(
        cast(Upstream, FullUpstream()), cache, url="http://upstream.test/v1", model="emb",
        api_key=None, ttl_seconds=60,
    )  # fmt: skip
    with pytest.raises(EmbedderError, match="too many requests in flight"):
        await embedder.embed(QUESTION, namespace="ns", api_key=None)


async def test_http_embedder_goes_through_the_embedding_cache(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    embeddings = upstream_mock.post("/embeddings").respond(
        200,
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8, 0.0]}],
            "model": "emb",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        },
    )
    async with make_proxy(upstream_mock, clock, embed_model="emb") as proxy:
        await proxy.chat(chat_body(QUESTION))
        await proxy.chat(chat_body(QUESTION), **{"cache-control": "no-cache"})
        same_via_api = await proxy.client.post(
            "/v1/embeddings",
            json={"model": "emb", "input": QUESTION},
            headers={"authorization": "Bearer sk-test-a"},
        )
    assert embeddings.call_count == 1
    sent = embeddings.calls.last.request
    assert sent.headers["authorization"] == "Bearer sk-test-a"
    assert same_via_api.headers["x-cache"] == "HIT"


@asynccontextmanager
async def own_embedder(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> AsyncIterator[tuple[Proxy, respx.Route, respx.Route]]:
    """A proxy whose embedder has an embeddings API of its own (``SEMCACHE_EMBED_URL``): the
    proxy, the upstream's embeddings route and the embedder's, each answering one vector."""
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    upstream = upstream_mock.post("/embeddings").respond(
        200,
        json={"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}], "model": "emb"},
    )
    with respx.mock(base_url="http://embedder.test/v1", assert_all_called=False) as other:
        own = other.post("/embeddings").respond(
            200,
            json={"object": "list", "data": [{"index": 0, "embedding": [0.6, 0.8]}], "model": "e"},
        )
        async with make_proxy(
            upstream_mock, clock, embed_model="emb", embed_url="http://embedder.test/v1"
        ) as proxy:
            yield proxy, upstream, own


async def test_an_embeddings_api_of_its_own_gets_no_client_key_and_no_shared_entries(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with own_embedder(upstream_mock, clock) as (proxy, _, own):
        await proxy.chat(chat_body(QUESTION))
        via_api = await proxy.client.post(
            "/v1/embeddings",
            json={"model": "emb", "input": QUESTION},
            headers={"authorization": "Bearer sk-test-a"},
        )
    assert own.call_count == 1
    assert "authorization" not in own.calls.last.request.headers
    assert via_api.headers["x-cache"] == "MISS"  # the embedder's vectors stay its own


async def test_a_client_body_cannot_name_the_embeddings_api_of_semcaches_own_embedder(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """The embedder's own API was written into its entries' key as a body field
    (``"\\x00embed_url"``): a client that sent that field was served the vector another API
    made, and the upstream was never asked."""
    async with own_embedder(upstream_mock, clock) as (proxy, upstream, _):
        await proxy.chat(chat_body(QUESTION))
        crafted = {"model": "emb", "input": QUESTION,
                   "\x00embed_url": "http://embedder.test/v1/embeddings"}  # fmt: skip
        via_api = await proxy.client.post(
            "/v1/embeddings", json=crafted, headers={"authorization": "Bearer sk-test-a"}
        )
    assert via_api.headers["x-cache"] == "MISS"
    assert upstream.call_count == 1


async def test_a_vector_the_embedder_stored_names_the_model_the_upstream_named(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """The HTTP embedder's entries serve clients' ``/v1/embeddings`` (same API, same key): a
    hit on one named the alias asked for, not the model the upstream ran, and ``semcache rm
    --model`` (or an Ollama pull through semcache) could not find it, as it had no model."""
    upstream_mock.post("/chat/completions").mock(side_effect=numbered)
    upstream_mock.post("/embeddings").respond(
        200,
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8, 0.0]}],
            "model": "emb-v2",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        },
    )
    admin = {"authorization": "Bearer admin-token-123"}
    async with make_proxy(
        upstream_mock, clock, embed_model="emb", admin_token="admin-token-123"
    ) as proxy:
        await proxy.chat(chat_body(QUESTION))
        hit = await proxy.client.post(
            "/v1/embeddings",
            json={"model": "emb", "input": QUESTION},
            headers={"authorization": "Bearer sk-test-a"},
        )
        listed = await proxy.client.get(
            "/cache/entries", params={"model": "emb-v2", "route": "embeddings"}, headers=admin
        )
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json()["model"] == "emb-v2"
    assert len(listed.json()["entries"]) == 1


class FakeReader:
    """Sketches prompts as the local model would, from a hash of their words; or cannot start."""

    name = "local:fake-reader"

    def __init__(self, *, fails: bool = False) -> None:
        self.fails = fails
        self.read_texts: list[str] = []

    async def start(self) -> None:
        if self.fails:
            raise EmbedderError("the reader's model is not installed")

    async def read(self, text: str) -> tuple[Vector, Sketch]:
        self.read_texts.append(text)
        return HashEmbedder(8).encode(text), sketch_of(text)


def sketch_of(text: str) -> Sketch:
    words = text.split()
    vectors = np.array([HashEmbedder(8).encode(w) for w in ["[CLS]", *words, "[SEP]"]])
    projection = Projection(np.zeros(8, np.float32), np.eye(8, 4, dtype=np.float32))
    ids = np.arange(len(words) + 2)
    return make_sketch(ids, vectors, HashEmbedder(8).encode(text), projection, english=True)


class RecordingVerifier:
    name = "recording"
    reads = True
    scale = "recording"

    def __init__(self) -> None:
        self.judged: list[tuple[str, Sketch | None, Neighbor]] = []

    def judge(
        self,
        text: str,
        sketch: Sketch | None,
        neighbor: Neighbor,
        *,
        floor: float,
        requested: float | None,
    ) -> Verdict:
        self.judged.append((text, sketch, neighbor))
        return Verdict(True, score=1.0)


async def test_with_another_embedder_the_reader_sketches_for_the_verifier(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """An HTTP embedder finds neighbours; the local reader sketches both prompts; the verifier
    sees the query's sketch and the stored prompt's, kept beside its vector."""
    reader, verifier = FakeReader(), RecordingVerifier()
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), reader=reader, verifier=verifier
    ) as proxy:
        route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
        await proxy.chat(chat_body(QUESTION))
        hit = await proxy.chat(chat_body(SAME_WORDS))
        stats = (await proxy.client.get("/cache/stats")).json()
    assert hit.headers["x-cache-lookup"] == "semantic"
    assert route.call_count == 1
    assert reader.read_texts == [QUESTION, SAME_WORDS]
    ((text, sketch, neighbor),) = verifier.judged
    assert text == SAME_WORDS
    assert sketch is not None
    assert sketch.ids.size == len(SAME_WORDS.split())
    assert neighbor.text == QUESTION
    assert neighbor.sketch == sketch_of(QUESTION).pack()
    assert stats["verifier"] == "recording"


async def test_a_reader_that_cannot_start_falls_back_to_cosine(
    upstream_mock: respx.MockRouter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_proxy(
        upstream_mock,
        clock,
        embedder=HashEmbedder(64),
        reader=FakeReader(fails=True),
        verifier=RecordingVerifier(),
    ) as proxy:
        route = proxy.upstream.post("/chat/completions").mock(side_effect=numbered)
        await proxy.chat(chat_body(QUESTION))
        hit = await proxy.chat(chat_body(SAME_WORDS))
        near = await proxy.chat(chat_body("the capital of Spain is what?"))
        stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["verifier"] == "cosine"
    assert stats["semantic_enabled"] is True
    assert hit.headers["x-cache-lookup"] == "semantic"  # cosine 1.0
    assert near.headers["x-cache"] == "MISS"  # under the uncalibrated 0.95
    assert route.call_count == 2
    assert "semantic hits are judged by cosine alone" in caplog.text


async def test_entries_stored_under_one_verifier_are_never_judged_by_another() -> None:
    """The verifier's name is part of the partition: an entry stored while the learned
    verifier ran is not served when the proxy falls back to cosine (or the model changes)."""
    from proxy.metrics import Metrics
    from proxy.requests import CacheControl
    from proxy.semantic.lookup import SemanticCache
    from proxy.semantic.verifier import CosineVerifier
    from proxy.stores.guard import Cache
    from proxy.stores.memory import MemoryStore

    metrics = Metrics()
    cache = Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), metrics)

    def semantic(verifier: RecordingVerifier | CosineVerifier) -> SemanticCache:
        return SemanticCache(
            cache, HashEmbedder(64), metrics, verifier=verifier, reader=FakeReader(),
            fallback=CosineVerifier(0.95), min_similarity=0.75, max_age_seconds=None,
            max_chars=1000, timeout_seconds=5,
        )  # fmt: skip

    learned, cosine = semantic(RecordingVerifier()), semantic(CosineVerifier(0.5))
    await learned.start()
    await cosine.start()
    body = chat_body(QUESTION)
    stored = await learned.query(body, namespace="ns", api_key=None)
    assert stored is not None
    await cache.put("chat:ns:k", cache.new_entry(b"{}"), 60, kind="chat")
    await learned.remember(stored, "chat:ns:k", 60)
    control = CacheControl(lookup=True, store=True, ttl_seconds=60)
    asked = await cosine.query(chat_body(SAME_WORDS), namespace="ns", api_key=None)
    assert asked is not None
    assert asked.partition != stored.partition
    assert (await cosine.lookup(asked, control)).hit is None
    again = await learned.query(chat_body(SAME_WORDS), namespace="ns", api_key=None)
    assert again is not None
    assert (await learned.lookup(again, control)).hit is not None
