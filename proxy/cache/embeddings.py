"""``POST /v1/embeddings`` cached per input item.

Each item of ``input`` has its own key (tenant, model, dimensions and every other field that can
change the vector). Hits are answered from the store; the missing items go upstream in one
request and are merged back in the original order. Vectors are stored once as float32 and served
in the format the client asks for (``float`` or ``base64``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import orjson
from starlette.responses import Response

from proxy.cache.answers import (
    JSON,
    cache_headers,
    hit_headers,
    raw_response,
    relay,
    upstream_answer,
)
from proxy.cache.miss import entry_meta, read_limit, relay_unstored
from proxy.canonical import embedding_key
from proxy.metrics import Metrics
from proxy.requests import CacheControl, EmbeddingRequest, is_fresh, json_or_none
from proxy.stores import Cache, Entry
from proxy.upstream import DECODABLE_ENCODINGS, Upstream, response_headers
from proxy.vectors import encode, parse_vectors

ROUTE = "embeddings"
EMBEDDINGS_PATH = "/embeddings"


MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The most of an upstream answer for every input of a request that is read whole to be taken
apart, one entry per input: a full batch of 2,048 inputs of 1,536 dimensions as JSON numbers
is about 63 MB (as base64, 17 MB)."""


def answer_limit(inputs: int, max_entry_bytes: int) -> int:
    """How much of an answer for ``inputs`` inputs is read before it is relayed as it arrives,
    none of its vectors stored: each input's vector is an entry of at most ``max_entry_bytes``,
    and the whole at most :data:`MAX_ANSWER_BYTES` (or one entry's limit, if larger)."""
    return min(inputs * max_entry_bytes, max(max_entry_bytes, MAX_ANSWER_BYTES))


class EmbeddingPipeline:
    def __init__(
        self, cache: Cache, upstream: Upstream, metrics: Metrics, *, max_entry_bytes: int
    ) -> None:
        """``max_entry_bytes``: the largest entry, one input's vector (see
        :func:`answer_limit`)."""
        self._max_entry_bytes = max_entry_bytes
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
            reason = f"bypass:{control.reason}"
            self._metrics.miss_reasons[reason] += 1
            return relay(
                self._upstream, response, extra_headers=cache_headers("BYPASS", reason=reason)
            )

        keys = [embedding_key(namespace, request.body, item) for item in request.items]
        found = await self._lookup(keys, control)
        missing = [i for i, entry in enumerate(found) if entry is None]
        hits = len(keys) - len(missing)
        self._metrics.embedding_items["hit"] += hits
        self._metrics.embedding_items["miss"] += len(missing)

        model = request.model
        reason = "no-entry" if control.lookup else "no-cache"
        relayed: list[tuple[bytes, bytes]] = []
        if missing:
            self._metrics.request(ROUTE, "miss")
            self._metrics.miss_reasons[reason] += 1
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
            status = response.status_code
            extra = cache_headers("MISS", reason=reason)
            if len(missing) == len(keys):
                read = await self._upstream.read_within(
                    response, read_limit(status, answer_limit(len(keys), self._max_entry_bytes))
                )
                if not isinstance(read, bytes):  # too large to store: relayed, not held
                    extra.append((b"x-cache-hit-items", f"0/{len(keys)}".encode()))
                    return await relay_unstored(
                        self._upstream, read, metrics=self._metrics, store=control.store,
                        publish=None, extra_headers=extra,
                    )  # fmt: skip
                body = read
            else:  # merged with the hits: read whole
                body = await self._upstream.read(response)
            fresh = parse_vectors(status, body, len(missing))
            if fresh is None:
                # An error or an answer we cannot take apart: relay it as it is, store nothing.
                return upstream_answer(
                    body, status, [*response_headers(response, decoded=True), *extra]
                )
            vectors, token_counts, upstream_model = fresh
            model = upstream_model or model
            # The upstream's own headers (x-request-id, rate limits...) go with the answer it
            # helped make; the body is semcache's, so its type and length are too.
            relayed = [
                (name, value)
                for name, value in response_headers(response, decoded=True)
                if name != b"content-type"
            ]
            meta = entry_meta(ROUTE, model)
            new_entries = [
                self._cache.new_entry(vector.tobytes(), tokens=tokens, meta=meta)
                for vector, tokens in zip(vectors, token_counts, strict=True)
            ]
            for i, entry in zip(missing, new_entries, strict=True):
                found[i] = entry
            if control.store:
                await self._save([keys[i] for i in missing], new_entries, control)
            if len(missing) == len(keys):
                # Nothing came from the cache: the upstream's answer as it sent it (fields of
                # its own, such as vLLM's id and created, its float spelling, its usage).
                items = (b"x-cache-hit-items", f"0/{len(keys)}".encode())
                return raw_response(
                    body, status, [*response_headers(response, decoded=True), *extra, items]
                )
        else:
            self._metrics.request(ROUTE, "hit")
            self._metrics.hit_items(model, sum(e.tokens for e in found if e is not None))

        entries = [e for e in found if e is not None]
        assert len(entries) == len(keys)
        if not missing:
            model = _made_by(entries[0]) or model
        tokens = sum(e.tokens for e in entries)
        out = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(e.body, request.base64)}
                for i, e in enumerate(entries)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        state = "MISS" if missing else "HIT"
        extra = [(b"x-cache-hit-items", f"{hits}/{len(keys)}".encode())]
        if missing:
            extra.append((b"x-cache-reason", reason.encode()))
        else:
            # As any hit: its age is its oldest item's (the answer is as old as its oldest
            # part), and one item's entry is named (several are not one entry).
            oldest = max(self._cache.clock() - e.created_at for e in entries)
            one = entries[0].id if len(entries) == 1 else None
            extra += hit_headers("exact", oldest, one)
        body_out = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
        return raw_response(body_out, 200, [*relayed, JSON, (b"x-cache", state.encode()), *extra])

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


def _made_by(entry: Entry) -> str | None:
    """The model the upstream named when it made the entry's vector (the request may name an
    alias: ``text-embedding-ada-002`` is answered by ``text-embedding-ada-002-v2``)."""
    meta = json_or_none(entry.meta)
    model = meta.get("model") if isinstance(meta, dict) else None
    return model if isinstance(model, str) and model else None
