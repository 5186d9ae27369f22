"""Semantic lookup: embed the last user message, search only its context partition, and accept
a neighbour only above the threshold and past every guard of :mod:`proxy.guards`.

Any failure here (embedder down or slow, store error) means "no semantic hit", never an error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from proxy.cache import Cache
from proxy.embedder import Embedder, EmbedderError, Vector
from proxy.guards import verify
from proxy.keys import semantic_partition, semantic_text
from proxy.metrics import Metrics
from proxy.policy import CacheControl, is_fresh
from proxy.similarity import Neighbor
from proxy.stores.base import Entry

log = logging.getLogger("semcache.semantic")

CANDIDATES = 5
"""Neighbours checked per lookup: the best one may fail a guard where the next passes."""


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    text: str
    partition: str
    vector: Vector


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry: Entry
    similarity: float


def accept(text: str, neighbor: Neighbor, min_similarity: float) -> str | None:
    """None when ``neighbor`` may answer ``text``; else why not (``below_threshold`` or the
    name of the guard that rejected it). Pure."""
    if neighbor.similarity < min_similarity:
        return "below_threshold"
    return verify(text, neighbor.text)


class SemanticCache:
    def __init__(
        self,
        cache: Cache,
        embedder: Embedder | None,
        metrics: Metrics,
        *,
        min_similarity: float,
        max_age_seconds: int | None,
        max_chars: int,
        timeout_seconds: float,
    ) -> None:
        self._cache = cache
        self._embedder = embedder
        self._metrics = metrics
        self._min_similarity = min_similarity
        self._max_age_seconds = max_age_seconds
        self._max_chars = max_chars
        self._timeout_seconds = timeout_seconds
        self.enabled = False
        """Set at startup once the embedder is loaded and the store can search vectors."""

    async def start(self) -> None:
        if self._embedder is None:
            return
        if not await self._cache.supports_vectors():
            log.warning(
                "the store has no vector search (Redis 8 vector sets): semantic lookup is off, "
                "exact caching works as usual"
            )
            return
        try:
            await self._embedder.start()
        except EmbedderError as exc:
            log.warning("embedder %s failed to start, semantic lookup is off: %s", self.name, exc)
            return
        self.enabled = True

    @property
    def name(self) -> str:
        return "off" if self._embedder is None else self._embedder.name

    async def query(
        self, body: dict[str, Any], *, namespace: str, api_key: str | None
    ) -> SemanticQuery | None:
        """Embed the request's last user message; None when it has none to compare, or the
        embedder failed (the request then goes on exact-only)."""
        if not self.enabled or self._embedder is None:
            return None
        text = semantic_text(body, max_chars=self._max_chars)
        if text is None:
            self._metrics.semantic["ineligible"] += 1
            return None
        try:
            async with asyncio.timeout(self._timeout_seconds):  # cheaper than anyio's scope
                vector = await self._embedder.embed(text, namespace=namespace, api_key=api_key)
        except (EmbedderError, TimeoutError) as exc:
            self._metrics.semantic["embedder_errors"] += 1
            log.warning("embedder failed, serving exact-only: %s", exc or "timeout")
            return None
        partition = semantic_partition(namespace, body, self._embedder.name)
        return SemanticQuery(text=text, partition=partition, vector=vector)

    async def lookup(self, query: SemanticQuery, control: CacheControl) -> SemanticHit | None:
        threshold = self._min_similarity
        if control.min_similarity is not None:
            threshold = control.min_similarity
        self._metrics.semantic["lookups"] += 1
        neighbors = await self._cache.nearest(
            query.partition, query.vector, k=CANDIDATES, min_similarity=threshold
        )
        for neighbor in neighbors:
            reason = accept(query.text, neighbor, threshold)
            if reason is not None:
                self._metrics.guard_rejections[reason] += 1
                continue
            entry = await self._cache.get(neighbor.id)
            if entry is None:
                # The entry expired or was evicted before its vector: drop the orphan.
                await self._cache.remove_vector(query.partition, neighbor.id)
                continue
            age = self._cache.clock() - entry.created_at
            too_old = self._max_age_seconds is not None and age > self._max_age_seconds
            if too_old or not is_fresh(age, control):
                self._metrics.semantic["too_old"] += 1
                continue
            return SemanticHit(entry=entry, similarity=neighbor.similarity)
        self._metrics.semantic["no_match"] += 1
        return None

    async def remember(self, query: SemanticQuery, key: str, ttl_seconds: float) -> None:
        await self._cache.add_vector(query.partition, key, query.vector, query.text, ttl_seconds)
