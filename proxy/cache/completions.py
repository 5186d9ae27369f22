"""``POST /v1/completions`` (legacy text completions, still served by vLLM, Ollama and OpenAI):
exact caching, streamed or not, with the chat route's rules for tenants, cache controls, what
is stored (only choices that ended with ``stop``) and headers.

Exact only: a text completion continues its prompt character by character, so two prompts that
mean the same are still different requests (and the prompt is not normalized: a trailing space
changes what a model writes next). A stream is read as it is relayed; its chunks are joined into
the completion a non-streaming call returns, which serves both kinds of request later (OpenAI API
reference, "Completions" and its streaming chunks). Concurrent identical misses are not
coalesced here (chat's single flight is not shared yet), but a request for an answer whose
stream has ended and is being stored waits for it (clients repeat the moment ``[DONE]`` arrives,
before the upstream's end of body that the store waits for).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

import anyio
import orjson
from starlette.responses import Response

from proxy.cache.keys import completion_key
from proxy.cache.miss import entry_meta, exact_copy
from proxy.cache.policy import CacheControl, completion_tokens_saved, is_fresh
from proxy.http.responses import (
    JSON,
    as_openai_error,
    cache_headers,
    is_plain_event_stream,
    raw_response,
    relay,
)
from proxy.http.validate import ChatRequest, json_or_none
from proxy.metrics import Metrics
from proxy.stores.base import Entry
from proxy.stores.guard import Cache
from proxy.upstream import (
    DONE_EVENT,
    EventParser,
    Upstream,
    event,
    response_headers,
)

ROUTE = "completions"
COMPLETIONS_PATH = "/completions"
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_PIECES = re.compile(r"\S+\s*|\s+")
WORDS_PER_CHUNK = 3
LANDING_WAIT_SECONDS = 1.0


class CompletionsPipeline:
    def __init__(
        self, cache: Cache, upstream: Upstream, metrics: Metrics, *, max_entry_bytes: int
    ) -> None:
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._max_entry_bytes = max_entry_bytes
        self._landing: dict[str, asyncio.Event] = {}
        """Keys whose streamed answer is whole and about to be stored."""

    async def handle(
        self,
        request: ChatRequest,
        *,
        namespace: str,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
    ) -> Response:
        url = self._upstream.url(COMPLETIONS_PATH, query)
        if control.bypass:
            self._metrics.request(ROUTE, "bypass")
            reason = f"bypass:{control.reason}"
            response = await self._upstream.post(url, headers, request.raw, decoded=False)
            return relay(
                self._upstream, response, extra_headers=cache_headers("BYPASS", reason=reason)
            )
        key = completion_key(namespace, request.body)
        reason = "no-cache"
        if control.lookup:
            landing = self._landing.get(key)
            if landing is not None:
                with anyio.move_on_after(LANDING_WAIT_SECONDS):
                    await landing.wait()
            entry = await self._cache.get(key)
            age = 0.0 if entry is None else self._cache.clock() - entry.created_at
            if entry is not None and is_fresh(age, control):
                return self._hit(entry, request, age)
            reason = "no-entry" if entry is None else "stale"
        self._metrics.request(ROUTE, "miss")
        self._metrics.miss_reasons[reason] += 1
        extra = cache_headers("MISS", reason=reason)
        if request.stream:
            return await self._stream_miss(request, url, headers, key, control, extra)
        response = await self._upstream.post(url, headers, request.raw, decoded=True)
        body = await self._upstream.read(response)
        status = response.status_code
        body, out_headers = as_openai_error(body, status, response_headers(response, decoded=True))
        completion = json_or_none(body) if status == 200 else None

        async def store() -> None:
            if control.store and isinstance(completion, dict):
                await self._store(key, request, completion, control, body=body)

        return raw_response(body, status, [*out_headers, *extra], then=store)

    async def _stream_miss(
        self,
        request: ChatRequest,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        key: str,
        control: CacheControl,
        extra: list[tuple[bytes, bytes]],
    ) -> Response:
        response = await self._upstream.post(url, headers, request.raw, decoded=False)
        if not (control.store and response.status_code == 200 and is_plain_event_stream(response)):
            return relay(self._upstream, response, extra_headers=extra)
        parser = EventParser()
        joined = Joined()

        def observe(chunk: bytes) -> bool:
            for data in parser.feed(chunk):
                joined.feed(data)
            if joined.done and key not in self._landing:
                self._landing[key] = asyncio.Event()
            return joined.done

        async def complete() -> None:
            completion = joined.completion()
            if completion is not None:
                await self._store(key, request, completion, control)

        async def finish() -> None:
            landing = self._landing.pop(key, None)
            if landing is not None:
                landing.set()

        return relay(self._upstream, response, extra_headers=extra, observe=observe,
                     on_complete=complete, on_finish=finish)  # fmt: skip

    async def _store(
        self,
        key: str,
        request: ChatRequest,
        completion: dict[str, Any],
        control: CacheControl,
        *,
        body: bytes | None = None,
    ) -> None:
        if not _is_complete(completion):
            self._metrics.not_stored["incomplete"] += 1
            return
        data = exact_copy(body if body is not None else orjson.dumps(completion))
        if len(data) > self._max_entry_bytes:
            self._metrics.not_stored["too_large"] += 1
            return
        tokens, completion_tokens = completion_tokens_saved(completion)
        entry = self._cache.new_entry(
            data, tokens=tokens, completion_tokens=completion_tokens,
            meta=entry_meta(ROUTE, request.model),
        )  # fmt: skip
        await self._cache.put(key, entry, control.ttl_seconds, kind=ROUTE)

    def _hit(self, entry: Entry, request: ChatRequest, age: float) -> Response:
        headers = cache_headers("HIT", entry, age=age, lookup="exact")
        self._metrics.request(ROUTE, "hit")
        self._metrics.hit("exact", entry, model=request.model)
        if not request.stream:
            return raw_response(entry.body, 200, [JSON, *headers])
        completion = json_or_none(entry.body)
        assert isinstance(completion, dict)  # only dicts are stored
        body = replay(completion, include_usage=request.include_usage)
        return raw_response(body, 200, [*SSE_HEADERS, *headers])


class Joined:
    """The chunks of a streamed text completion joined into the object a non-streaming call
    returns: each choice's ``text`` in order, its ``finish_reason``, and ``usage`` if sent."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, Any] = {}
        self._usage: Any = None
        self.done = False
        self.broken = False

    def feed(self, data: bytes) -> None:
        if data.strip() == b"[DONE]":
            self.done = True
            return
        chunk = json_or_none(data)
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        for field in ("id", "created", "model", "system_fingerprint"):
            if field in chunk and field not in self._head:
                self._head[field] = chunk[field]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                self.broken = True
                return
            index = choice.get("index", 0)
            text = choice.get("text")
            if isinstance(text, str):
                self._texts.setdefault(index, []).append(text)
            if choice.get("finish_reason") is not None:
                self._finish[index] = choice["finish_reason"]

    def completion(self) -> dict[str, Any] | None:
        if not self.done or self.broken or not self._texts:
            return None
        choices = [
            {"text": "".join(self._texts[i]), "index": i, "logprobs": None,
             "finish_reason": self._finish.get(i)}
            for i in sorted(self._texts)
        ]  # fmt: skip
        out = {**self._head, "object": "text_completion", "choices": choices}
        if self._usage is not None:
            out["usage"] = self._usage
        return out


def replay(completion: dict[str, Any], *, include_usage: bool) -> bytes:
    """A stored text completion as the stream an upstream sends: each choice's text a few
    words per chunk, its finish reason on the last, usage when asked for, then ``[DONE]``."""
    fields = ("id", "created", "model", "system_fingerprint")
    head: dict[str, Any] = {k: completion[k] for k in fields if k in completion}
    head["object"] = "text_completion"
    out: list[bytes] = []
    for choice in completion.get("choices", []):
        index, text = choice.get("index", 0), choice.get("text", "")
        words = _PIECES.findall(text) or [""]
        pieces = [
            "".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK)
        ]
        for n, piece in enumerate(pieces):
            finish = choice.get("finish_reason") if n == len(pieces) - 1 else None
            choice_out = {"text": piece, "index": index, "logprobs": None, "finish_reason": finish}
            out.append(event({**head, "choices": [choice_out]}))
    if include_usage and "usage" in completion:
        out.append(event({**head, "choices": [], "usage": completion["usage"]}))
    out.append(DONE_EVENT)
    return b"".join(out)


def _is_complete(completion: dict[str, Any]) -> bool:
    choices = completion.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") == "stop" for c in choices)
        and all(isinstance(c.get("text"), str) for c in choices)
    )
