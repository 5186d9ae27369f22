"""The chat completions driver: exact lookup, then upstream, then store.

Decisions come from :mod:`proxy.policy`; this module only does the I/O in order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import orjson
from starlette.responses import Response

from proxy.cache import Cache
from proxy.keys import chat_key
from proxy.metrics import Metrics
from proxy.policy import CacheControl, completion_is_storable, completion_tokens_saved, is_fresh
from proxy.responses import JSON, raw_response, relay
from proxy.stores.base import Entry
from proxy.upstream import Headers, Upstream, response_headers
from proxy.validate import ChatRequest

log = logging.getLogger("semcache.pipeline")

ROUTE = "chat"
CHAT_PATH = "/chat/completions"


def cache_headers(state: str, entry: Entry | None = None, *, age: float = 0.0) -> Headers:
    headers: Headers = [(b"x-cache", state.encode())]
    if entry is not None:
        headers += [
            (b"x-cache-lookup", b"exact"),
            (b"age", str(max(0, math.floor(age))).encode()),
            (b"x-cache-entry-id", entry.id.encode()),
        ]
    return headers


class ChatPipeline:
    def __init__(self, cache: Cache, upstream: Upstream, metrics: Metrics) -> None:
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics

    async def handle(
        self,
        chat: ChatRequest,
        *,
        namespace: str,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
    ) -> Response:
        if control.bypass or chat.stream:
            # Streamed requests are relayed uncached until streaming capture lands.
            self._metrics.request(ROUTE, "bypass")
            return await self._relay(chat, headers, query)

        key = chat_key(namespace, chat.body)
        if control.lookup:
            entry = await self._cache.get(key)
            if entry is not None:
                age = self._cache.clock() - entry.created_at
                if is_fresh(age, control):
                    self._metrics.request(ROUTE, "hit")
                    self._metrics.hit("exact", entry.tokens)
                    return raw_response(
                        entry.body, 200, [JSON, *cache_headers("HIT", entry, age=age)]
                    )

        self._metrics.request(ROUTE, "miss")
        response = await self._upstream.send(
            "POST",
            self._upstream.url(CHAT_PATH, query),
            headers=self._upstream.forward_headers(headers, decoded=True),
            content=chat.raw,
        )
        body = await self._upstream.read(response)
        if control.store:
            await self._store(key, response.status_code, body, control)
        return raw_response(
            body,
            response.status_code,
            [*response_headers(response, decoded=True), *cache_headers("MISS")],
        )

    async def _store(self, key: str, status_code: int, body: bytes, control: CacheControl) -> None:
        try:
            completion = orjson.loads(body) if status_code == 200 else None
        except orjson.JSONDecodeError:
            completion = None
        if not completion_is_storable(status_code, completion):
            self._metrics.not_stored["incomplete" if status_code == 200 else "error"] += 1
            return
        assert isinstance(completion, dict)
        entry = self._cache.new_entry(body, tokens=completion_tokens_saved(completion))
        await self._cache.put(key, entry, control.ttl_seconds, kind="chat")

    async def _relay(
        self, chat: ChatRequest, headers: Iterable[tuple[bytes, bytes]], query: bytes
    ) -> Response:
        response = await self._upstream.send(
            "POST",
            self._upstream.url(CHAT_PATH, query),
            headers=self._upstream.forward_headers(headers, decoded=False),
            content=chat.raw,
        )
        return relay(self._upstream, response, extra_headers=cache_headers("BYPASS"))
