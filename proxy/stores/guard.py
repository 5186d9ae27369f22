"""The request path's view of a store: a failure is a miss or a skipped write, never an error.

Failures are counted in :class:`~proxy.metrics.Metrics` and logged at most once per
``LOG_EVERY_SECONDS`` so that a dead Redis does not flood the log.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable

from proxy.errors import StoreError
from proxy.metrics import Metrics
from proxy.stores.base import Entry, Store, StoreStats, Vector
from proxy.stores.similarity import Neighbor

log = logging.getLogger("semcache.cache")
LOG_EVERY_SECONDS = 10.0
FAILING_WINDOW_SECONDS = 60.0
FAILURES_KEPT = 1000


class Cache:
    def __init__(
        self, store: Store, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.clock = clock
        self._metrics = metrics
        self._last_logged = float("-inf")
        self._suppressed = 0
        self._failed_at: deque[float] = deque(maxlen=FAILURES_KEPT)

    @property
    def shared(self) -> bool:
        """Other processes use the store too: see :attr:`Store.shared`."""
        return self.store.shared

    def new_entry(
        self,
        body: bytes,
        *,
        tokens: int = 0,
        completion_tokens: int = 0,
        replay: bytes = b"",
        meta: bytes = b"",
    ) -> Entry:
        return Entry(
            # From the OS, not a seeded ``random.Random``: a client sees the id of every entry
            # it is served, and 312 of a Mersenne Twister's give away every later one, another
            # tenant's included. A getrandom() call costs about 0.2 µs more per stored entry.
            id=os.urandom(8).hex(),
            body=body,
            created_at=self.clock(),
            tokens=tokens,
            replay=replay,
            completion_tokens=completion_tokens,
            meta=meta,
        )

    async def get(self, key: str) -> Entry | None:
        try:
            return await self.store.get(key)
        except StoreError as exc:
            self._failed("get", exc)
            return None

    async def put(self, key: str, entry: Entry, ttl_seconds: float, *, kind: str) -> bool:
        try:
            await self.store.put(key, entry, ttl_seconds)
        except StoreError as exc:
            self._failed("put", exc)
            return False
        self._metrics.stores[kind] += 1
        return True

    async def nearest(
        self, partition: str, vector: Vector, *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        try:
            return await self.store.nearest(partition, vector, k=k, min_similarity=min_similarity)
        except StoreError as exc:
            self._failed("nearest", exc)
            return []

    async def add_vector(
        self,
        partition: str,
        key: str,
        vector: Vector,
        text: str,
        ttl_seconds: float,
        *,
        sketch: bytes = b"",
    ) -> None:
        try:
            await self.store.add_vector(partition, key, vector, text, ttl_seconds, sketch=sketch)
        except StoreError as exc:
            self._failed("add_vector", exc)

    async def remove_vector(self, partition: str, key: str) -> None:
        try:
            await self.store.remove_vector(partition, key)
        except StoreError as exc:
            self._failed("remove_vector", exc)

    async def remove_orphan(self, partition: str, key: str) -> None:
        try:
            await self.store.remove_orphan(partition, key)
        except StoreError as exc:
            self._failed("remove_vector", exc)

    async def delete(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StoreError as exc:
            self._failed("delete", exc)

    async def put_ref(self, name: str, data: bytes, ttl_seconds: float) -> None:
        try:
            await self.store.put_ref(name, data, ttl_seconds)
        except StoreError as exc:
            self._failed("put", exc)

    async def get_ref(self, name: str) -> bytes | None:
        try:
            return await self.store.get_ref(name)
        except StoreError as exc:
            self._failed("get", exc)
            return None

    async def incr_counters(self, name: str, deltas: dict[str, int]) -> bool:
        try:
            await self.store.incr_counters(name, deltas)
        except StoreError as exc:
            self._failed("counters", exc)
            return False
        return True

    async def read_counters(self, name: str) -> dict[str, int] | None:
        try:
            return await self.store.read_counters(name)
        except StoreError as exc:
            self._failed("counters", exc)
            return None

    async def supports_vectors(self) -> bool | None:
        """None when the store could not tell (unreachable, misconfigured): a failure of the
        moment must not switch semantic matching off for the life of the process."""
        try:
            return await self.store.supports_vectors()
        except StoreError as exc:
            self._failed("probe", exc)
            return None

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        """True also when the store failed: the caller then leads on its own."""
        try:
            return await self.store.try_lock(key, token, ttl_seconds)
        except StoreError as exc:
            self._failed("lock", exc)
            return True

    async def unlock(self, key: str, token: str) -> None:
        try:
            await self.store.unlock(key, token)
        except StoreError as exc:
            self._failed("unlock", exc)

    async def extend_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        try:
            return await self.store.extend_lock(key, token, ttl_seconds)
        except StoreError as exc:
            self._failed("lock", exc)
            return False

    async def is_locked(self, key: str) -> bool:
        try:
            return await self.store.is_locked(key)
        except StoreError as exc:
            self._failed("lock", exc)
            return False

    async def shared_secret(self, candidate: bytes) -> bytes | None:
        try:
            return await self.store.shared_secret(candidate)
        except StoreError as exc:
            self._failed("secret", exc)
            return None

    async def clear(self) -> int | None:
        """Remove everything; how many keys, or None when the store failed."""
        try:
            return await self.store.clear()
        except StoreError as exc:
            self._failed("clear", exc)
            return None

    async def stats(self) -> StoreStats | None:
        try:
            return await self.store.stats()
        except StoreError as exc:
            self._failed("stats", exc)
            return None

    async def census(self) -> StoreStats | None:
        try:
            return await self.store.census()
        except StoreError as exc:
            self._failed("stats", exc)
            return None

    async def reachable(self) -> bool:
        try:
            await self.store.ping()
        except StoreError as exc:
            self._failed("ping", exc)
            return False
        return True

    def recent_failures(self, seconds: float = FAILING_WINDOW_SECONDS) -> int:
        """Store operations that failed in the last ``seconds`` (at most ``FAILURES_KEPT``)."""
        since = time.monotonic() - seconds
        return sum(1 for at in self._failed_at if at >= since)

    def _failed(self, op: str, exc: StoreError) -> None:
        self._metrics.store_errors[op] += 1
        now = time.monotonic()
        self._failed_at.append(now)
        if now - self._last_logged < LOG_EVERY_SECONDS:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since last report)" if self._suppressed else ""
        log.warning("store %s failed, serving uncached: %s%s", op, exc, more)
        self._last_logged = now
        self._suppressed = 0
