"""In-process store: a dict in LRU order, bounded by entries and bytes, TTL checked on read."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from proxy.stores.base import Entry, StoreStats

# Rough cost of the dict slot, key string and Entry object beside the body, so that the byte
# bound tracks real memory rather than payload alone.
_SLOT_BYTES = 200


class MemoryStore:
    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self.evictions = 0

    async def get(self, key: str) -> Entry | None:
        item = self._entries.get(key)
        if item is None:
            return None
        entry, expires_at = item
        if expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None:
        cost = self._cost(key, entry)
        if cost > self._max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (entry, self._clock() + ttl_seconds)
        self._bytes += cost
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1

    async def ping(self) -> None:
        return None

    async def stats(self) -> StoreStats:
        return StoreStats(entries=len(self._entries), bytes=self._bytes)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= self._cost(key, entry)

    @staticmethod
    def _cost(key: str, entry: Entry) -> int:
        return len(key) + entry.size() + _SLOT_BYTES
