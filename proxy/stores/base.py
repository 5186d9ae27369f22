"""What every store offers: entries (get, put) and, for semantic lookup, vectors grouped by
partition (add_vector, nearest, remove_vector); plus ping, stats, close. Stores only store.

Keys are plain strings (``chat:<namespace>:<sha256>``); a store may prefix them. Values are
:class:`Entry` objects. A vector row names the key of the entry it leads to. A store that
cannot do its job raises :class:`~proxy.errors.StoreError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from proxy.errors import StoreError
from proxy.stores.similarity import Neighbor

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    """16 hex digits, shown to clients in ``X-Cache-Entry-Id``."""
    body: bytes
    """What a hit serves: the completion JSON, or float32 vector bytes for an embedding."""
    created_at: float
    """Unix time of the upstream answer; a hit's ``Age`` is measured from it."""
    tokens: int = 0
    """Tokens a hit saves (the upstream's ``usage.total_tokens``)."""
    replay: bytes = b""
    """How to replay the entry as a stream (chunk boundaries), when it came from one."""
    completion_tokens: int = 0
    """Of ``tokens``, the answer's (``usage.completion_tokens``): priced apart from the
    prompt's by most providers (the dashboard's money saved)."""
    meta: bytes = b""
    """What the admin API shows of the entry without parsing its body: JSON with its route,
    model and the start of the prompt (:func:`proxy.cache.keys.entry_meta`)."""

    def size(self) -> int:
        return len(self.body) + len(self.replay) + len(self.meta) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Listed:
    """An entry as the admin API lists it: where it lives and how long it has left."""

    key: str
    entry: Entry
    ttl_seconds: float | None
    """None: no expiry (or unknown)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    bytes: int | None
    """None: the store cannot tell (a Redis user whose ACL denies ``INFO``)."""


class Store(Protocol):
    shared: bool
    """Other processes use this store too (Redis): a miss then takes a lock that replicas see."""

    async def get(self, key: str) -> Entry | None: ...

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None: ...

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
        """Index ``vector`` (unit length) in ``partition``, leading to the entry at ``key``;
        ``text`` and ``sketch`` come back with it from :meth:`nearest`."""

    async def nearest(
        self, partition: str, vector: Vector, *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        """The best ``k`` rows of ``partition`` with cosine >= ``min_similarity``, best first."""

    async def remove_vector(self, partition: str, key: str) -> None: ...

    async def remove_orphan(self, partition: str, key: str) -> None:
        """Remove ``key``'s row from ``partition`` unless its entry exists: a search found the
        row without its entry, and a writer may have stored both anew since (entry first)."""

    async def delete(self, key: str) -> None:
        """Remove the entry at ``key`` (its vector rows may stay: a search skips orphans)."""

    async def scan(self, cursor: str, *, prefix: str, count: int) -> tuple[str, list[Listed]]:
        """About ``count`` entries whose key starts with ``prefix``, from ``cursor`` (``""``
        first); the next cursor, ``""`` at the end. Like Redis ``SCAN``: an entry present for the
        whole scan comes at least once, one added or removed meanwhile may or may not."""

    async def listed(self, key: str) -> Listed | None:
        """The entry at ``key`` with its time to live, or None."""

    async def put_ref(self, name: str, data: bytes, ttl_seconds: float) -> None:
        """Keep a small record beside the entries (not counted among them)."""

    async def get_ref(self, name: str) -> bytes | None: ...

    async def incr_counters(self, name: str, deltas: dict[str, int]) -> None:
        """Add ``deltas`` to the named group of integer counters (atomic per counter)."""

    async def read_counters(self, name: str) -> dict[str, int]:
        """The named group of counters; empty when none were ever added."""

    async def supports_vectors(self) -> bool:
        """False when the server has no vector search (Redis before 8, Valkey)."""

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Take the lock on ``key`` for ``token`` unless someone holds it (other replicas)."""

    async def unlock(self, key: str, token: str) -> None:
        """Give the lock back if ``token`` still holds it."""

    async def extend_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Keep holding the lock; False once ``token`` no longer holds it."""

    async def is_locked(self, key: str) -> bool: ...

    async def shared_secret(self, candidate: bytes) -> bytes:
        """The secret every process on this store uses: ``candidate`` unless one was kept."""

    async def ping(self) -> None:
        """Raise :class:`StoreError` when the store cannot be reached."""

    async def stats(self) -> StoreStats: ...

    async def census(self) -> StoreStats:
        """Entries and bytes that are this proxy's own (``stats`` may count a whole shared
        database); may be slower, and cached."""

    async def clear(self) -> int:
        """Remove every entry and vector (and nothing else); return how many keys went."""

    async def close(self) -> None: ...


# A packed entry: magic, created_at, tokens, 8-byte id, replay length, completion tokens, meta
# length, then body, replay and meta. SC1 (no completion tokens, no meta) is still read: entries
# written before they were added.
_HEADER = struct.Struct("<3sdQ8sIII")
_MAGIC = b"SC2"
_HEADER_V1 = struct.Struct("<3sdQ8sI")
_MAGIC_V1 = b"SC1"
ENTRY_OVERHEAD_BYTES = _HEADER.size


def pack_entry(entry: Entry, *, lead: bytes = b"") -> bytes:
    """``lead`` (a store's own bookkeeping) goes first, in the same single copy."""
    header = _HEADER.pack(
        _MAGIC,
        entry.created_at,
        entry.tokens,
        bytes.fromhex(entry.id),
        len(entry.replay),
        entry.completion_tokens,
        len(entry.meta),
    )
    return b"".join((lead, header, entry.body, entry.replay, entry.meta))


def unpack_entry(data: bytes, offset: int = 0) -> Entry:
    """The entry packed at ``offset`` of ``data``."""
    magic = data[offset : offset + 3]
    completion_tokens = meta_length = 0
    if magic == _MAGIC and len(data) >= offset + _HEADER.size:
        header = _HEADER.unpack_from(data, offset)
        _, created_at, tokens, raw_id, replay_length, completion_tokens, meta_length = header
        start = offset + _HEADER.size
    elif magic == _MAGIC_V1 and len(data) >= offset + _HEADER_V1.size:
        _, created_at, tokens, raw_id, replay_length = _HEADER_V1.unpack_from(data, offset)
        start = offset + _HEADER_V1.size
    else:
        raise StoreError("stored value is not a semcache entry")
    if start + replay_length + meta_length > len(data):
        raise StoreError("stored entry is truncated")
    meta_start = len(data) - meta_length
    end = meta_start - replay_length
    return Entry(
        id=raw_id.hex(),
        body=data[start:end],
        created_at=created_at,
        tokens=tokens,
        replay=data[end:meta_start],
        completion_tokens=completion_tokens,
        meta=data[meta_start:],
    )
