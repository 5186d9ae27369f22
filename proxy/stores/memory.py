"""In-process store: a dict in LRU order, bounded by entries and bytes, TTL checked on read,
with a :class:`~proxy.stores.similarity.VectorIndex` per semantic partition.

An entry is kept as one bytes object, its expiry followed by the packed entry (the format the
Redis store writes): a tuple, an :class:`Entry`, its id string and two floats would cost about
200 bytes more per entry. A hit unpacks it, a copy of the body that is cheap next to serving it.

A vector row lives and dies with its entry: eviction, expiry and replacement remove it too.
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio.to_thread

from proxy.stores.base import Entry, Listed, StoreStats, Vector, pack_entry, unpack_entry
from proxy.stores.similarity import INDEX_OVERHEAD_BYTES, Neighbor, VectorIndex

_EXPIRY = struct.Struct("<d")
# What an entry costs beside its key's and its packed value's lengths (the OrderedDict slot and
# node, the str and bytes object headers, the allocator), measured with bench/scaling.py, so
# that the byte bound tracks real memory rather than payload alone.
_SLOT_BYTES = 200
# What a vector row costs beside its text, sketch and key and the index's arrays: its slots in
# the index's id list, text list and row map and in ``_vector_of`` (about 230 bytes measured
# with tracemalloc at 20,000 rows), and the text's and sketch's object headers.
_ROW_BYTES = 300
# Above this many rows a search may take over a millisecond: the scan runs in a worker thread.
OFFLOAD_ROWS = 150_000
MAX_COUNTER_GROUPS = 10_000
"""Counter groups kept (the oldest go first): they are a few hundred bytes each."""
REFS_PER_ENTRY = 2
"""Refs kept per entry the store may hold: an entry's id and the id of the object the upstream
keeps for it (:mod:`proxy.cache.feedback`)."""


class MemoryStore:
    shared = False

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        """key -> expiry, then the packed entry"""
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self._indexes: dict[str, VectorIndex] = {}
        self._vector_of: dict[str, tuple[str, int]] = {}
        """key -> (partition, bytes the row costs beside the index's arrays)"""
        self._index_bytes: dict[str, int] = {}
        """partition -> bytes its index is charged: its arrays at their allocated size (they
        grow ahead of the rows and shrink behind them) and ``INDEX_OVERHEAD_BYTES``"""
        self._counters: dict[str, dict[str, int]] = {}
        self._refs: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        """name -> (expiry, data): small records beside the entries, as many at most"""
        self.evictions = 0

    async def get(self, key: str) -> Entry | None:
        packed = self._entries.get(key)
        if packed is None:
            return None
        if _EXPIRY.unpack_from(packed)[0] <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return unpack_entry(packed, _EXPIRY.size)

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None:
        cost = _cost(key, _EXPIRY.size + entry.size())
        if key in self._entries:
            self._remove(key)  # replaced, or refreshed by an answer too large to keep
        if cost > self._max_bytes:
            return
        packed = pack_entry(entry, lead=_EXPIRY.pack(self._clock() + ttl_seconds))
        assert len(packed) == _EXPIRY.size + entry.size()
        self._entries[key] = packed
        self._bytes += cost
        self._evict()

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
        if key not in self._entries:
            return  # the entry was not kept (too big) or already evicted
        # The key's old row goes first: were it its partition's last, the index would go with
        # it, and the new row must not land in an index no longer in ``_indexes``.
        self._drop_vector(key)
        index = self._indexes.get(partition)
        if index is not None and index.dims != vector.shape[0]:
            for stale in [k for k, (p, _) in self._vector_of.items() if p == partition]:
                self._drop_vector(stale)
            index = self._indexes.get(partition)
        cost = len(text.encode()) + len(sketch) + len(key) + _ROW_BYTES
        if index is not None:
            self._make_room(index, cost)
            if key not in self._entries:
                return  # evicted itself: the bound holds nothing more
            index = self._indexes.get(partition)  # gone if it emptied
        if index is None:
            index = self._indexes[partition] = VectorIndex(vector.shape[0])
        index.add(key, vector, text, sketch)
        self._charge_index(partition, index)
        self._vector_of[key] = (partition, cost)
        self._bytes += cost
        self._evict()

    async def nearest(
        self, partition: str, vector: Vector, *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        index = self._indexes.get(partition)
        if index is None or index.dims != vector.shape[0]:
            return []
        if len(index) < OFFLOAD_ROWS:
            return index.search(vector, k=k, min_similarity=min_similarity)
        rows = await anyio.to_thread.run_sync(index.candidate_rows, vector, min_similarity)
        return index.score(vector, rows, k=k, min_similarity=min_similarity)

    async def remove_vector(self, partition: str, key: str) -> None:
        self._drop_vector(key)

    async def remove_orphan(self, partition: str, key: str) -> None:
        if key not in self._entries:
            self._drop_vector(key)

    async def delete(self, key: str) -> None:
        if key in self._entries:
            self._remove(key)

    async def scan(self, cursor: str, *, prefix: str, count: int) -> tuple[str, list[Listed]]:
        """In key order from ``cursor`` (the last key of the previous page): LRU order moves
        with every hit, key order does not."""
        # The next count + 1 keys in order, without sorting all of them on every page.
        keys = heapq.nsmallest(
            count + 1, (k for k in self._entries if k.startswith(prefix) and k > cursor)
        )
        page: list[Listed] = []
        for key in keys[:count]:
            found = await self.listed(key)
            if found is not None:
                page.append(found)
        return (keys[count - 1] if len(keys) > count else ""), page

    async def listed(self, key: str) -> Listed | None:
        packed = self._entries.get(key)
        if packed is None:
            return None
        left = _EXPIRY.unpack_from(packed)[0] - self._clock()
        if left <= 0:
            self._remove(key)
            return None
        return Listed(key, unpack_entry(packed, _EXPIRY.size), left)

    async def put_ref(self, name: str, data: bytes, ttl_seconds: float) -> None:
        self._refs[name] = (self._clock() + ttl_seconds, data)
        self._refs.move_to_end(name)
        # Two refs at most per entry (its id; the id of the object the upstream keeps for it):
        # a bound of one per entry dropped the id refs of live entries.
        while len(self._refs) > REFS_PER_ENTRY * self._max_entries:
            self._refs.popitem(last=False)

    async def get_ref(self, name: str) -> bytes | None:
        found = self._refs.get(name)
        if found is None or found[0] <= self._clock():
            return None
        return found[1]

    async def incr_counters(self, name: str, deltas: dict[str, int]) -> None:
        counters = self._counters.setdefault(name, {})
        for field, delta in deltas.items():
            counters[field] = counters.get(field, 0) + delta
        if len(self._counters) > MAX_COUNTER_GROUPS:
            del self._counters[next(iter(self._counters))]

    async def read_counters(self, name: str) -> dict[str, int]:
        return dict(self._counters.get(name, {}))

    async def supports_vectors(self) -> bool:
        return True

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        return True  # one process: the in-process single flight already coalesces

    async def unlock(self, key: str, token: str) -> None:
        return None

    async def extend_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        return True

    async def is_locked(self, key: str) -> bool:
        return False

    async def shared_secret(self, candidate: bytes) -> bytes:
        return candidate  # the entries die with the process, and so may the secret

    async def ping(self) -> None:
        return None

    async def stats(self) -> StoreStats:
        return StoreStats(entries=len(self._entries), bytes=self._bytes)

    async def census(self) -> StoreStats:
        """Everything here is this proxy's own: the same as :meth:`stats`."""
        return await self.stats()

    async def clear(self) -> int:
        removed = len(self._entries)
        self._entries.clear()
        self._indexes.clear()
        self._vector_of.clear()
        self._index_bytes.clear()
        self._refs.clear()
        self._bytes = 0
        return removed

    async def close(self) -> None:
        await self.clear()

    def _evict(self) -> None:
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._remove(next(iter(self._entries)))
            self.evictions += 1

    def _make_room(self, index: VectorIndex, cost: int) -> None:
        """Before a full index grows: evict the least recently used entries while its growth
        would not fit the bound, until it fits or a row of this index has gone. At the bound a
        partition's arrays then reuse the rows of evicted entries instead of growing (and an
        eviction frees only an entry's own bytes, not its row of the arrays)."""
        while (
            (growth := index.growth_bytes())
            and self._bytes + growth + cost > self._max_bytes
            and self._entries
        ):
            self._remove(next(iter(self._entries)))
            self.evictions += 1

    def _remove(self, key: str) -> None:
        self._bytes -= _cost(key, len(self._entries.pop(key)))
        self._drop_vector(key)

    def _drop_vector(self, key: str) -> None:
        found = self._vector_of.pop(key, None)
        if found is None:
            return
        partition, cost = found
        index = self._indexes[partition]
        index.remove(key)
        self._bytes -= cost
        if not len(index):
            del self._indexes[partition]
            self._bytes -= self._index_bytes.pop(partition)
        else:
            self._charge_index(partition, index)

    def _charge_index(self, partition: str, index: VectorIndex) -> None:
        """Charge what ``index`` holds now, after a row came or went (its arrays may have grown
        or shrunk)."""
        charge = INDEX_OVERHEAD_BYTES + index.nbytes()
        self._bytes += charge - self._index_bytes.get(partition, 0)
        self._index_bytes[partition] = charge


def _cost(key: str, packed_bytes: int) -> int:
    return len(key) + packed_bytes + _SLOT_BYTES
