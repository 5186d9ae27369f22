"""Ollama's native API (``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/embeddings``)
cached with the chat route's rules: tenants, cache controls, headers and reasons; every other
``/api/*`` route is passed through (``X-Cache: BYPASS``).

The key is the request minus what cannot change the answer (``stream``, ``keep_alive``: how it
is delivered and how long the model stays loaded). Chat is also matched semantically, as
``/v1/chat/completions`` is, in partitions of its own (an OpenAI-format entry is never served to
an Ollama client, nor the reverse); the rest is exact only. A result is stored when Ollama
says it is whole: ``done`` with ``done_reason`` ``stop`` and some text or tool calls (chat,
generate), or at least one vector (embed, embeddings). Chat and generate stream by default
(NDJSON): a streamed miss is relayed as it arrives and joined into the ``"stream": false``
result, which serves both kinds of request later (:mod:`proxy.cache.ollama_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio
import orjson
from starlette.responses import Response

from proxy.cache.answers import cache_headers, raw_response, relay
from proxy.cache.capture import Capture, relay_miss
from proxy.cache.coalesce import EntryPublish, SingleFlight, entries_of, take_turn
from proxy.cache.feedback import Feedback
from proxy.cache.keys import ollama_fields, ollama_key
from proxy.cache.miss import entry_meta, exact_copy, miss_reason, relay_unstored
from proxy.cache.ollama_stream import Joined, LineParser, replay
from proxy.metrics import Metrics
from proxy.requests import CacheControl, is_fresh, json_or_none
from proxy.semantic import Lookup, SemanticCache, SemanticQuery
from proxy.stores import Cache, Entry
from proxy.upstream import Upstream, header, response_headers

KINDS = {"/api/chat": "chat", "/api/generate": "generate", "/api/embed": "embed",
         "/api/embeddings": "embeddings"}  # fmt: skip
STREAMING = frozenset({"chat", "generate"})
JSON = (b"content-type", b"application/json; charset=utf-8")
NDJSON = (b"content-type", b"application/x-ndjson")


class OllamaPipeline:
    def __init__(
        self,
        cache: Cache,
        upstream: Upstream,
        metrics: Metrics,
        semantic: SemanticCache,
        *,
        base: str,
        max_entry_bytes: int,
        coalesce_timeout_seconds: float = 0.0,
        feedback: Feedback | None = None,
    ) -> None:
        """``feedback``: where each stored entry is recorded by id (reports, the admin API)."""
        self._feedback = feedback
        self._semantic = semantic
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self.base = base
        self._max_entry_bytes = max_entry_bytes
        self._flights = SingleFlight()
        self._coalesce_timeout_seconds = coalesce_timeout_seconds

    async def handle(
        self,
        kind: str,
        body: dict[str, Any],
        raw: bytes,
        *,
        namespace: str,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        target: str,
    ) -> Response:
        """``target``: the path and query as the client sent them, for the upstream's URL."""
        route = f"ollama-{kind}"
        url = self.base + target
        stream = kind in STREAMING and body.get("stream", True) is not False
        if control.bypass:
            self._metrics.request(route, "bypass")
            response = await self._upstream.post(url, headers, raw, decoded=False)
            extra = cache_headers("BYPASS", reason=f"bypass:{control.reason}")
            return relay(self._upstream, response, extra_headers=extra, openai_errors=False)
        key = ollama_key(namespace, kind, body)
        landed = self._flights.landed
        model = str(body.get("model", ""))
        entry = None
        if control.lookup:
            entry = await self._cache.get(key)
            age = 0.0 if entry is None else self._cache.clock() - entry.created_at
            if entry is not None and is_fresh(age, control):
                return self._hit(kind, entry, stream, age, route, model)
        stale = entry is not None
        query: SemanticQuery | None = None
        found = Lookup()
        as_chat = None
        if kind == "chat":  # as on /v1/chat/completions: the vector goes with the answer
            as_chat = ollama_fields(body)
            query = await self._semantic.query(as_chat, namespace=namespace, api_key=None, api=kind)
            if query is not None and control.lookup and control.semantic:
                found = await self._semantic.lookup(query, control, model=model)
                if found.hit is not None:
                    hit = found.hit
                    if self._feedback is not None and found.candidate is not None:
                        self._feedback.served(hit.entry.id, found.candidate.group,
                                              found.candidate.margin)  # fmt: skip
                    age = self._cache.clock() - hit.entry.created_at
                    return self._hit(kind, hit.entry, stream, age, route, model,
                                     similarity=hit.similarity)  # fmt: skip
        if as_chat is not None:
            reason = miss_reason(self._semantic, as_chat, control, stale, query, found)
        else:
            reason = "stale" if stale else ("no-entry" if control.lookup else "no-cache")
        publish: EntryPublish | None = None
        followed: Callable[[], bool] | None = None
        if control.lookup and control.store and self._coalesce_timeout_seconds > 0:
            turn = await take_turn(self._cache, self._flights, key, control, landed,
                                   wait_seconds=self._coalesce_timeout_seconds)  # fmt: skip
            found_entry = None if turn.outcome is None else turn.outcome.entry
            if found_entry is not None:
                age = self._cache.clock() - found_entry.created_at
                return self._hit(kind, found_entry, stream, age, route, model, lookup=turn.lookup)
            publish, followed = entries_of(turn.publish), turn.followed

        try:
            return await self._miss(kind, key, raw, url, headers, stream, control, model, query,
                                    reason, route, publish, followed)  # fmt: skip
        except BaseException:
            if publish is not None:
                with anyio.CancelScope(shield=True):
                    await publish(None)  # never leave a flight (or the replica lock) behind
            raise

    async def _miss(
        self,
        kind: str,
        key: str,
        raw: bytes,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        stream: bool,
        control: CacheControl,
        model: str,
        query: SemanticQuery | None,
        reason: str,
        route: str,
        publish: EntryPublish | None,
        followed: Callable[[], bool] | None = None,
    ) -> Response:
        self._metrics.request(route, "miss")
        self._metrics.miss_reasons[reason.split(" ", 1)[0]] += 1
        extra = cache_headers("MISS", reason=reason)
        if reason == "shadow":  # as on chat completions: a semantic hit would have been served
            extra.append((b"x-cache-shadow", b"HIT"))
        if stream:  # uncompressed, to be read as it is relayed
            response = await self._upstream.post(
                url, headers, raw, decoded=False, identity=control.store
            )
            content_type = header(response, b"content-type") or b""
            capture = None
            if (
                control.store
                and response.status_code == 200
                and content_type.startswith(b"application/x-ndjson")
                and header(response, b"content-encoding") is None
            ):

                async def store_joined(result: dict[str, Any]) -> Entry | None:
                    return await self._store(kind, key, result, None, control, model, query)

                capture = Capture(
                    LineParser(), Joined(kind), store_joined, max_bytes=self._max_entry_bytes,
                    too_large=self._too_large,
                )  # fmt: skip
            return relay_miss(
                self._upstream, response, extra_headers=extra, capture=capture, publish=publish,
                openai_errors=False, persist=followed,
            )  # fmt: skip
        response = await self._upstream.post(url, headers, raw, decoded=True)
        status = response.status_code
        data = await self._upstream.read_within(response, self._max_entry_bytes)
        if not isinstance(data, bytes):  # too large to store: relayed, not held
            return await relay_unstored(
                self._upstream, data, metrics=self._metrics, store=control.store,
                publish=publish, extra_headers=extra,
            )  # fmt: skip
        result = json_or_none(data) if status == 200 else None

        async def store() -> None:
            entry = None
            try:
                if control.store and isinstance(result, dict):
                    entry = await self._store(kind, key, result, data, control, model, query)
            finally:
                if publish is not None:
                    await publish(entry)

        out = [*response_headers(response, decoded=True), *extra]
        return raw_response(data, status, out, then=store)

    def _too_large(self) -> None:
        self._metrics.not_stored["too_large"] += 1

    async def _store(
        self,
        kind: str,
        key: str,
        result: dict[str, Any],
        data: bytes | None,
        control: CacheControl,
        model: str,
        query: SemanticQuery | None,
    ) -> Entry | None:
        if not is_whole(kind, result):
            self._metrics.not_stored["incomplete"] += 1
            return None
        body = exact_copy(data if data is not None else orjson.dumps(result))
        if len(body) > self._max_entry_bytes:
            self._metrics.not_stored["too_large"] += 1
            return None
        tokens = sum(v for k in ("prompt_eval_count", "eval_count")
                     if isinstance(v := result.get(k), int))  # fmt: skip
        completion = result.get("eval_count")
        entry = self._cache.new_entry(
            body, tokens=tokens, completion_tokens=completion if isinstance(completion, int) else 0,
            meta=entry_meta(f"ollama-{kind}", model, semantic=query is not None),
        )  # fmt: skip
        if not await self._cache.put(key, entry, control.ttl_seconds, kind=f"ollama-{kind}"):
            return None
        if query is not None:
            await self._semantic.remember(query, key, control.ttl_seconds)
        if self._feedback is not None:
            partition = "" if query is None else query.partition
            await self._feedback.remember(
                entry, key=key, partition=partition, ttl_seconds=control.ttl_seconds
            )
        return entry

    def _hit(
        self,
        kind: str,
        entry: Entry,
        stream: bool,
        age: float,
        route: str,
        model: str,
        *,
        similarity: float | None = None,
        lookup: str | None = None,
    ) -> Response:
        if lookup is None:
            lookup = "exact" if similarity is None else "semantic"
        headers = cache_headers("HIT", entry, age=age, lookup=lookup, similarity=similarity)
        self._metrics.request(route, "hit")
        self._metrics.hit(lookup, entry, model=model)
        if not stream:
            return raw_response(entry.body, 200, [JSON, *headers])
        result = json_or_none(entry.body)
        assert isinstance(result, dict)  # only whole results are stored
        return raw_response(replay(kind, result), 200, [NDJSON, *headers])


def is_whole(kind: str, result: dict[str, Any]) -> bool:
    if kind == "embed":
        vectors = result.get("embeddings")
        return (
            isinstance(vectors, list)
            and bool(vectors)
            and all(isinstance(v, list) and v for v in vectors)
        )
    if kind == "embeddings":
        vector = result.get("embedding")
        return isinstance(vector, list) and bool(vector)
    if result.get("done") is not True or result.get("done_reason", "stop") != "stop":
        return False
    if kind == "chat":
        message = result.get("message")
        return isinstance(message, dict) and (
            bool(message.get("content")) or bool(message.get("tool_calls"))
        )
    return isinstance(result.get("response"), str) and bool(result["response"])
