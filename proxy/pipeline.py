"""The chat completions driver: exact lookup, then upstream, then store.

Decisions come from :mod:`proxy.policy`; this module only does the I/O, in order. Streamed and
non-streamed requests share one key and one entry: an entry holds the completion as a
non-streaming call returns it, plus the chunk boundaries when it came from a stream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from starlette.responses import Response

from proxy.assembler import StreamAssembler
from proxy.cache import Cache
from proxy.keys import chat_key
from proxy.metrics import Metrics
from proxy.policy import CacheControl, completion_is_storable, completion_tokens_saved, is_fresh
from proxy.responses import JSON, is_event_stream, raw_response, relay
from proxy.semantic import SemanticCache, SemanticQuery
from proxy.sse import EventParser, replay
from proxy.stores.base import Entry
from proxy.upstream import DECODABLE_ENCODINGS, IDENTITY, Headers, Upstream, response_headers
from proxy.validate import ChatRequest

log = logging.getLogger("semcache.pipeline")

ROUTE = "chat"
CHAT_PATH = "/chat/completions"
SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def cache_headers(
    state: str,
    entry: Entry | None = None,
    *,
    age: float = 0.0,
    lookup: str = "exact",
    similarity: float | None = None,
) -> Headers:
    headers: Headers = [(b"x-cache", state.encode())]
    if entry is not None:
        headers += [
            (b"x-cache-lookup", lookup.encode()),
            (b"age", str(max(0, math.floor(age))).encode()),
            (b"x-cache-entry-id", entry.id.encode()),
        ]
        if similarity is not None:
            headers.append((b"x-cache-similarity", f"{similarity:.4f}".encode()))
    return headers


class ChatPipeline:
    def __init__(
        self, cache: Cache, semantic: SemanticCache, upstream: Upstream, metrics: Metrics
    ) -> None:
        self._cache = cache
        self._semantic = semantic
        self._upstream = upstream
        self._metrics = metrics

    async def handle(
        self,
        chat: ChatRequest,
        *,
        namespace: str,
        api_key: str | None,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
    ) -> Response:
        url = self._upstream.url(CHAT_PATH, query)
        if control.bypass:
            self._metrics.request(ROUTE, "bypass")
            response = await self._send(url, headers, chat, accept_encoding=None)
            return relay(self._upstream, response, extra_headers=cache_headers("BYPASS"))

        key = chat_key(namespace, chat.body)
        if control.lookup:
            entry = await self._cache.get(key)
            if entry is not None and is_fresh(self._age(entry), control):
                hit = self._hit(entry, chat, lookup="exact")
                if hit is not None:
                    return hit

        semantic = await self._semantic.query(chat.body, namespace=namespace, api_key=api_key)
        if semantic is not None and control.lookup and control.semantic:
            found = await self._semantic.lookup(semantic, control)
            if found is not None:
                hit = self._hit(found.entry, chat, lookup="semantic", similarity=found.similarity)
                if hit is not None:
                    return hit

        self._metrics.request(ROUTE, "miss")
        if chat.stream:
            return await self._stream_miss(url, headers, chat, key, control, semantic)
        response = await self._send(url, headers, chat, accept_encoding=DECODABLE_ENCODINGS)
        body = await self._upstream.read(response)
        if control.store:
            completion = _json_or_none(body) if response.status_code == 200 else None
            await self._store(key, response.status_code, completion, control, semantic, body=body)
        return raw_response(
            body,
            response.status_code,
            [*response_headers(response, decoded=True), *cache_headers("MISS")],
        )

    def _age(self, entry: Entry) -> float:
        return self._cache.clock() - entry.created_at

    def _hit(
        self, entry: Entry, chat: ChatRequest, *, lookup: str, similarity: float | None = None
    ) -> Response | None:
        """The entry served in the form asked (JSON or an SSE replay); None if it is unusable."""
        headers = cache_headers(
            "HIT", entry, age=self._age(entry), lookup=lookup, similarity=similarity
        )
        if chat.stream:
            completion = _json_or_none(entry.body)
            boundaries = _json_or_none(entry.replay) if entry.replay else {}
            if not isinstance(completion, dict) or not isinstance(boundaries, dict):
                log.warning("entry %s cannot be replayed; treating it as a miss", entry.id)
                return None
            body = replay(completion, boundaries, include_usage=chat.include_usage)
            response = raw_response(body, 200, [*SSE_HEADERS, *headers])
        else:
            response = raw_response(entry.body, 200, [JSON, *headers])
        self._metrics.request(ROUTE, "hit")
        self._metrics.hit(lookup, entry.tokens)
        return response

    async def _stream_miss(
        self,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        chat: ChatRequest,
        key: str,
        control: CacheControl,
        semantic: SemanticQuery | None,
    ) -> Response:
        response = await self._send(url, headers, chat, accept_encoding=IDENTITY)
        miss = cache_headers("MISS")
        storable = (
            control.store
            and response.status_code == 200
            and is_event_stream(response)
            and "content-encoding" not in response.headers
        )
        if not storable:
            if control.store:
                self._metrics.not_stored["error"] += 1
            return relay(self._upstream, response, extra_headers=miss)
        parser = EventParser()
        assembler = StreamAssembler()

        def observe(chunk: bytes) -> None:
            for data in parser.feed(chunk):
                assembler.feed(data)

        async def store() -> None:
            if not assembler.complete:
                self._metrics.not_stored["incomplete"] += 1
                return
            replay_hints = orjson.dumps(assembler.boundaries())
            await self._store(
                key, 200, assembler.completion(), control, semantic, replay=replay_hints
            )

        return relay(
            self._upstream, response, extra_headers=miss, observe=observe, on_complete=store
        )

    async def _store(
        self,
        key: str,
        status_code: int,
        completion: Any,
        control: CacheControl,
        semantic: SemanticQuery | None,
        *,
        body: bytes | None = None,
        replay: bytes = b"",
    ) -> None:
        if not completion_is_storable(status_code, completion):
            self._metrics.not_stored["incomplete" if status_code == 200 else "error"] += 1
            return
        if body is None:
            body = orjson.dumps(completion)
        tokens = completion_tokens_saved(completion)
        entry = self._cache.new_entry(body, tokens=tokens, replay=replay)
        stored = await self._cache.put(key, entry, control.ttl_seconds, kind="chat")
        if stored and semantic is not None:
            await self._semantic.remember(semantic, key, control.ttl_seconds)

    async def _send(
        self,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        chat: ChatRequest,
        *,
        accept_encoding: bytes | None,
    ) -> httpx.Response:
        return await self._upstream.send(
            "POST",
            url,
            headers=self._upstream.forward_headers(headers, accept_encoding=accept_encoding),
            content=chat.raw,
        )


def _json_or_none(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
