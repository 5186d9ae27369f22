"""The chat completions driver: exact lookup, then upstream, then store.

Decisions come from :mod:`proxy.cache.policy`; this module only does the I/O, in order. Streamed and
non-streamed requests share one key and one entry: an entry holds the completion as a
non-streaming call returns it, plus the chunk boundaries when it came from a stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
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
from proxy.cache.coalesce import Outcome, Publish, SingleFlight, take_turn
from proxy.cache.feedback import Feedback, kept_id
from proxy.cache.keys import chat_key
from proxy.cache.miss import Miss, entry_meta, exact_copy, miss_reason, read_limit, relay_unstored
from proxy.cache.policy import chat_semantic_body, completion_tokens_saved, with_served_tier
from proxy.errors import HTTPError
from proxy.metrics import Metrics
from proxy.requests import CacheControl, ChatRequest, is_fresh, json_or_none
from proxy.semantic import Candidate, Lookup, SemanticCache
from proxy.stores import Cache, Entry
from proxy.upstream import (
    DECODABLE_ENCODINGS,
    EventParser,
    Headers,
    StreamAssembler,
    Upstream,
    UpstreamResponse,
    UsageStripper,
    completion_is_storable,
    open_stream,
    replay,
    response_headers,
)

log = logging.getLogger("semcache.pipeline")

ROUTE = "chat"
CHAT_PATH = "/chat/completions"
# Response headers about the caller's own account: never handed to coalesced followers.
_PER_CALLER_HEADERS = (b"set-cookie", b"openai-organization", b"openai-project", b"x-ratelimit-")

SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class ChatPipeline:
    def __init__(
        self,
        cache: Cache,
        semantic: SemanticCache,
        upstream: Upstream,
        metrics: Metrics,
        *,
        max_entry_bytes: int,
        coalesce_timeout_seconds: float,
        feedback: Feedback | None = None,
    ) -> None:
        self._cache = cache
        self._semantic = semantic
        self._upstream = upstream
        self._metrics = metrics
        self._max_entry_bytes = max_entry_bytes
        self._coalesce_timeout_seconds = coalesce_timeout_seconds
        self._flights = SingleFlight()
        self._feedback = feedback

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
            reason = f"bypass:{control.reason}"
            self._metrics.miss_reasons[reason] += 1
            response = await self._send(url, headers, chat.raw, accept_encoding=None)
            return relay(
                self._upstream, response, extra_headers=cache_headers("BYPASS", reason=reason)
            )

        key = chat_key(namespace, chat.body)
        landed = self._flights.landed
        stale = False
        if control.lookup:
            entry = await self._cache.get(key)
            stale = entry is not None and not is_fresh(self._age(entry), control)
            if entry is not None and not stale:
                hit = self._hit(entry, chat, lookup="exact")
                if hit is not None:
                    if chat.temperature == 0:  # the upstream's own variability
                        group = self._semantic.group(chat.model)
                        self._audit(Candidate(group, None, "", key, entry), chat, url, headers)
                    return hit

        looked_at = chat_semantic_body(chat.body)
        semantic = await self._semantic.query(looked_at, namespace=namespace, api_key=api_key)
        found = Lookup()
        if semantic is not None and control.lookup and control.semantic:
            found = await self._semantic.lookup(semantic, control, model=chat.model)
            served = found.hit
            if served is not None and found.candidate is not None:
                hit = self._hit(served.entry, chat, lookup="semantic", similarity=served.similarity)
                if hit is not None:
                    if self._feedback is not None:
                        group, margin = found.candidate.group, found.candidate.margin
                        self._feedback.served(served.entry.id, group, margin)
                    self._audit(found.candidate, chat, url, headers, semantic=True)
                    return hit

        reason = miss_reason(self._semantic, looked_at, control, stale, semantic, found)
        self._metrics.miss_reasons[reason.split(" ", 1)[0]] += 1
        miss = Miss(url, headers, chat, key, namespace, control, semantic, found, reason)
        if not (control.lookup and control.store) or self._coalesce_timeout_seconds == 0:
            return await self._miss(miss, publish=None)
        return await self._coalesced(miss, landed)

    async def seed(
        self,
        chat: ChatRequest,
        completion: dict[str, Any],
        *,
        namespace: str,
        api_key: str | None,
        ttl_seconds: int,
    ) -> Entry | None:
        """Store ``completion`` as the answer to ``chat`` (``POST /cache/import``), as a miss
        would have: the same key, the same storability rules, its vector for semantic lookup."""
        key = chat_key(namespace, chat.body)
        looked_at = chat_semantic_body(chat.body)
        semantic = await self._semantic.query(looked_at, namespace=namespace, api_key=api_key)
        control = CacheControl(lookup=True, store=True, ttl_seconds=ttl_seconds)
        miss = Miss("", (), chat, key, namespace, control, semantic, Lookup())
        return await self._store(miss, 200, completion)

    async def _coalesced(self, miss: Miss, landed: int) -> Response:
        """One upstream call for concurrent identical misses (see :mod:`proxy.cache.coalesce`)."""
        turn = await take_turn(self._cache, self._flights, miss.key, miss.control, landed,
                               wait_seconds=self._coalesce_timeout_seconds)  # fmt: skip
        if turn.outcome is not None:
            followed = self._followed(turn.outcome, miss, turn.lookup)
            if followed is not None:
                return followed
        publish = turn.publish
        if publish is None:
            return await self._miss(miss, publish=None)
        try:
            return await self._miss(miss, publish=publish, followed=turn.followed)
        except HTTPError as exc:
            await publish(
                Outcome(status_code=exc.status_code, headers=[JSON, *exc.headers], body=exc.body())
            )
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await publish(None)
            raise

    def _followed(self, outcome: Outcome | None, miss: Miss, lookup: str) -> Response | None:
        if outcome is not None and outcome.entry is not None:
            return self._hit(outcome.entry, miss.chat, lookup=lookup)
        if outcome is not None and outcome.is_failure:
            self._metrics.request(ROUTE, "miss")
            extra = cache_headers("MISS", reason=miss.reason)
            return raw_response(outcome.body, outcome.status_code, [*outcome.headers, *extra])
        return None

    async def _miss(
        self, miss: Miss, *, publish: Publish | None, followed: Callable[[], bool] | None = None
    ) -> Response:
        self._metrics.request(ROUTE, "miss")
        if miss.chat.stream:
            return await self._stream_miss(miss, publish, followed)
        response = await self._send(
            miss.url, miss.headers, miss.chat.raw, accept_encoding=DECODABLE_ENCODINGS
        )
        status = response.status_code
        extra = miss.answer_headers()
        read = await self._upstream.read_within(response, read_limit(status, self._max_entry_bytes))
        if not isinstance(read, bytes):  # too large to store: relayed, not held
            return await relay_unstored(
                self._upstream, read, metrics=self._metrics, store=miss.control.store,
                publish=publish, extra_headers=extra, count_errors=True,
            )  # fmt: skip
        body, headers = as_openai_error(read, status, response_headers(response, decoded=True))

        async def store_and_publish() -> None:
            outcome = None
            try:
                entry = None
                if miss.control.store:
                    completion = json_or_none(body) if status == 200 else None
                    entry = await self._store(miss, status, completion, body=body)
                if entry is not None:
                    outcome = Outcome(entry=entry)
                elif status >= 500:
                    # A server failure is the same for everyone; a 4xx may be about the
                    # leader's own key or quota, so followers ask for themselves.
                    shared = [(k, v) for k, v in headers if not k.startswith(_PER_CALLER_HEADERS)]
                    outcome = Outcome(status_code=status, headers=shared, body=body)
            finally:
                if publish is not None:
                    await publish(outcome)

        # The answer goes out first and is stored right after, before this request ends: the
        # store is off the caller's wait, yet in place before its next request is read.
        return raw_response(body, status, [*headers, *extra], then=store_and_publish)

    def _audit(
        self,
        candidate: Candidate,
        chat: ChatRequest,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        semantic: bool = False,
    ) -> None:
        auditor = self._semantic.auditor
        if auditor is not None and self._semantic.enabled:  # its workers run only then
            auditor.maybe_audit(
                candidate, exact=not semantic, url=url, headers=headers, body=chat.body
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
            completion = json_or_none(entry.body)
            boundaries = json_or_none(entry.replay) if entry.replay else {}
            if not isinstance(completion, dict) or not isinstance(boundaries, dict):
                log.warning("entry %s cannot be replayed; treating it as a miss", entry.id)
                return None
            completion = with_served_tier(completion, chat.body)
            body = replay(completion, boundaries, include_usage=chat.include_usage)
            response = raw_response(body, 200, [*SSE_HEADERS, *headers])
        else:
            response = raw_response(_served(entry.body, chat.body), 200, [JSON, *headers])
        self._metrics.request(ROUTE, "hit")
        self._metrics.hit(lookup, entry, model=chat.model)
        return response

    async def _stream_miss(
        self, miss: Miss, publish: Publish | None, followed: Callable[[], bool] | None
    ) -> Response:
        extra = miss.answer_headers()
        opened = await open_stream(
            self._upstream, miss.url, miss.headers, miss.chat, ask=miss.control.store
        )
        response = opened.response
        storable = (
            miss.control.store and response.status_code == 200 and is_plain_event_stream(response)
        )
        if not storable:
            if miss.control.store:
                self._metrics.not_stored["error"] += 1
            if publish is not None:
                await publish(None)
            if opened.refused is not None:  # a client error, read to tell it apart
                headers = [*response_headers(response, decoded=True), *extra]
                return upstream_answer(opened.refused, response.status_code, headers)
            return relay(self._upstream, response, extra_headers=extra)
        parser = EventParser()
        assembler = StreamAssembler(max_bytes=self._max_entry_bytes)
        stored: list[Entry] = []

        def observe(chunk: bytes) -> bool:
            for data in parser.feed(chunk):
                assembler.feed(data)
            return assembler.done

        async def complete() -> None:
            if not assembler.complete:
                self._metrics.not_stored["too_large" if assembler.too_large else "incomplete"] += 1
                return
            replay_hints = orjson.dumps(assembler.boundaries())
            entry = await self._store(miss, 200, assembler.completion(), replay=replay_hints)
            if entry is not None:
                stored.append(entry)

        async def finish() -> None:
            if publish is not None:
                await publish(Outcome(entry=stored[0]) if stored else None)

        return relay(
            self._upstream,
            response,
            extra_headers=extra,
            observe=observe,
            rewrite=UsageStripper() if opened.asked else None,
            on_complete=complete,
            on_finish=finish,
            persist=followed,
        )

    async def _store(
        self,
        miss: Miss,
        status_code: int,
        completion: Any,
        *,
        body: bytes | None = None,
        replay: bytes = b"",
    ) -> Entry | None:
        if not completion_is_storable(status_code, completion):
            self._metrics.not_stored["incomplete" if status_code == 200 else "error"] += 1
            return None
        if body is None:
            body = exact_copy(orjson.dumps(completion))
        replay = exact_copy(replay)
        if len(body) + len(replay) > self._max_entry_bytes:
            self._metrics.not_stored["too_large"] += 1
            return None
        tokens, completion_tokens = completion_tokens_saved(completion)
        entry = self._cache.new_entry(
            body,
            tokens=tokens,
            completion_tokens=completion_tokens,
            replay=replay,
            meta=entry_meta(
                ROUTE, miss.chat.model, miss.chat.body, semantic=miss.semantic is not None
            ),
        )
        if not await self._cache.put(miss.key, entry, miss.control.ttl_seconds, kind="chat"):
            return None
        if miss.semantic is not None:
            await self._semantic.remember(miss.semantic, miss.key, miss.control.ttl_seconds)
        if self._feedback is not None:
            partition = "" if miss.semantic is None else miss.semantic.partition
            await self._feedback.remember(
                entry,
                key=miss.key,
                partition=partition,
                ttl_seconds=miss.control.ttl_seconds,
                kept_as=kept_id(ROUTE, miss.chat.body, completion),
            )
        candidate, auditor = miss.found.candidate, self._semantic.auditor
        if candidate is not None and auditor is not None:
            auditor.compare(candidate, completion, shadow=miss.found.shadow_hit)
        return entry

    async def _send(
        self,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        content: bytes,
        *,
        accept_encoding: bytes | None,
    ) -> UpstreamResponse:
        return await self._upstream.send(
            "POST",
            url,
            headers=self._upstream.forward_headers(headers, accept_encoding=accept_encoding),
            content=content,
        )


def _served(stored: bytes, request: dict[str, Any]) -> bytes:
    """A stored completion's bytes as a non-streamed hit serves them: as stored (no parse, the
    common case) unless they name a ``service_tier`` this request is not served on."""
    if b'"service_tier"' not in stored:
        return stored
    completion = json_or_none(stored)
    if not isinstance(completion, dict):
        return stored
    served = with_served_tier(completion, request)
    return stored if served is completion else orjson.dumps(served)
