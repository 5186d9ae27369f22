"""What a request asks, typed, and the small JSON readers under it.

The values every layer is handed once :mod:`proxy.http.validate` has read a body (a
:class:`ChatRequest`, an :class:`EmbeddingRequest`), and the readers of a JSON object or value
that the face, the cache's drivers and the semantic audit share. Nothing here knows HTTP.
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
