"""Routes cached by key, streamed or not: a :class:`Format` says what a route's key is, when an
answer is whole, how its stream ends and is replayed, and which requests are also matched
semantically; :class:`ExactPipeline` applies the chat route's rules for tenants, cache controls,
headers and reasons to it. Legacy completions (:mod:`proxy.cache.completions`, exact only) and
the Responses API (:mod:`proxy.cache.responses`, semantic for ``"store": false``) are two.

A streamed miss is relayed as it arrives and what it ended with becomes the entry, which then
serves both kinds of request. Concurrent identical misses make one upstream call in this process
(single flight, :mod:`proxy.cache.coalesce`): followers wait for the leader's stored answer and
are served it (``X-Cache-Lookup: coalesced``); when the leader stores nothing (an error, a cut
stream) each goes upstream on its own. A client that repeats the moment a stream's last event
arrives, before the entry is stored, follows that flight too. On a store replicas share, the
leader takes chat's replica lock, and a replica that finds it taken waits for the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.responses import Response

from proxy.cache.answers import (
    JSON,
    as_openai_error,
    cache_headers,
    is_plain_event_stream,
    raw_response,
    relay,
    upstream_answer,
)
from proxy.cache.capture import Capture, Joiner, relay_miss
from proxy.cache.coalesce import EntryPublish, SingleFlight, entries_of, take_turn
from proxy.cache.feedback import Feedback, kept_id
from proxy.cache.miss import entry_meta, exact_copy, miss_reason, read_limit, relay_unstored
from proxy.metrics import Metrics
from proxy.requests import CacheControl, ChatRequest, is_fresh, json_or_none
from proxy.semantic import Lookup, SemanticCache, SemanticQuery
from proxy.stores import Cache, Entry
from proxy.upstream import (
    EventParser,
    Upstream,
    UsageStripper,
    open_stream,
    response_headers,
)

SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@dataclass(frozen=True, slots=True)
class Format:
    route: str
    path: str
    key: Callable[[str, dict[str, Any]], str]
    whole: Callable[[dict[str, Any]], bool]
    tokens: Callable[[dict[str, Any]], tuple[int, int]]
    """Tokens a hit saves, and of them the answer's."""
    joiner: Callable[[], Joiner]
    replay: Callable[[dict[str, Any], ChatRequest], bytes]
    semantic: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    """The request as a chat body to match semantically, or None for this one (its reason:
    ``stored-response``); a route without it is exact only."""
    echo: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    """A stored answer as served to this request (the request's body second): for a format
    whose answers repeat request fields the key leaves out (the Responses API's ``metadata``),
    or name the ``service_tier`` that served them (:func:`~proxy.cache.policy.served_tier`)."""
    echoes: bytes = b""
    """``echo`` changes only a stored answer with these bytes: any other is served as stored,
    unparsed (a text completion naming no ``service_tier``, the common case)."""
    asks_usage: bool = False
    """A streamed miss asks the upstream for usage (``stream_options.include_usage``) as chat's
    does, and a client that did not ask gets the stream without it: for a format whose streams
    carry usage only when asked, so that an entry made by one still has it for the hits that
    get it (a non-streamed answer always has it)."""


class ExactPipeline:
    """One exactly cached route (its :class:`Format`): lookup, then upstream, then store."""

    def __init__(
        self,
        cache: Cache,
        upstream: Upstream,
        metrics: Metrics,
        fmt: Format,
        *,
        max_entry_bytes: int,
        coalesce_timeout_seconds: float = 0.0,
        semantic: SemanticCache | None = None,
        feedback: Feedback | None = None,
    ) -> None:
        """``semantic``: for a format that matches semantically (else unused); ``feedback``:
        where each stored entry is recorded by id (reports, ``/cache/entries/{id}``)."""
        self._feedback = feedback
        self.format = fmt
        self._semantic = semantic if fmt.semantic is not None else None
        self._as_chat = fmt.semantic if semantic is not None else None
        self._flights = SingleFlight()
        self._coalesce_timeout_seconds = coalesce_timeout_seconds
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._max_entry_bytes = max_entry_bytes

    async def handle(
        self,
        request: ChatRequest,
        *,
        namespace: str,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
        api_key: str | None = None,
    ) -> Response:
        """``api_key``: the caller's, for an embedder that calls an API with it."""
        url = self._upstream.url(self.format.path, query)
        route = self.format.route
        if control.bypass:
            self._metrics.request(route, "bypass")
            reason = f"bypass:{control.reason}"
            response = await self._upstream.post(url, headers, request.raw, decoded=False)
            return relay(
                self._upstream, response, extra_headers=cache_headers("BYPASS", reason=reason)
            )
        key = self.format.key(namespace, request.body)
        landed = self._flights.landed
        reason = "no-cache"
        stale = False
        if control.lookup:
            entry = await self._cache.get(key)
            if entry is not None and is_fresh(self._age(entry), control):
                return self._hit(entry, request)
            stale = entry is not None
            reason = "stale" if stale else "no-entry"
        semantic: SemanticQuery | None = None
        found = Lookup()
        if self._semantic is not None and self._as_chat is not None:
            as_chat = self._as_chat(request.body)
            semantic, found = await self._semantic_lookup(
                self._semantic, request, as_chat, namespace, api_key, control
            )
            if found.hit is not None:
                if self._feedback is not None and found.candidate is not None:
                    self._feedback.served(found.hit.entry.id, found.candidate.group,
                                          found.candidate.margin)  # fmt: skip
                return self._hit(found.hit.entry, request, lookup="semantic",
                                 similarity=found.hit.similarity)  # fmt: skip
            reason = miss_reason(self._semantic, as_chat, control, stale, semantic, found)
        publish: EntryPublish | None = None
        followed: Callable[[], bool] | None = None
        if control.lookup and control.store and self._coalesce_timeout_seconds > 0:
            turn = await take_turn(self._cache, self._flights, key, control, landed,
                                   wait_seconds=self._coalesce_timeout_seconds)  # fmt: skip
            if turn.outcome is not None and turn.outcome.entry is not None:
                return self._hit(turn.outcome.entry, request, lookup=turn.lookup)
            publish, followed = entries_of(turn.publish), turn.followed

        self._metrics.request(route, "miss")
        self._metrics.miss_reasons[reason.split(" ", 1)[0]] += 1
        extra = cache_headers("MISS", reason=reason)
        if found.shadow_hit:
            extra.append((b"x-cache-shadow", b"HIT"))
        try:
            if request.stream:
                return await self._stream_miss(
                    request, url, headers, key, control, extra, publish, semantic, followed
                )
            response = await self._upstream.post(url, headers, request.raw, decoded=True)
            status = response.status_code
            read = await self._upstream.read_within(
                response, read_limit(status, self._max_entry_bytes)
            )
            if not isinstance(read, bytes):  # too large to store: relayed, not held
                return await relay_unstored(
                    self._upstream, read, metrics=self._metrics, store=control.store,
                    publish=publish, extra_headers=extra,
                )  # fmt: skip
        except BaseException:
            if publish is not None:
                with anyio.CancelScope(shield=True):
                    await publish(None)  # never leave a flight (or the replica lock) behind
            raise
        body, out_headers = as_openai_error(read, status, response_headers(response, decoded=True))
        completion = json_or_none(body) if status == 200 else None

        async def store() -> None:
            entry = None
            try:
                if control.store and isinstance(completion, dict):
                    entry = await self._store(
                        key, request, completion, control, semantic, body=body
                    )
            finally:
                if publish is not None:
                    await publish(entry)

        return raw_response(body, status, [*out_headers, *extra], then=store)

    async def _stream_miss(
        self,
        request: ChatRequest,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        key: str,
        control: CacheControl,
        extra: list[tuple[bytes, bytes]],
        publish: EntryPublish | None,
        semantic: SemanticQuery | None,
        followed: Callable[[], bool] | None = None,
    ) -> Response:
        rewrite: UsageStripper | None = None
        if self.format.asks_usage:
            opened = await open_stream(self._upstream, url, headers, request, ask=control.store)
            response = opened.response
            if opened.refused is not None:  # a client error, read to tell it apart
                if publish is not None:
                    await publish(None)
                out_headers = [*response_headers(response, decoded=True), *extra]
                return upstream_answer(opened.refused, response.status_code, out_headers)
            rewrite = UsageStripper() if opened.asked else None
        else:  # uncompressed, to be read as it is relayed (as chat's streams are)
            response = await self._upstream.post(
                url, headers, request.raw, decoded=False, identity=control.store
            )
        capture = None
        if control.store and response.status_code == 200 and is_plain_event_stream(response):

            async def store(completion: dict[str, Any]) -> Entry | None:
                return await self._store(key, request, completion, control, semantic)

            capture = Capture(
                EventParser(), self.format.joiner(), store, max_bytes=self._max_entry_bytes,
                too_large=self._too_large,
            )  # fmt: skip
        return relay_miss(
            self._upstream, response, extra_headers=extra, capture=capture, publish=publish,
            rewrite=rewrite, persist=followed,
        )  # fmt: skip

    def _too_large(self) -> None:
        self._metrics.not_stored["too_large"] += 1

    async def _store(
        self,
        key: str,
        request: ChatRequest,
        completion: dict[str, Any],
        control: CacheControl,
        semantic: SemanticQuery | None,
        *,
        body: bytes | None = None,
    ) -> Entry | None:
        if not self.format.whole(completion):
            self._metrics.not_stored["incomplete"] += 1
            return None
        data = exact_copy(body if body is not None else orjson.dumps(completion))
        if len(data) > self._max_entry_bytes:
            self._metrics.not_stored["too_large"] += 1
            return None
        tokens, completion_tokens = self.format.tokens(completion)
        as_chat = None if self._as_chat is None else self._as_chat(request.body)
        entry = self._cache.new_entry(
            data, tokens=tokens, completion_tokens=completion_tokens,
            meta=entry_meta(self.format.route, request.model, as_chat,
                            semantic=semantic is not None),
        )  # fmt: skip
        if not await self._cache.put(key, entry, control.ttl_seconds, kind=self.format.route):
            return None
        if semantic is not None and self._semantic is not None:
            await self._semantic.remember(semantic, key, control.ttl_seconds)
        if self._feedback is not None:
            partition = "" if semantic is None else semantic.partition
            await self._feedback.remember(
                entry, key=key, partition=partition, ttl_seconds=control.ttl_seconds,
                kept_as=kept_id(self.format.route, request.body, completion),
            )  # fmt: skip
        return entry

    async def _semantic_lookup(
        self,
        semantic: SemanticCache,
        request: ChatRequest,
        as_chat: dict[str, Any] | None,
        namespace: str,
        api_key: str | None,
        control: CacheControl,
    ) -> tuple[SemanticQuery | None, Lookup]:
        """The request's vector (stored with its answer, also when the lookup is skipped) and,
        when asked for, the semantic lookup: as on chat, minus audits and feedback."""
        query = await semantic.query(
            as_chat, namespace=namespace, api_key=api_key, api=self.format.route
        )
        if query is None or not (control.lookup and control.semantic):
            return query, Lookup()
        return query, await semantic.lookup(query, control, model=request.model)

    def _age(self, entry: Entry) -> float:
        return self._cache.clock() - entry.created_at

    def _hit(
        self,
        entry: Entry,
        request: ChatRequest,
        *,
        lookup: str = "exact",
        similarity: float | None = None,
    ) -> Response:
        headers = cache_headers(
            "HIT", entry, age=self._age(entry), lookup=lookup, similarity=similarity
        )
        self._metrics.request(self.format.route, "hit")
        self._metrics.hit(lookup, entry, model=request.model)
        echo = self.format.echo
        if echo is not None and self.format.echoes not in entry.body:
            echo = None
        if not request.stream and echo is None:
            return raw_response(entry.body, 200, [JSON, *headers])
        completion = json_or_none(entry.body)
        assert isinstance(completion, dict)  # only dicts are stored
        if echo is not None:
            completion = echo(completion, request.body)
        if not request.stream:
            return raw_response(orjson.dumps(completion), 200, [JSON, *headers])
        body = self.format.replay(completion, request)
        return raw_response(body, 200, [*SSE_HEADERS, *headers])
