"""A chat request on its way upstream: what the miss path needs to call the upstream, answer,
store and compare; and the copy an entry's bytes are stored in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from proxy.cache.answers import MAX_ERROR_BODY_BYTES, cache_headers, relay
from proxy.metrics import Metrics
from proxy.requests import CacheControl, ChatRequest
from proxy.semantic import Lookup, SemanticCache, SemanticQuery, semantic_text
from proxy.upstream import Headers, Upstream, UpstreamResponse


@dataclass(frozen=True, slots=True)
class Miss:
    """What the miss path needs to call the upstream and store its answer."""

    url: str
    headers: Iterable[tuple[bytes, bytes]]
    chat: ChatRequest
    key: str
    namespace: str
    control: CacheControl
    semantic: SemanticQuery | None
    found: Lookup
    """The semantic lookup's outcome: a candidate not served is compared once stored."""
    reason: str = "no-entry"
    """Why it missed (``X-Cache-Reason``)."""

    def answer_headers(self) -> Headers:
        """A miss's cache headers: why it missed; in shadow mode, whether it would have been
        a hit."""
        headers = cache_headers("MISS", reason=self.reason)
        if self.found.shadow_hit:
            headers.append((b"x-cache-shadow", b"HIT"))
        return headers


def miss_reason(
    semantic_cache: SemanticCache,
    body: dict[str, Any] | None,
    control: CacheControl,
    stale: bool,
    semantic: SemanticQuery | None,
    found: Lookup,
) -> str:
    """``X-Cache-Reason`` of a miss: the step that ended the lookup. ``body`` is the request
    as a chat body (semantic lookups read it so); None when its route matches it exactly only
    (a Responses API request whose response the upstream stores)."""
    if not control.lookup:
        return "no-cache"
    if stale:
        return "stale"
    if semantic is None:
        if body is None:
            return "stored-response" if semantic_cache.enabled else "semantic-off"
        return semantic_cache.skipped(body)
    if not control.semantic:
        return "semantic-off"
    return found.reason


PROMPT_CHARS_KEPT = 200
"""Of the last user message, what an entry keeps for the admin API (``GET /cache/entries``)."""


def entry_meta(
    route: str, model: str, body: dict[str, Any] | None = None, *, semantic: bool = False
) -> bytes:
    """What the admin API lists of an entry: its route, model, the start of its prompt, and
    whether semantic lookups can find it (it was indexed) or exact ones only."""
    meta: dict[str, Any] = {"route": route, "model": model, "lookup": (
        "semantic" if semantic else "exact"
    )}  # fmt: skip
    if body is not None:
        text = semantic_text(body, max_chars=1 << 62)
        meta["prompt"] = "" if text is None else text[:PROMPT_CHARS_KEPT]
    return orjson.dumps(meta)


def exact_copy(data: bytes) -> bytes:
    """A copy sized to its content: orjson's results can hold several times their length in
    spare capacity, which a long-lived cache entry would keep."""
    return bytes(memoryview(data))


def read_limit(status_code: int, max_entry_bytes: int) -> int:
    """How much of a non-streamed answer is read before the rest is relayed as it arrives,
    not stored: the largest entry, or for an error as much as may be rewritten in OpenAI's
    format (:func:`~proxy.cache.answers.as_openai_error`)."""
    if status_code < 400:
        return max_entry_bytes
    return max(max_entry_bytes, MAX_ERROR_BODY_BYTES)


async def relay_unstored(
    upstream: Upstream,
    response: UpstreamResponse,
    *,
    metrics: Metrics,
    store: bool,
    publish: Callable[[None], Awaitable[None]] | None,
    extra_headers: Headers,
    count_errors: bool = False,
) -> Response:
    """An answer too large to store (past :func:`read_limit`), relayed as it arrives: counted
    as not stored (an error too, with ``count_errors``), and its single flight's followers let
    go at once to ask for themselves."""
    status = response.status_code
    if store and (status == 200 or count_errors):
        metrics.not_stored["too_large" if status == 200 else "error"] += 1
    if publish is not None:
        await publish(None)
    return relay(upstream, response, extra_headers=extra_headers, openai_errors=False)
