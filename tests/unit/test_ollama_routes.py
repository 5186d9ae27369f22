"""Ollama's native routes: what is passed through untouched, and why a chat missed."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx

from proxy.app import create_app
from proxy.semantic.embedders import HashEmbedder
from proxy.settings import Settings
from tests.unit.harness import (
    INDENTED,
    QUESTION,
    SAME_WORDS,
    UPSTREAM,
    FakeClock,
    Held,
    chat_body,
    completion,
    make_proxy,
)

pytestmark = pytest.mark.anyio

OLLAMA = "http://upstream.test/api"
CHAT = {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": "Paris."},
        "done": True, "done_reason": "stop", "eval_count": 2, "prompt_eval_count": 7}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [{"model": "llama3.2"}, {"model": "llama3.2", "messages": []},
     {"model": "llama3.2", "messages": None, "keep_alive": 0}],
    ids=["no-messages", "empty", "unload"],
)  # fmt: skip
async def test_a_chat_without_messages_loads_the_model_upstream(
    clock: FakeClock, body: dict[str, Any]
) -> None:
    """Ollama loads (or unloads) the model for a chat without messages (docs/api.md): not
    semcache's to refuse, nor to cache."""
    loaded = {"model": "llama3.2", "created_at": "t", "message": {"role": "assistant",
              "content": ""}, "done_reason": "load", "done": True}  # fmt: skip
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(200, json=loaded)
        async with make_proxy(router, clock) as p:
            for _ in range(2):
                response = await p.client.post("/api/chat", json=body)
                assert response.status_code == 200
                assert response.json()["done_reason"] == "load"
    assert route.call_count == 2


async def test_messages_that_are_not_an_array_are_a_400_never_sent(clock: FakeClock) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock) as p:
            response = await p.client.post("/api/chat", json={"model": "m", "messages": "hi"})
    assert (response.status_code, response.json()) == (400, {"error": "messages must be an array"})
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("embedder", "last", "reason"),
    [
        (None, {"role": "user", "content": "What is the capital of France?"}, "semantic-off"),
        (HashEmbedder(64), {"role": "tool", "content": "18 C"}, "no-user-text"),
        (HashEmbedder(64), {"role": "user", "content": "What is the capital of France?"},
         "no-entry"),
        (HashEmbedder(64), {"role": "user", "content": "What is in this picture?",
                            "images": ["aGVsbG8="]}, "no-user-text"),
    ],
    ids=["no-embedder", "tool-result", "nothing-near", "with-an-image"],
)  # fmt: skip
async def test_a_chat_miss_says_why_as_on_chat_completions(
    clock: FakeClock, embedder: HashEmbedder | None, last: dict[str, Any], reason: str
) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock, embedder=embedder) as p:
            body = {"model": "m", "stream": False, "messages": [last]}
            response = await p.client.post("/api/chat", json=body)
            fresh = {"cache-control": "no-cache"}
            again = await p.client.post("/api/chat", json=body, headers=fresh)
    assert (response.headers["x-cache"], response.headers["x-cache-reason"]) == ("MISS", reason)
    assert again.headers["x-cache-reason"] == "no-cache"


async def test_a_chat_completion_cannot_plant_its_answer_in_ollamas_partitions(
    clock: FakeClock,
) -> None:
    """Must NOT hit: the API a partition belongs to comes from the route, so a chat completions
    body with semcache's partition field (``__semcache_api``) stays in chat's partitions; an
    Ollama client is never served an OpenAI-format answer."""
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{UPSTREAM}/chat/completions").respond(200, json=completion("OpenAI"))
        ollama = router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock, embedder=HashEmbedder(64)) as p:
            forged = {"model": "m", "messages": [{"role": "user", "content": QUESTION}],
                      "__semcache_api": "chat"}  # fmt: skip
            planted = await p.client.post("/v1/chat/completions", json=forged)
            assert planted.headers["x-cache"] == "MISS"
            asked = {"model": "m", "stream": False,
                     "messages": [{"role": "user", "content": SAME_WORDS}]}  # fmt: skip
            response = await p.client.post("/api/chat", json=asked)
    assert response.headers["x-cache"] == "MISS"
    assert response.json()["message"]["content"] == "Paris."
    assert ollama.call_count == 1


def refusing_content_lists(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """As Ollama does: a message's ``content`` is a string (Go's ``Message.Content``)."""
    if any(not isinstance(m["content"], str) for m in orjson.loads(request.content)["messages"]):
        refused = "json: cannot unmarshal array into Go struct field Message.messages.content"
        return httpx.Response(400, json={"error": f"{refused} of type string"})
    n = route.call_count + 1
    return httpx.Response(200, json={**CHAT, "message": {"role": "assistant",
                                                         "content": f"answer {n}"}})  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        pytest.param(INDENTED, INDENTED.lstrip(), 200, id="first-line-indented"),
        pytest.param(QUESTION, [{"type": "text", "text": SAME_WORDS}], 400, id="content-list"),
    ],
)
async def test_the_same_compared_text_in_another_shape_never_hits_on_ollama(
    clock: FakeClock, first: Any, second: Any, status: int
) -> None:
    """Must NOT hit: the compared text strips the first line's indentation (code the model
    reads) and joins a list of text parts, which Ollama refuses (its content is a string), so
    each pair compared as the same text in one partition."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").mock(side_effect=refusing_content_lists)
        async with make_proxy(router, clock, embedder=HashEmbedder(64)) as p:
            for text in (first, second):
                response = await p.client.post("/api/chat", json={
                    "model": "m", "stream": False,
                    "messages": [{"role": "user", "content": text}]})  # fmt: skip
    assert response.status_code == status
    assert response.headers["x-cache"] == "MISS"
    assert route.call_count == 2


@pytest.mark.parametrize("path", ["/api/chat", "/api/tags"])
async def test_the_server_key_never_goes_to_an_ollama_on_another_host(
    clock: FakeClock, path: str
) -> None:
    """Must NOT leak: ``SEMCACHE_UPSTREAM_API_KEY`` is for the upstream; an Ollama named by
    ``SEMCACHE_OLLAMA_URL`` on another host gets the client's own headers only."""
    other = "http://ollama.internal:11434"
    with respx.mock(assert_all_called=False) as router:
        chat = router.post(f"{other}/api/chat").respond(200, json=CHAT)
        tags = router.get(f"{other}/api/tags").respond(200, json={"models": []})
        async with make_proxy(
            router, clock, ollama_url=other, upstream_api_key="sk-server-secret"
        ) as p:
            if path == "/api/chat":
                body = {"model": "m", "stream": False,
                        "messages": [{"role": "user", "content": QUESTION}]}  # fmt: skip
                response = await p.client.post(path, json=body)
            else:
                response = await p.client.get(path)
    assert response.status_code == 200
    (sent,) = (chat if path == "/api/chat" else tags).calls
    assert "authorization" not in sent.request.headers


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/nope", None),  # passed through
        ("POST", "/api/chat", {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}),
        ("POST", "/api/chat", {"model": "m", "stream": False,
                               "messages": [{"role": "user", "content": "Hi"}]}),
    ],
    ids=["passthrough", "streamed", "whole"],
)  # fmt: skip
async def test_ollamas_own_errors_reach_its_clients_as_they_are(
    clock: FakeClock, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """An Ollama client reads Ollama's errors; a plain-text one is relayed as it came, never
    rewritten into OpenAI's shape."""
    with respx.mock(assert_all_called=False) as router:
        router.route(method=method, url=f"http://upstream.test{path}").respond(
            500, text="model runner crashed", headers={"content-type": "text/plain"}
        )
        async with make_proxy(router, clock) as p:
            response = await p.client.request(method, path, json=body)
    assert response.status_code == 500
    assert response.text == "model runner crashed"


async def test_an_overloaded_ollama_route_says_when_to_retry(clock: FakeClock) -> None:
    """semcache's own 503 (no free upstream slot) keeps its Retry-After on Ollama's routes."""
    slow = Held(CHAT)
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{OLLAMA}/chat").mock(side_effect=slow)
        async with make_proxy(router, clock, max_inflight=1, queue_timeout_seconds=0.05) as p:

            async def ask(text: str) -> httpx.Response:
                body = {"model": "m", "stream": False,
                        "messages": [{"role": "user", "content": text}]}  # fmt: skip
                return await p.client.post("/api/chat", json=body)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "first")
                await anyio.wait_all_tasks_blocked()
                refused = await ask("second")
                slow.release.set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "error" in refused.json()


async def test_a_body_naming_a_key_twice_is_passed_through_never_cached(clock: FakeClock) -> None:
    """Go decodes both ``options`` into one map: the upstream answers num_ctx 8 with stop "e",
    while the key semcache would derive (last value wins) is the plain request's. Must NOT be
    stored under it, nor served from it."""
    doubled = (
        b'{"model":"m","stream":false,"messages":[{"role":"user","content":"Hi"}],'
        b'"options":{"num_ctx":8,"stop":["e"]},"options":{"temperature":0}}'
    )
    plain = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "Hi"}],
             "options": {"temperature": 0}}  # fmt: skip
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock) as p:
            first = await p.client.post("/api/chat", content=doubled)
            second = await p.client.post("/api/chat", json=plain)
            again = await p.client.post("/api/chat", content=doubled)
    assert first.headers["x-cache"] == again.headers["x-cache"] == "BYPASS"
    assert first.headers["x-cache-reason"] == "bypass:duplicate-keys"
    assert second.headers["x-cache"] == "MISS"
    assert route.calls[0].request.content == doubled  # forwarded as sent
    assert route.call_count == 3


async def test_shadow_mode_says_so_on_ollama_as_on_chat_completions(clock: FakeClock) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(
            router, clock, embedder=HashEmbedder(64), semantic_mode="shadow"
        ) as p:
            answers = [
                await p.client.post("/api/chat", json={"model": "m", "stream": False,
                                    "messages": [{"role": "user", "content": text}]})
                for text in (QUESTION, SAME_WORDS)
            ]  # fmt: skip
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS"]
    assert "x-cache-shadow" not in answers[0].headers
    assert answers[1].headers["x-cache-shadow"] == "HIT"
    assert route.call_count == 2


async def test_a_report_on_a_semantic_hit_counts_as_a_wrong_hit_as_on_chat_completions(
    clock: FakeClock,
) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock, embedder=HashEmbedder(64)) as p:
            answers = [
                await p.client.post("/api/chat", json={"model": "m", "stream": False,
                                    "messages": [{"role": "user", "content": text}]})
                for text in (QUESTION, SAME_WORDS)
            ]  # fmt: skip
            assert answers[1].headers["x-cache-lookup"] == "semantic"
            reported = await p.client.post(
                "/cache/feedback", json={"entry_id": answers[1].headers["x-cache-entry-id"]}
            )
    assert reported.status_code == 200
    assert reported.json()["counted_as_wrong_hit"] is True


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.1, "bytes": list(token.encode())}


async def test_a_streamed_miss_keeps_its_logprobs_for_the_whole_answer_a_hit_serves(
    clock: FakeClock,
) -> None:
    """Ollama's whole answer carries every streamed line's logprobs, appended: a streamed miss
    stored without them served a later ``"stream": false`` hit with none."""
    lines = [
        {"model": "m", "created_at": "t", "done": False, "logprobs": [_logprob(t)],
         "message": {"role": "assistant", "content": t}}
        for t in ("Paris", " is", ".")
    ] + [{**CHAT, "message": {"role": "assistant", "content": ""}}]  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}], "logprobs": True}
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(
            200,
            content=b"".join(orjson.dumps(line) + b"\n" for line in lines),
            headers={"content-type": "application/x-ndjson"},
        )
        async with make_proxy(router, clock) as p:
            streamed = await p.client.post("/api/chat", json=body)
            hit = await p.client.post("/api/chat", json={**body, "stream": False})
    assert (streamed.headers["x-cache"], hit.headers["x-cache"], route.call_count) == (
        "MISS", "HIT", 1,
    )  # fmt: skip
    assert [t["token"] for t in hit.json()["logprobs"]] == ["Paris", " is", "."]
    assert hit.json()["message"]["content"] == "Paris is."


def _answer(model: str, content: str) -> dict[str, Any]:
    return {**CHAT, "model": model, "message": {"role": "assistant", "content": content}}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "forgotten"),
    [
        ("POST", "/api/create", {"model": "tutor", "from": "llama3.2", "system": "In French."},
         200, True),
        ("POST", "/api/pull", {"model": "tutor:latest"}, 200, True),
        ("POST", "/api/copy", {"source": "llama3.2", "destination": "tutor"}, 200, True),
        ("DELETE", "/api/delete", {"model": "tutor"}, 200, True),
        ("DELETE", "/api/delete", {"model": "tutor"}, 404, False),  # nothing changed
        ("POST", "/api/pull", {"model": "other"}, 200, False),  # another model's
        # Ollama finds a model whatever the case of its name, and fills in the registry,
        # namespace and tag (server/routes.go getExistingName, types/model ParseName).
        ("DELETE", "/api/delete", {"model": "Tutor"}, 200, True),
        ("POST", "/api/create", {"model": "TUTOR:Latest", "from": "llama3.2"}, 200, True),
        ("POST", "/api/pull", {"model": "registry.ollama.ai/library/tutor:latest"}, 200, True),
        ("POST", "/api/copy", {"source": "llama3.2", "destination": "library/tutor"}, 200, True),
        ("POST", "/api/pull", {"model": "someone/tutor"}, 200, False),  # another namespace's
        ("POST", "/api/pull", {"model": "tutor:q4"}, 200, False),  # another tag
    ],
    ids=["created", "pulled", "copied-onto", "deleted", "delete-failed", "other-model",
         "deleted-other-case", "created-other-case", "pulled-full-name", "copied-onto-namespaced",
         "other-namespace", "other-tag"],
)  # fmt: skip
async def test_a_model_changed_through_the_proxy_takes_its_entries_with_it(
    clock: FakeClock,
    method: str,
    path: str,
    payload: dict[str, Any],
    status: int,
    forgotten: bool,
) -> None:
    """Entries are keyed by the model's name, which ``ollama create``, ``pull``, ``cp`` and
    ``rm`` rewrite: after one succeeds through semcache, that name's entries (Ollama's and the
    OpenAI-compatible routes', ``tutor`` and ``tutor:latest`` alike) are removed; straight from
    Ollama the next chat is the new model's answer, or a 404."""
    ask = {"model": "tutor", "messages": [{"role": "user", "content": QUESTION}], "stream": False}
    with respx.mock(assert_all_called=False) as router:
        chat = router.post(f"{OLLAMA}/chat").mock(
            side_effect=[httpx.Response(200, json=_answer("tutor", f"answer {n}")) for n in (1, 2)]
        )
        v1 = router.post(f"{UPSTREAM}/chat/completions").mock(
            side_effect=[httpx.Response(200, json=completion(f"v1 {n}")) for n in (1, 2)]
        )
        router.route(method=method, url=f"http://upstream.test{path}").respond(
            status, json={"status": "success"} if status == 200 else {"error": "not found"}
        )
        async with make_proxy(router, clock) as p:
            await p.client.post("/api/chat", json=ask)
            await p.client.post("/v1/chat/completions", json=chat_body(model="tutor:latest"))
            changed = await p.client.request(method, path, json=payload)
            again = await p.client.post("/api/chat", json=ask)
            again_v1 = await p.client.post(
                "/v1/chat/completions", json=chat_body(model="tutor:latest")
            )
    assert changed.status_code == status
    expected = "MISS" if forgotten else "HIT"
    assert (again.headers["x-cache"], again_v1.headers["x-cache"]) == (expected, expected)
    assert (chat.call_count, v1.call_count) == ((2, 2) if forgotten else (1, 1))


async def test_a_streamed_miss_asks_for_a_stream_it_can_read_and_stores_no_encoded_one(
    clock: FakeClock,
) -> None:
    """A streamed miss is read as it is relayed: the upstream is asked for it uncompressed
    (the client's ``Accept-Encoding: gzip`` was forwarded, and a compressing Ollama, or a proxy
    before it, made the stream unreadable). A stream that comes encoded anyway is relayed
    untouched and never stored."""
    line = orjson.dumps(CHAT) + b"\n"
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(
            200, content=line, headers={"content-type": "application/x-ndjson"}
        )
        async with make_proxy(router, clock) as p:
            first = await p.client.post("/api/chat", json=body, headers={"accept-encoding": "gzip"})
            assert route.calls[0].request.headers["accept-encoding"] == "identity"
            assert first.headers["x-cache"] == "MISS"
            assert (await p.client.post("/api/chat", json=body)).headers["x-cache"] == "HIT"
            other = {**body, "messages": [{"role": "user", "content": "Another question?"}]}
            route.respond(
                200,
                content=gzip.compress(line),
                headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"},
            )
            relayed = await p.client.post("/api/chat", json=other)
            assert orjson.loads(relayed.content) == CHAT  # the client decodes it as sent
            again = await p.client.post("/api/chat", json=other)
    assert again.headers["x-cache"] == "MISS"
    assert route.call_count == 3


async def test_an_empty_context_is_not_an_absent_one(clock: FakeClock) -> None:
    """Go decodes ``"context": []`` to an empty slice that is not nil, and ``/api/generate``
    leaves out the model's ``MESSAGE`` history when ``req.Context != nil`` (Ollama's
    server/routes.go): the two prompts differ. Must NOT share an entry."""
    generated = {"model": "m", "created_at": "t", "response": "Hi.", "done": True,
                 "done_reason": "stop", "context": [1, 2]}  # fmt: skip
    plain = {"model": "m", "prompt": "Hi", "stream": False}
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/generate").respond(200, json=generated)
        async with make_proxy(router, clock) as p:
            first = await p.client.post("/api/generate", json=plain)
            second = await p.client.post("/api/generate", json={**plain, "context": []})
            again = await p.client.post("/api/generate", json={**plain, "context": []})
    assert first.headers["x-cache"] == second.headers["x-cache"] == "MISS"
    assert again.headers["x-cache"] == "HIT"  # its own entry
    assert route.call_count == 2


async def test_keys_that_differ_only_in_case_are_passed_through(clock: FakeClock) -> None:
    """Go reads ``System`` (and ``system`` with a long s: Unicode folding) as ``system``, the
    last one written winning: a poet's answer, then a pirate's, from two bodies semcache keyed
    as one. Must NOT be stored, nor served."""
    bodies = [
        '{"model":"m","prompt":"Hi","stream":false,"system":"pirate","\u017fystem":"poet"}',
        '{"model":"m","prompt":"Hi","stream":false,"\u017fystem":"poet","system":"pirate"}',
    ]
    generated = {"model": "m", "created_at": "t", "response": "Hi.", "done": True,
                 "done_reason": "stop"}  # fmt: skip
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/generate").respond(200, json=generated)
        async with make_proxy(router, clock) as p:
            answers = [await p.client.post("/api/generate", content=b.encode()) for b in bodies]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert answers[0].headers["x-cache-reason"] == "bypass:duplicate-keys"
    assert route.call_count == 2


async def test_integers_beyond_64_bits_and_routing_headers_are_read_on_ollamas_routes(
    clock: FakeClock,
) -> None:
    """As on the OpenAI routes: two ``format`` schemas whose ``const`` differ past 64 bits are
    one key to orjson (passed through), and a gateway's routing header scopes the entry."""
    generated = {"model": "m", "created_at": "t", "response": "Hi.", "done": True,
                 "done_reason": "stop"}  # fmt: skip
    plain = {"model": "m", "prompt": "Hi", "stream": False}

    def schema(const: int) -> str:
        format_ = {"type": "object", "properties": {"id": {"const": const}}}
        return json.dumps({**plain, "format": format_})

    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/generate").respond(200, json=generated)
        async with make_proxy(router, clock) as p:
            big = [
                await p.client.post("/api/generate", content=schema(n))
                for n in (12345678901234567890123, 12345678901234567890124)
            ]
            routed = [
                await p.client.post("/api/generate", json=plain, headers=headers)
                for headers in ({"x-portkey-provider": "ollama-a"}, {})
            ]
    assert [a.headers["x-cache"] for a in big] == ["BYPASS", "BYPASS"]
    assert big[0].headers["x-cache-reason"] == "bypass:big-number"
    assert [a.headers["x-cache"] for a in routed] == ["MISS", "MISS"]
    assert route.call_count == 4


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/%63hat"), ("GET", "/api/show%2Fx")])
async def test_an_escaped_path_goes_to_ollama_as_sent_never_cached(
    clock: FakeClock, method: str, path: str
) -> None:
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "Hi"}]}
    with respx.mock(assert_all_called=False) as router:
        route = router.route(host="upstream.test").respond(200, json=CHAT)
        async with make_proxy(router, clock) as p:
            answers = [
                await p.client.request(method, path, json=body if method == "POST" else None)
                for _ in range(2)
            ]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert route.call_count == 2
    assert [c.request.url.raw_path for c in route.calls] == [path.encode()] * 2


async def test_a_chat_sent_as_curl_sends_it_is_still_cached(clock: FakeClock) -> None:
    """Ollama reads a body as JSON whatever its ``Content-Type`` (and its docs' ``curl -d``
    sends form-urlencoded): unlike on ``/v1/*``, the type is no reason to pass it through."""
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "Hi"}]}
    form = {"content-type": "application/x-www-form-urlencoded"}
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{OLLAMA}/chat").respond(200, json=CHAT)
        async with make_proxy(router, clock) as p:
            answers = [
                await p.client.post("/api/chat", content=orjson.dumps(body), headers=form)
                for _ in range(2)
            ]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT"]
    assert route.call_count == 1


@pytest.mark.parametrize(
    "path",
    ["/api/%2e%2e/%2e%2e/admin", "/api/tags/%2E%2E/x", "/api/%2e/tags", "/api/..%2F..%2Fadmin",
     "/api/tags/..%5Cx"],
)  # fmt: skip
async def test_a_dot_segment_never_reaches_ollama(clock: FakeClock, path: str) -> None:
    """``..`` sent escaped reaches the router decoded and the upstream as sent: with an
    ``SEMCACHE_OLLAMA_URL`` that has a path, it would climb out of it. Refused, as on ``/v1``."""
    with respx.mock(assert_all_called=False) as router:
        route = router.route(host="upstream.test").respond(200, json={"models": []})
        async with make_proxy(router, clock) as p:
            answer = await p.client.get(path)
    assert answer.status_code == 400
    assert "'.' or '..'" in answer.json()["error"]
    assert route.call_count == 0


async def test_a_query_reaches_ollama_on_every_route_and_scopes_the_entries(
    clock: FakeClock,
) -> None:
    """A gateway before Ollama may read the query (``?key=``): it goes upstream as sent, on a
    cached route (miss and bypass) and a passed-through one, and requests with another query
    never share an entry."""
    body = {"model": "m", "stream": False, "messages": [{"role": "user", "content": "Hi"}]}
    with respx.mock(assert_all_called=False) as router:
        chat = router.post(url__startswith=f"{OLLAMA}/chat").respond(200, json=CHAT)
        tags = router.get(url__startswith=f"{OLLAMA}/tags").respond(200, json={"models": []})
        async with make_proxy(router, clock) as p:
            answers = [
                await p.client.post("/api/chat" + query, json=body, headers=headers)
                for query, headers in (
                    ("?key=a", {}),
                    ("?key=b", {}),
                    ("?key=a", {}),
                    ("?key=c", {"x-cache-bypass": "1"}),
                )
            ]
            await p.client.get("/api/tags?key=d")
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS", "HIT", "BYPASS"]
    assert [c.request.url.query for c in chat.calls] == [b"key=a", b"key=b", b"key=c"]
    assert tags.calls.last.request.url.query == b"key=d"


async def test_a_model_name_cannot_forge_lines_in_the_log(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The name of a model removed through the proxy is logged with its entries' count; the
    name is the client's (a JSON string may hold a newline), so it is written escaped."""
    name = "tutor\n2026-01-01 00:00:00,000 WARNING semcache.app: forged"
    ask = {"model": name, "messages": [{"role": "user", "content": QUESTION}], "stream": False}
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{OLLAMA}/chat").respond(200, json=_answer(name, "Paris."))
        router.route(method="DELETE", url="http://upstream.test/api/delete").respond(
            200, json={"status": "success"}
        )
        async with make_proxy(router, clock) as p:
            await p.client.post("/api/chat", json=ask)
            caplog.set_level("INFO", logger="semcache.ollama")
            await p.client.request("DELETE", "/api/delete", json={"model": name})
    [record] = [r for r in caplog.records if r.name == "semcache.ollama"]
    assert "\n" not in record.getMessage()
    assert "tutor\\n2026" in record.getMessage()


@pytest.mark.parametrize(
    ("lines", "forgotten"),
    [
        ([{"status": "pulling manifest"}, {"status": "verifying sha256 digest"},
          {"status": "writing manifest"}, {"status": "success"}], True),
        ([{"status": "pulling manifest"}, {"status": "pulling 6a0746a1ec1a", "total": 9,
          "completed": 3}, {"error": "max retries exceeded: connection reset by peer"}], False),
    ],
    ids=["pulled", "failed-midway"],
)  # fmt: skip
async def test_a_pull_that_fails_once_its_progress_began_keeps_the_models_entries(
    clock: FakeClock, lines: list[dict[str, Any]], forgotten: bool
) -> None:
    """A streamed pull (the ``ollama`` CLI's, and the libraries' with ``stream=True``) answers
    200 with its first progress line; a failure after that is an ``{"error": ...}`` line
    (server/routes.go ``streamResponse``), and the model is as it was: its entries stay."""
    ask = {"model": "tutor", "messages": [{"role": "user", "content": QUESTION}], "stream": False}
    progress = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    with respx.mock(assert_all_called=False) as router:
        chat = router.post(f"{OLLAMA}/chat").mock(
            side_effect=[httpx.Response(200, json=_answer("tutor", f"answer {n}")) for n in (1, 2)]
        )
        router.post(f"{OLLAMA}/pull").respond(
            200, content=progress, headers={"content-type": "application/x-ndjson"}
        )
        async with make_proxy(router, clock) as p:
            await p.client.post("/api/chat", json=ask)
            pulled = await p.client.post("/api/pull", json={"model": "tutor"})
            again = await p.client.post("/api/chat", json=ask)
    assert (pulled.status_code, pulled.content) == (200, progress)
    assert again.headers["x-cache"] == ("MISS" if forgotten else "HIT")
    assert chat.call_count == (2 if forgotten else 1)


@pytest.mark.parametrize(
    ("path", "patient"),
    [("/api/pull", True), ("/api/push", True), ("/api/create", True), ("/api/show", False)],
)
async def test_a_model_pulled_pushed_or_created_unstreamed_may_take_longer_than_the_timeout(
    path: str, patient: bool
) -> None:
    """The ``ollama`` libraries' ``pull()``, ``push()`` and ``create()`` default to
    ``"stream": false``: Ollama says nothing until the model is moved or made (minutes for a
    large one), and cancels the work when the connection closes. Timed out at
    ``SEMCACHE_UPSTREAM_TIMEOUT``, such a call failed through semcache where it succeeds
    straight at Ollama. Other routes keep the timeout."""

    writers: list[asyncio.StreamWriter] = []

    async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        await anyio.sleep(0.8)
        body = b'{"status":"success"}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip

    server = await asyncio.start_server(answer_late, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(upstream_url=f"http://127.0.0.1:{port}/v1", upstream_timeout_seconds=0.3)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(path, json={"model": "big", "stream": False})
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
    assert response.status_code == (200 if patient else 504)
