"""Shared store on Redis: one string key per entry, written with its expiry.

Key layout (every command touches one key, so a Redis Cluster can spread them over slots):

    <prefix>chat:<namespace>:<sha256>   a chat completion entry
    <prefix>emb:<namespace>:<sha256>    one embedding vector

Values are packed :class:`Entry` bytes. After a failure the store answers "unavailable" at once for
``retry_seconds`` instead of waiting on a dead server each request, then tries again; redis-py
reconnects by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.errors import StoreError
from proxy.stores.base import Entry, StoreStats, pack_entry, unpack_entry


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._down_until = 0.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        timeout_seconds: float,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> RedisStore:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            # One immediate retry on a fresh connection absorbs a server restart; no backoff so
            # that a dead server costs one timeout, not several.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return cls(client, prefix=prefix, retry_seconds=retry_seconds, clock=clock)

    async def get(self, key: str) -> Entry | None:
        self._check_available()
        try:
            data = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        self._down_until = 0.0
        if data is None:
            return None
        assert isinstance(data, bytes), "the client is created with decode_responses=False"
        return unpack_entry(data)

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None:
        self._check_available()
        try:
            await self._client.set(
                self._prefix + key, pack_entry(entry), px=max(1, int(ttl_seconds * 1000))
            )
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        self._down_until = 0.0

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        self._down_until = 0.0

    async def stats(self) -> StoreStats:
        """Whole-database figures: Redis keeps no cheap per-prefix count."""
        self._check_available()
        try:
            entries = await self._client.dbsize()
            memory = await self._client.info("memory")
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        return StoreStats(entries=int(entries), bytes=int(memory.get("used_memory", 0)))

    async def close(self) -> None:
        await self._client.aclose()

    def _check_available(self) -> None:
        if self._clock() < self._down_until:
            raise StoreError("redis is unavailable; retrying shortly")

    def _failed(self, exc: Exception) -> StoreError:
        self._down_until = self._clock() + self._retry_seconds
        return StoreError(f"redis: {type(exc).__name__}: {exc}")
