"""Semantic matching on the Responses API: ``"store": false`` requests only, in partitions of
their own, with everything but the last user message's text in the partition (the bag-of-words
embedder gives a reworded question cosine 1.0; meaning is tested on chat with the real model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from proxy.cache.responses import semantic_body
from proxy.semantic.embedders import HashEmbedder
from proxy.semantic.partition import semantic_partition, semantic_text
from tests.unit import harness
from tests.unit.harness import (
    INDENTED,
    QUESTION,
    SAME_WORDS,
    FakeClock,
    Proxy,
    chat_body,
    make_proxy,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64)) as p:
        yield p


def answered(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """The n-th response says ``answer n``: a wrong hit shows."""
    n = route.call_count + 1
    return httpx.Response(200, json={
        "id": f"resp_{n}", "object": "response", "status": "completed", "model": "gpt-test",
        "output": [{"type": "message", "id": f"msg_{n}", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": f"answer {n}",
                                 "annotations": []}]}],
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
    })  # fmt: skip


def ask(question: str, /, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "input": question, "store": False, **fields}


async def respond(proxy: Proxy, body: dict[str, Any], key: str = "sk-test-a") -> httpx.Response:
    response = await proxy.client.post(
        "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response


def text(response: httpx.Response) -> str:
    value: str = response.json()["output"][0]["content"][0]["text"]
    return value


async def test_a_reworded_store_false_request_is_a_semantic_hit_streamed_or_not(
    proxy: Proxy,
) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    first = await respond(proxy, ask(QUESTION))
    hit = await respond(proxy, ask(SAME_WORDS))
    assert first.headers["x-cache"] == "MISS"
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-lookup"] == "semantic"
    assert float(hit.headers["x-cache-similarity"]) == pytest.approx(1.0, abs=1e-4)
    exact = await respond(proxy, ask(QUESTION))
    assert exact.headers["x-cache-lookup"] == "exact"
    assert hit.headers["x-cache-entry-id"] == exact.headers["x-cache-entry-id"]
    assert text(hit) == "answer 1"
    streamed = await respond(proxy, ask(SAME_WORDS, stream=True))
    assert streamed.headers["x-cache-lookup"] == "semantic"
    assert b"response.completed" in streamed.content
    assert b"answer 1" in streamed.content
    assert route.call_count == 1


async def test_input_items_and_instructions_are_read_as_chat_messages(proxy: Proxy) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    as_items = {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}
    await respond(proxy, ask("", input=[as_items], instructions="Be brief."))
    hit = await respond(
        proxy,
        ask("", input=[{"type": "message", "role": "user", "content": SAME_WORDS}],
            instructions="Be brief."),
    )  # fmt: skip
    assert hit.headers["x-cache-lookup"] == "semantic"
    assert route.call_count == 1


async def test_a_request_that_lets_the_upstream_store_its_response_is_exact_only(
    proxy: Proxy,
) -> None:
    """A hit would hand out the id of a response the upstream stored for other words: a client
    continuing from it (previous_response_id) would carry on a conversation its user never had."""
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    pairs = [(QUESTION, SAME_WORDS), ("Who painted the Mona Lisa?", "the Mona Lisa painted who?")]
    for store, (question, same_words) in zip(({}, {"store": True}), pairs, strict=True):
        await respond(proxy, {"model": "gpt-test", "input": question, **store})
        reworded = await respond(proxy, {"model": "gpt-test", "input": same_words, **store})
        assert reworded.headers["x-cache"] == "MISS"
        assert reworded.headers["x-cache-reason"] == "stored-response"
    # Nor does a stored-response request find a store:false entry, nor the reverse.
    await respond(proxy, ask("When was the Eiffel Tower built?"))
    other = await respond(proxy, {"model": "gpt-test", "input": "the Eiffel Tower was built when?"})
    assert other.headers["x-cache"] == "MISS"
    assert route.call_count == 6


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({}, {"model": "gpt-other"}, id="model"),
        pytest.param(
            {"instructions": "Answer in French."}, {"instructions": "In German."}, id="instructions"
        ),
        pytest.param({}, {"instructions": "Answer in French."}, id="no-instructions"),
        pytest.param({}, {"temperature": 0.2}, id="temperature"),
        pytest.param(
            {}, {"tools": [{"type": "function", "name": "f", "parameters": {}}]}, id="tools"
        ),
        pytest.param({}, {"text": {"format": {"type": "json_object"}}}, id="text-format"),
        pytest.param({}, {"reasoning": {"effort": "high"}}, id="reasoning"),
        pytest.param({}, {"max_output_tokens": 40}, id="max_output_tokens"),
        pytest.param({"earlier": "Hi"}, {"earlier": "Hello"}, id="earlier-turns"),
        pytest.param({"earlier": "Hi"}, {}, id="no-earlier-turns"),
        pytest.param({"tool_output": "18 C"}, {"tool_output": "25 C"}, id="tool-output"),
    ],
)
async def test_another_context_never_hits(
    proxy: Proxy, first: dict[str, Any], second: dict[str, Any]
) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    await respond(proxy, in_context(QUESTION, first))
    response = await respond(proxy, in_context(SAME_WORDS, second))
    assert response.headers["x-cache"] == "MISS"
    assert text(response) == "answer 2"
    assert route.call_count == 2


def refusing_text_parts(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """As the API does: ``text`` is chat's content part, not one of an input message's."""
    if b'"type":"text"' in request.content.replace(b" ", b""):
        return httpx.Response(400, json={"error": {
            "message": "Invalid value: 'text'. Supported values are: 'input_text', "
            "'input_image', 'output_text', 'refusal', 'input_file', 'computer_screenshot', "
            "and 'summary_text'.",
            "type": "invalid_request_error", "param": "input[0].content[0].type",
            "code": "invalid_value"}})  # fmt: skip
    return answered(request, route)


def turns(kind: str, question: str, *, earlier: bool) -> list[dict[str, Any]]:
    """An input whose earlier user item (``earlier``) or whose last one has a ``kind`` part."""
    said = [{"type": kind, "text": "Hi" if earlier else question}]
    if not earlier:
        return [{"role": "user", "content": said}]
    return [{"role": "user", "content": said}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": question}]  # fmt: skip


@pytest.mark.parametrize("earlier", [True, False], ids=["earlier", "last"])
async def test_a_text_part_never_shares_a_partition_with_an_input_text_part(
    proxy: Proxy, earlier: bool
) -> None:
    """Must NOT hit: the chat reading turns ``input_text`` parts into ``text`` ones, so an item
    with ``text`` parts, which the upstream refuses, read the same as one it accepts."""
    route = proxy.upstream.post("/responses").mock(side_effect=refusing_text_parts)
    await respond(proxy, ask("", input=turns("input_text", QUESTION, earlier=earlier)))
    response = await proxy.client.post(
        "/v1/responses", json=ask("", input=turns("text", SAME_WORDS, earlier=earlier)),
        headers={"authorization": "Bearer sk-test-a"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


def refusing_unknown_fields(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """As the API does: a field it does not know (``messages``, chat's) is a 400."""
    if "messages" in orjson.loads(request.content):
        return httpx.Response(400, json={"error": {
            "message": "Unknown parameter: 'messages'.", "type": "invalid_request_error",
            "param": "messages", "code": "unknown_parameter"}})  # fmt: skip
    return answered(request, route)


async def test_a_body_with_a_messages_field_never_hits_one_without(proxy: Proxy) -> None:
    """Must NOT hit: the chat reading put the items under ``messages``, over the body's own
    ``messages`` field, so a body carrying one (which the upstream refuses, and which says
    what a chat model would read as the conversation) shared the partition of one without."""
    route = proxy.upstream.post("/responses").mock(side_effect=refusing_unknown_fields)
    await respond(proxy, ask(QUESTION))
    german = [{"role": "system", "content": "Answer in German."}]
    response = await proxy.client.post(
        "/v1/responses", json=ask(SAME_WORDS, messages=german),
        headers={"authorization": "Bearer sk-test-a"},
    )  # fmt: skip
    assert response.status_code == 400
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


SPELL_AS_STRING = [{"role": "user", "content": "Spell the word 'in\nto' backwards."}]
SPELL_AS_PARTS = [
    {"role": "user", "content": [{"type": "input_text", "text": text}
                                 for text in ("Spell the word 'in", "to' backwards.")]}
]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(INDENTED, INDENTED.lstrip(), id="first-line-indented"),
        pytest.param(SPELL_AS_STRING, SPELL_AS_PARTS, id="string-vs-parts"),
    ],
)
async def test_the_same_compared_text_in_another_shape_never_hits(
    proxy: Proxy, first: Any, second: Any
) -> None:
    """Must NOT hit (as on chat): the first line's indentation is code the model reads, and
    the upstream joins text parts without the line break the compared text joins them with."""
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    await respond(proxy, ask("", input=first))
    response = await respond(proxy, ask("", input=second))
    assert response.headers["x-cache"] == "MISS"
    assert text(response) == "answer 2"
    assert route.call_count == 2


def in_context(question: str, context: dict[str, Any]) -> dict[str, Any]:
    context = dict(context)
    items: list[dict[str, Any]] = []
    if "earlier" in context:
        items += [
            {"role": "user", "content": context.pop("earlier")},
            {"role": "assistant", "content": "Hello!"},
        ]
    if "tool_output" in context:
        items += [
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": context.pop("tool_output")},
        ]
    return ask("", input=[*items, {"role": "user", "content": question}], **context)


async def test_other_tenants_and_other_apis_never_hit(proxy: Proxy) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    chat = proxy.upstream.post("/chat/completions").respond(
        200, json={"id": "c", "object": "chat.completion", "model": "gpt-test", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "chat answer"},
             "finish_reason": "stop"}]},
    )  # fmt: skip
    await respond(proxy, ask(QUESTION), key="sk-a")
    assert (await respond(proxy, ask(SAME_WORDS), key="sk-b")).headers["x-cache"] == "MISS"
    # A chat completion asked in the same words never gets a Responses entry, nor the reverse.
    asked = await proxy.chat(chat_body(SAME_WORDS), authorization="Bearer sk-a")
    assert asked.headers["x-cache"] == "MISS"
    assert asked.json()["object"] == "chat.completion"
    await proxy.chat(chat_body("Who wrote Hamlet?"), authorization="Bearer sk-a")
    other = await respond(proxy, ask("Hamlet was written by who?"), key="sk-a")
    assert other.headers["x-cache"] == "MISS"
    assert route.call_count == 3
    assert chat.call_count == 2


async def test_a_last_item_that_is_not_user_text_is_exact_only(proxy: Proxy) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=answered)
    image = {"type": "input_image", "image_url": "https://example.test/a.png"}
    for words in (QUESTION, SAME_WORDS):
        body = ask("", input=[{"role": "user", "content": [
            {"type": "input_text", "text": words}, image]}])  # fmt: skip
        response = await respond(proxy, body)
        assert response.headers["x-cache"] == "MISS"
    assert response.headers["x-cache-reason"] == "no-user-text"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "given", [["a bare string"], [7], [{"role": "user", "content": QUESTION}, None]]
)
async def test_input_items_the_upstream_would_refuse_go_to_it_unjudged(
    proxy: Proxy, given: list[Any]
) -> None:
    """Not semcache's to refuse (the upstream judges what it accepts), nor to crash on."""
    route = proxy.upstream.post("/responses").respond(
        400, json={"error": {"message": "bad input", "type": "invalid_request_error"}}
    )
    response = await proxy.client.post(
        "/v1/responses", json=ask("", input=given), headers={"authorization": "Bearer sk-a"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad input"
    assert route.call_count == 1


async def test_x_cache_semantic_off_and_shadow_mode_serve_nothing_semantic(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), semantic_mode="shadow"
    ) as proxy:
        route = proxy.upstream.post("/responses").mock(side_effect=answered)
        await respond(proxy, ask(QUESTION))
        shadow = await respond(proxy, ask(SAME_WORDS))
        assert shadow.headers["x-cache"] == "MISS"
        assert shadow.headers["x-cache-reason"] == "shadow"
        assert shadow.headers["x-cache-shadow"] == "HIT"
        off = await proxy.client.post(
            "/v1/responses", json=ask("the capital is France of what?"),
            headers={"authorization": "Bearer sk-test-a", "x-cache-semantic": "off"},
        )  # fmt: skip
        assert off.headers["x-cache-reason"] == "semantic-off"
        assert route.call_count == 3


def test_the_chat_reading_keeps_every_field_but_the_last_text_in_the_partition() -> None:
    body = ask(
        "", instructions="Be brief.", temperature=0.5,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}],
    )  # fmt: skip
    chat = semantic_body(body)
    assert chat is not None
    assert chat["messages"] == [{"role": "user", "content": "Hi there"}]  # one part: a string
    assert semantic_text(chat, max_chars=100) == "Hi there"
    assert "input" not in chat
    assert chat["instructions"] == "Be brief."
    base = semantic_partition("ns", chat, "e", api="responses")
    renamed = semantic_body({**body, "temperature": 0.6})
    assert renamed is not None
    assert semantic_partition("ns", renamed, "e", api="responses") != base
    assert semantic_partition("ns", chat, "e") != base  # the same body on chat completions
    # A chat client's field cannot forge a partition's API, nor share a partition of a body
    # without it (the upstream refuses the field it does not know).
    forged = {**chat, "__semcache_api": "responses"}
    assert semantic_partition("ns", forged, "e") not in (base, semantic_partition("ns", chat, "e"))
    assert semantic_body({**body, "store": True}) is None
    assert semantic_body({k: v for k, v in body.items() if k != "store"}) is None


def echoing(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """As the API does: the Response repeats the request's bookkeeping fields."""
    asked = orjson.loads(request.content)
    body = answered(request, route).json()
    body.update(metadata=asked.get("metadata", {}), user=asked.get("user"),
                safety_identifier=asked.get("safety_identifier"),
                prompt_cache_key=asked.get("prompt_cache_key"),
                instructions=asked.get("instructions"),
                service_tier=asked.get("service_tier") or "default")  # fmt: skip
    return httpx.Response(200, json=body)


@pytest.mark.parametrize("store", [True, False])
@pytest.mark.parametrize(
    ("field", "stored", "asked", "unnamed", "calls"),
    [
        # Left out of the key, but a Response names the tier that served it: a priority
        # request is never shown the flex tier the stored one was made on.
        ("service_tier", "flex", "priority", "default", 1),
        # The key normalizes instructions ("Be terse. " and "Be terse." share an entry); the
        # Response repeats them as this request spelled them (none asked: another request).
        ("instructions", "Be terse. ", "Be terse.", None, 2),
    ],
)
async def test_a_hit_repeats_this_requests_field_never_the_stored_ones(
    proxy: Proxy, store: bool, field: str, stored: str, asked: str, unnamed: str | None, calls: int
) -> None:
    route = proxy.upstream.post("/responses").mock(side_effect=echoing)
    first = await respond(proxy, ask(QUESTION, store=store, **{field: stored}))
    assert first.json()[field] == stored
    hits = [await respond(proxy, ask(QUESTION, store=store, **{field: asked}))]
    if not store:
        hits.append(await respond(proxy, ask(SAME_WORDS, store=store, **{field: asked})))
    for hit in hits:
        assert hit.headers["x-cache"] == "HIT"
        assert hit.json()[field] == asked
    assert (await respond(proxy, ask(QUESTION, store=store))).json()[field] == unnamed
    streamed = await respond(proxy, ask(QUESTION, store=store, stream=True, **{field: asked}))
    assert streamed.headers["x-cache"] == "HIT"
    assert orjson.dumps({field: asked})[1:-1] in streamed.content
    assert orjson.dumps({field: stored})[1:-1] not in streamed.content
    assert route.call_count == calls


async def test_instructions_and_a_system_item_never_share_a_partition(proxy: Proxy) -> None:
    """Must NOT hit: read as a system message, ``instructions`` made a request that sent none
    (its system item saying the same) share a partition with one that did, and be served a
    Response saying ``"instructions": "Be terse."``."""
    route = proxy.upstream.post("/responses").mock(side_effect=echoing)
    await respond(proxy, ask(QUESTION, instructions="Be terse."))
    system = {"role": "system", "content": "Be terse."}
    response = await respond(
        proxy, ask("", input=[system, {"role": "user", "content": SAME_WORDS}])
    )
    assert response.headers["x-cache"] == "MISS"
    assert response.json()["instructions"] is None
    assert route.call_count == 2


@pytest.mark.parametrize("store", [True, False])
async def test_a_hit_repeats_this_requests_bookkeeping_never_the_stored_ones(
    proxy: Proxy, store: bool
) -> None:
    """Must NOT leak: ``metadata``, ``user``, ``safety_identifier`` and ``prompt_cache_key`` are
    left out of the key, but a Response repeats them; a hit for bob never shows alice's."""
    route = proxy.upstream.post("/responses").mock(side_effect=echoing)
    alice = {"metadata": {"end_user": "alice"}, "user": "alice", "safety_identifier": "a-1",
             "prompt_cache_key": "pk-a"}  # fmt: skip
    bob = {"metadata": {"end_user": "bob"}, "user": "bob"}
    first = await respond(proxy, ask(QUESTION, store=store, **alice))
    assert first.json()["metadata"] == {"end_user": "alice"}
    hits = [await respond(proxy, ask(QUESTION, store=store, **bob))]
    if not store:  # semantic matching is for store=false requests only
        hits.append(await respond(proxy, ask(SAME_WORDS, store=store, **bob)))
    for hit in hits:
        assert hit.headers["x-cache"] == "HIT"
        served = hit.json()
        assert served["metadata"] == {"end_user": "bob"}
        assert (served["user"], served["safety_identifier"], served["prompt_cache_key"]) == (
            "bob",
            None,
            None,
        )
        assert text(hit) == "answer 1"
    streamed = await respond(proxy, ask(QUESTION, store=store, stream=True, **bob))
    assert streamed.headers["x-cache"] == "HIT"
    assert b"alice" not in streamed.content
    assert b'"end_user":"bob"' in streamed.content
    assert route.call_count == 1


@pytest.mark.parametrize("store", [None, False], ids=["kept-upstream", "store-false"])
async def test_a_response_deleted_upstream_is_not_served_again(
    proxy: Proxy, store: bool | None
) -> None:
    """``DELETE /v1/responses/{id}`` is passed through; once the upstream says it deleted the
    response, the entry serving that id goes too: a client continuing from it
    (``previous_response_id``) would get a 404 it never gets from the upstream alone."""
    made = proxy.upstream.post("/responses").mock(side_effect=answered)
    proxy.upstream.delete("/responses/resp_1").respond(
        200, json={"id": "resp_1", "object": "response", "deleted": True}
    )
    proxy.upstream.delete("/responses/resp_9").respond(404, json={"error": {"message": "no"}})
    body = {"model": "gpt-test", "input": QUESTION} | ({} if store is None else {"store": store})
    assert (await respond(proxy, body)).json()["id"] == "resp_1"
    auth = {"authorization": "Bearer sk-test-a"}
    # A failed delete (another id, a 404) forgets nothing.
    assert (await proxy.client.delete("/v1/responses/resp_9", headers=auth)).status_code == 404
    assert (await respond(proxy, body)).headers["x-cache"] == "HIT"
    assert (await proxy.client.delete("/v1/responses/resp_1", headers=auth)).status_code == 200
    again = await respond(proxy, body)
    if store is False:  # nothing is kept upstream: the entry serves on
        assert (again.headers["x-cache"], made.call_count) == ("HIT", 1)
    else:
        assert (again.headers["x-cache"], made.call_count) == ("MISS", 2)
        assert again.json()["id"] == "resp_2"


@pytest.mark.parametrize("store", [None, False], ids=["kept-upstream", "store-false"])
async def test_a_kept_response_is_never_served_after_the_upstream_dropped_it(
    proxy: Proxy, store: bool | None
) -> None:
    """The upstream keeps a response 30 days (OpenAI API reference, "Create a model
    response", ``store``); a hit serves its id for ``previous_response_id`` or a ``GET``, so
    an entry of a kept response lives no longer, whatever ``X-Cache-TTL`` (or
    ``SEMCACHE_TTL``) says. A ``"store": false`` one has no id to outlive."""
    made = proxy.upstream.post("/responses").mock(side_effect=answered)
    body = {"model": "gpt-test", "input": QUESTION} | ({} if store is None else {"store": store})
    headers = {"authorization": "Bearer sk-test-a", "x-cache-ttl": str(60 * 86400)}
    first = await proxy.client.post("/v1/responses", json=body, headers=headers)
    assert first.json()["id"] == "resp_1"
    proxy.clock.advance(30 * 86400 - 1)
    assert (await respond(proxy, body)).headers["x-cache"] == "HIT"
    proxy.clock.advance(2)
    again = await respond(proxy, body)
    if store is False:
        assert (again.headers["x-cache"], made.call_count) == ("HIT", 1)
    else:
        assert (again.headers["x-cache"], again.json()["id"]) == ("MISS", "resp_2")


@pytest.mark.parametrize("store", [True, None], ids=["stored", "not-stored"])
async def test_a_stored_chat_completion_deleted_upstream_is_not_served_again(
    proxy: Proxy, store: bool | None
) -> None:
    """A ``"store": true`` chat completion can be fetched and deleted by id
    (``DELETE /v1/chat/completions/{id}``); once deleted, its entry goes too."""
    made = proxy.upstream.post("/chat/completions").respond(200, json=harness.completion())
    proxy.upstream.delete("/chat/completions/chatcmpl-1").respond(
        200, json={"id": "chatcmpl-1", "object": "chat.completion.deleted", "deleted": True}
    )
    body = chat_body() | ({} if store is None else {"store": store})
    auth = {"authorization": "Bearer sk-test-a"}
    first = await proxy.client.post("/v1/chat/completions", json=body, headers=auth)
    gone = await proxy.client.delete("/v1/chat/completions/chatcmpl-1", headers=auth)
    again = await proxy.client.post("/v1/chat/completions", json=body, headers=auth)
    assert (first.headers["x-cache"], gone.status_code) == ("MISS", 200)
    expected = ("MISS", 2) if store else ("HIT", 1)
    assert (again.headers["x-cache"], made.call_count) == expected


async def test_deleting_an_old_response_keeps_the_entry_that_replaced_it(proxy: Proxy) -> None:
    """A refresh (``Cache-Control: no-cache``) stores resp_2 where resp_1 was: deleting resp_1
    upstream must not take resp_2's entry with it."""
    made = proxy.upstream.post("/responses").mock(side_effect=answered)
    proxy.upstream.delete("/responses/resp_1").respond(
        200, json={"id": "resp_1", "object": "response", "deleted": True}
    )
    body = {"model": "gpt-test", "input": QUESTION}
    assert (await respond(proxy, body)).json()["id"] == "resp_1"
    fresh = await proxy.client.post(
        "/v1/responses", json=body,
        headers={"authorization": "Bearer sk-test-a", "cache-control": "no-cache"},
    )  # fmt: skip
    assert fresh.json()["id"] == "resp_2"
    auth = {"authorization": "Bearer sk-test-a"}
    assert (await proxy.client.delete("/v1/responses/resp_1", headers=auth)).status_code == 200
    again = await respond(proxy, body)
    assert (again.headers["x-cache"], again.json()["id"], made.call_count) == ("HIT", "resp_2", 2)


async def test_a_full_store_keeps_the_id_of_every_entry_it_holds(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A stored response leaves two refs (its entry id's, its response id's): a memory store
    keeping one ref per entry dropped the id refs of live entries, whose
    ``/cache/entries/{id}`` and feedback then answered 404."""
    upstream_mock.post("/responses").mock(side_effect=answered)
    admin = {"authorization": "Bearer admin-token-0123456789"}
    async with make_proxy(
        upstream_mock, clock, admin_token="admin-token-0123456789", memory_max_entries=4
    ) as p:
        asked = [{"model": "gpt-test", "input": f"question {n}"} for n in range(4)]
        for body in asked:
            await respond(p, body)
        hits = [await respond(p, body) for body in asked]
        assert [h.headers["x-cache"] for h in hits] == ["HIT"] * 4
        shown = [
            (await p.client.get(f"/cache/entries/{h.headers['x-cache-entry-id']}", headers=admin))
            for h in hits
        ]
    assert [s.status_code for s in shown] == [200] * 4


async def test_a_streamed_miss_asks_for_a_stream_it_can_read(proxy: Proxy) -> None:
    """A streamed miss is read as it is relayed, so the upstream is asked for it uncompressed,
    as on chat completions: the client's ``Accept-Encoding: gzip`` was forwarded, and a stream
    the upstream compressed was relayed but never stored."""
    done = answered(httpx.Request("POST", "http://u"), respx.Route()).json()
    stream = (
        b"event: response.completed\ndata: "
        + orjson.dumps({"type": "response.completed", "sequence_number": 1, "response": done})
        + b"\n\n"
    )
    route = proxy.upstream.post("/responses").respond(
        200, content=stream, headers={"content-type": "text/event-stream"}
    )
    asked = await proxy.client.post(
        "/v1/responses",
        json=ask(QUESTION, stream=True),
        headers={"authorization": "Bearer sk-test-a", "accept-encoding": "gzip"},
    )
    assert route.calls[0].request.headers["accept-encoding"] == "identity"
    assert asked.headers["x-cache"] == "MISS"
    assert (await respond(proxy, ask(QUESTION))).headers["x-cache"] == "HIT"
    assert route.call_count == 1


async def test_a_report_on_a_semantic_hit_counts_as_a_wrong_hit_as_on_chat(proxy: Proxy) -> None:
    """``POST /cache/feedback`` on an answer this process served as a semantic hit counts as a
    wrong hit in its group's evidence, on the Responses API as on chat completions."""
    proxy.upstream.post("/responses").mock(side_effect=answered)
    await respond(proxy, ask(QUESTION))
    hit = await respond(proxy, ask(SAME_WORDS))
    assert hit.headers["x-cache-lookup"] == "semantic"
    reported = await proxy.client.post(
        "/cache/feedback", json={"entry_id": hit.headers["x-cache-entry-id"]},
        headers={"authorization": "Bearer sk-test-a"},
    )  # fmt: skip
    assert reported.status_code == 200
    assert reported.json()["counted_as_wrong_hit"] is True
