"""What a request asks, typed, and the small JSON readers under it.

The values every layer is handed once the face has read a request: its body
(:class:`ChatRequest`, :class:`EmbeddingRequest`, from :mod:`proxy.http.validate`) and what it
allows the cache (:class:`CacheControl`, from :func:`proxy.cache.policy.cache_control`); and the
readers of a JSON object or value that the face, the cache's drivers and the semantic audit
share. Nothing here knows HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequestError


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    include_usage: bool
    temperature: float | None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    body: dict[str, Any]
    model: str
    items: list[str | list[int]]
    single: bool
    """``input`` was one string or one token array rather than a list of them."""
    base64: bool
    passthrough: str | None = None
    """Why the request goes upstream whole, as sent, never cached (a ``bypass:`` reason), when
    it is one semcache cannot cache but another server may take: ``mixed-input`` (``input``
    lists strings beside token arrays, none of the OpenAI spec's shapes: served in part from
    the cache it would get a 200 its upstream may never give), ``encoding-format`` (a format
    but ``float`` and ``base64``, such as vLLM's ``bytes``), ``messages-input`` (vLLM's
    chat-style embeddings, ``messages`` in place of ``input``)."""


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What one request allows: look up, store, and with which lifetime."""

    lookup: bool
    store: bool
    ttl_seconds: int
    max_age_seconds: int | None = None
    semantic: bool = True
    """``X-Cache-Semantic: off`` turns semantic lookup off for this request."""
    min_similarity: float | None = None
    """``X-Cache-Threshold``: this request's own least similarity for a semantic hit."""
    reason: str | None = None
    """Why the cache is skipped entirely (``X-Cache: BYPASS``), or None."""

    @property
    def bypass(self) -> bool:
        return self.reason is not None

    def bypassed(self, reason: str) -> CacheControl:
        """The request passed through untouched instead (``X-Cache-Reason: bypass:<reason>``)."""
        return CacheControl(False, False, self.ttl_seconds, reason=reason)


def is_fresh(age_seconds: float, control: CacheControl) -> bool:
    """Whether an entry ``age_seconds`` old may answer a request allowing ``control``."""
    return control.max_age_seconds is None or age_seconds <= control.max_age_seconds


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as one JSON object, or a :class:`BadRequestError` saying why not."""
    if not raw:
        raise BadRequestError("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    return body


def json_or_none(data: bytes) -> Any:
    """The JSON value of ``data``, or None when it is not JSON (a stored body, an answer)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def loggable(text: str) -> str:
    """A client's text (a path, a model name) as it may go into a log line: control
    characters (CR, LF, ESC...) written escaped, as ``repr`` writes them, so a client cannot
    end the line and forge the next one, nor drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
