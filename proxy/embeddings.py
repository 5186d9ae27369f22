"""``POST /v1/embeddings`` cached per input item.

Each item of ``input`` has its own key (tenant, model, dimensions and every other field that can
change the vector). Hits are answered from the store; the missing items go upstream in one
request and are merged back in the original order. Vectors are stored once as float32 and served
in the format the client asks for (``float`` or ``base64``).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from proxy.cache import Cache
from proxy.keys import embedding_key
from proxy.metrics import Metrics
from proxy.pipeline import cache_headers
from proxy.policy import CacheControl, is_fresh
from proxy.responses import JSON, raw_response, relay
from proxy.stores.base import Entry
from proxy.upstream import DECODABLE_ENCODINGS, Upstream, response_headers
from proxy.validate import EmbeddingRequest

ROUTE = "embeddings"
EMBEDDINGS_PATH = "/embeddings"


class EmbeddingPipeline:
    def __init__(self, cache: Cache, upstream: Upstream, metrics: Metrics) -> None:
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics

    async def handle(
        self,
        request: EmbeddingRequest,
        raw: bytes,
        *,
        namespace: str,
        control: CacheControl,
        headers: Iterable[tuple[bytes, bytes]],
        query: bytes,
    ) -> Response:
        headers = list(headers)
        url = self._upstream.url(EMBEDDINGS_PATH, query)
        if control.bypass:
            self._metrics.request(ROUTE, "bypass")
            response = await self._upstream.send(
                "POST",
                url,
                headers=self._upstream.forward_headers(headers),
                content=raw,
            )
            return relay(self._upstream, response, extra_headers=cache_headers("BYPASS"))

        keys = [embedding_key(namespace, request.body, item) for item in request.items]
        found = await self._lookup(keys, control)
        missing = [i for i, entry in enumerate(found) if entry is None]
        hits = len(keys) - len(missing)
        self._metrics.embedding_items["hit"] += hits
        self._metrics.embedding_items["miss"] += len(missing)

        model = request.model
        if missing:
            self._metrics.request(ROUTE, "miss")
            if len(missing) < len(keys):
                raw = orjson.dumps({**request.body, "input": [request.items[i] for i in missing]})
            response = await self._upstream.send(
                "POST",
                url,
                headers=self._upstream.forward_headers(
                    headers, accept_encoding=DECODABLE_ENCODINGS
                ),
                content=raw,
            )
            body = await self._upstream.read(response)
            fresh = _parse_vectors(response.status_code, body, len(missing))
            if fresh is None:
                # An error or an answer we cannot take apart: relay it as it is, store nothing.
                return raw_response(
                    body,
                    response.status_code,
                    [*response_headers(response, decoded=True), *cache_headers("MISS")],
                )
            vectors, token_counts, upstream_model = fresh
            model = upstream_model or model
            new_entries = [
                self._cache.new_entry(vector.tobytes(), tokens=tokens)
                for vector, tokens in zip(vectors, token_counts, strict=True)
            ]
            for i, entry in zip(missing, new_entries, strict=True):
                found[i] = entry
            if control.store:
                await self._save([keys[i] for i in missing], new_entries, control)
        else:
            self._metrics.request(ROUTE, "hit")
            self._metrics.hit("exact", sum(e.tokens for e in found if e is not None))

        entries = [e for e in found if e is not None]
        assert len(entries) == len(keys)
        tokens = sum(e.tokens for e in entries)
        out = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encode(e.body, request.base64)}
                for i, e in enumerate(entries)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        state = "MISS" if missing else "HIT"
        extra = [(b"x-cache-hit-items", f"{hits}/{len(keys)}".encode())]
        if not missing:
            extra.append((b"x-cache-lookup", b"exact"))
        body_out = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
        return raw_response(body_out, 200, [JSON, (b"x-cache", state.encode()), *extra])

    async def _lookup(self, keys: Sequence[str], control: CacheControl) -> list[Entry | None]:
        if not control.lookup:
            return [None] * len(keys)
        found = await asyncio.gather(*(self._cache.get(k) for k in keys))
        now = self._cache.clock()
        return [
            e if e is not None and is_fresh(now - e.created_at, control) else None for e in found
        ]

    async def _save(
        self, keys: Sequence[str], entries: Sequence[Entry], control: CacheControl
    ) -> None:
        await asyncio.gather(
            *(
                self._cache.put(k, e, control.ttl_seconds, kind="embedding")
                for k, e in zip(keys, entries, strict=True)
            )
        )


def _parse_vectors(
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
        vector = _decode(item.get("embedding"))
        if vector is None:
            return None
        vectors[index] = vector
    usage = answer.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = answer.get("model")
    done = [v for v in vectors if v is not None]
    return (
        done,
        _share_tokens(total if type(total) is int else 0, done),
        (model if isinstance(model, str) else None),
    )


def _decode(value: object) -> np.ndarray[Any, np.dtype[np.float32]] | None:
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


def _encode(data: bytes, as_base64: bool) -> str | np.ndarray[Any, np.dtype[np.float32]]:
    if as_base64:
        return base64.b64encode(data).decode("ascii")
    return np.frombuffer(data, dtype="<f4")


def _share_tokens(total: int, vectors: Sequence[object]) -> list[int]:
    """Split a batch's token count over its items (the upstream reports only the total)."""
    n = len(vectors)
    if n == 0:
        return []
    base, extra = divmod(max(total, 0), n)
    return [base + (1 if i < extra else 0) for i in range(n)]
