"""Cache stores behind one small interface (:class:`~proxy.stores.base.Store`), and the guard
the rest of the code reaches them through (:class:`~proxy.stores.guard.Cache`: a store's
failure is a miss). Code outside ``stores/`` imports only what ``__all__`` names."""

from __future__ import annotations

from proxy.settings import Settings
from proxy.stores.base import Entry, Listed, Store, StoreStats
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore
from proxy.stores.redis import RedisStore
from proxy.stores.similarity import Neighbor

__all__ = [
    "Cache",
    "Entry",
    "Listed",
    "MemoryStore",
    "Neighbor",
    "RedisStore",
    "Store",
    "StoreStats",
    "open_store",
]


def open_store(settings: Settings) -> Store:
    """The store the settings ask for; no I/O happens until it is used."""
    if settings.redis_url is None:
        return MemoryStore(
            max_entries=settings.memory_max_entries, max_bytes=settings.memory_max_bytes
        )
    return RedisStore.from_url(
        settings.redis_url,
        prefix=settings.redis_prefix,
        timeout_seconds=settings.redis_timeout_seconds,
        cluster=settings.redis_cluster,
    )
