"""Cache stores behind one small interface (:class:`~proxy.stores.base.Store`)."""

from __future__ import annotations

from proxy.settings import Settings
from proxy.stores.base import Entry, Store, StoreStats
from proxy.stores.memory import MemoryStore
from proxy.stores.redis import RedisStore

__all__ = ["Entry", "MemoryStore", "RedisStore", "Store", "StoreStats", "open_store"]


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
