"""The OpenAI embeddings wire format: float32 vectors in (``float`` lists or ``base64``) and
out, and the reading of an upstream's ``POST /embeddings`` answer."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson


def parse_vectors(
    status_code: int, body: bytes, expected: int
) -> tuple[list[np.ndarray[Any, np.dtype[np.float32]]], list[int], str | None] | None:
    """The upstream's vectors in input order as float32, with each item's share of the tokens;
    None when the answer is not a complete success."""
    if status_code != 200:
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        return None
    vectors: list[np.ndarray[Any, np.dtype[np.float32]] | None] = [None] * expected
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            return None
        index = item.get("index", position)
        if type(index) is not int or not 0 <= index < expected or vectors[index] is not None:
            return None
        vector = decode(item.get("embedding"))
        if vector is None:
            return None
        vectors[index] = vector
    usage = answer.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = answer.get("model")
    done = [v for v in vectors if v is not None]
    return (
        done,
        share_tokens(total if type(total) is int else 0, done),
        (model if isinstance(model, str) else None),
    )


def decode(value: object) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        if len(raw) % 4 or not raw:
            return None
        return np.frombuffer(raw, dtype="<f4")
    if isinstance(value, list) and value and all(type(x) in (int, float) for x in value):
        return np.asarray(value, dtype=np.float32)
    return None


def encode(data: bytes, as_base64: bool) -> str | np.ndarray[Any, np.dtype[np.float32]]:
    if as_base64:
        return base64.b64encode(data).decode("ascii")
    return np.frombuffer(data, dtype="<f4")


def share_tokens(total: int, vectors: Sequence[object]) -> list[int]:
    """Split a batch's token count over its items (the upstream reports only the total)."""
    n = len(vectors)
    if n == 0:
        return []
    base, extra = divmod(max(total, 0), n)
    return [base + (1 if i < extra else 0) for i in range(n)]
