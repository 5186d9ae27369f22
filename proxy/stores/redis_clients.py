"""How the Redis store reaches its server: one standalone server, a Redis Cluster, or the master
a set of Sentinels names. This module builds the clients; :mod:`proxy.stores.redis` uses them.

- **Standalone** (``redis://``, ``rediss://``, ``unix://``): the hot commands (GET, SET, locks,
  VSIM) go through the lean RESP client (:mod:`proxy.stores.resp`), the rest through redis-py.
- **Cluster** (``cluster=True``, any node's ``redis://`` or ``rediss://`` URL): the hot
  commands go through lean RESP clients routed by slot (:mod:`proxy.stores.cluster_routing`),
  the rest through ``redis.asyncio.RedisCluster``; both follow ``MOVED`` and ``ASK``.
- **Sentinel** (``redis+sentinel://[user:pass@]host:port[,host:port...]/service[?db=N]``):
  everything goes through ``redis.asyncio.sentinel.Sentinel.master_for``, whose connections ask
  the sentinels for the master each time they (re)connect, so a failover is followed. The URL's
  user and password are the master's; the sentinels are reached without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.errors import SettingsError
from proxy.redis_urls import SENTINEL_SCHEME, check_url, parse_sentinel_url
from proxy.stores.cluster_routing import ClusterRouter, SlotMap
from proxy.stores.resp import Address, CommandClient, Reply, RespClient


class HotClient(Protocol):
    """What the hot path needs: GET, SET and any command with a plain reply."""

    pending: int
    """Commands asked for and not yet answered."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, px: int) -> None: ...

    async def command(self, *args: bytes) -> Reply: ...

    async def aclose(self) -> None: ...


class PyClient(CommandClient):
    """A redis-py client (cluster or sentinel-managed) as a :class:`HotClient`; its owner closes
    the client itself."""

    def __init__(self, client: aioredis.Redis | RedisCluster) -> None:
        self._client = client
        self.pending = 0

    async def command(self, *args: bytes) -> Reply:
        # redis-py looks commands up by their str name (key positions, reply callbacks).
        name, *rest = args
        self.pending += 1
        try:
            reply: Reply = await self._client.execute_command(name.decode(), *rest)
        finally:
            self.pending -= 1
        return _plain(reply)

    async def aclose(self) -> None:
        return None


def _plain(reply: Any) -> Reply:
    """redis-py turns ``OK`` into True; the lean client's callers expect the RESP value."""
    if reply is True:
        return b"OK"
    return reply  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Clients:
    kind: str
    """``standalone``, ``cluster`` or ``sentinel``."""
    client: aioredis.Redis | RedisCluster
    """redis-py, for everything off the hot path."""
    entries: HotClient
    searches: Sequence[HotClient]
    sentinel: Sentinel | None = None
    slot_map: SlotMap | None = None

    async def aclose(self) -> None:
        await self.entries.aclose()
        for search in self.searches:
            await search.aclose()
        await self.client.aclose()
        if self.slot_map is not None:
            await self.slot_map.aclose()
        if self.sentinel is not None:
            for node in self.sentinel.sentinels:
                await node.aclose()


def _retry() -> Retry:
    # One immediate retry on a fresh connection absorbs a server restart or a failover; no
    # backoff so that a dead server costs one timeout, not several.
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def connect(url: str, *, cluster: bool, timeout_seconds: float, search_connections: int) -> Clients:
    """The clients for ``url``; no I/O happens until they are used."""
    timeouts: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
    }
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        if cluster:
            raise SettingsError("SEMCACHE_REDIS_CLUSTER does not apply to redis+sentinel://")
        sentinels, service, options = parse_sentinel_url(url)
        sentinel = Sentinel(sentinels, sentinel_kwargs=dict(timeouts), **timeouts)
        master = sentinel.master_for(service, redis_class=aioredis.Redis, retry=_retry(), **options)
        hot = PyClient(master)
        return Clients("sentinel", master, hot, (hot,), sentinel)
    if cluster and urlsplit(url).scheme == "unix":
        raise SettingsError("SEMCACHE_REDIS_CLUSTER needs a redis:// or rediss:// URL")
    check_url(url, cluster=cluster)
    try:  # the TLS options (ssl_cert_reqs, ssl_ca_certs...) are read here
        address = Address.from_url(url)
    except (ValueError, OSError, RedisError) as exc:
        raise SettingsError(f"SEMCACHE_REDIS_URL: {exc}") from None
    if cluster:
        nodes = RedisCluster.from_url(url, retry=_retry(), **timeouts)
        slots = SlotMap(address, timeout_seconds=timeout_seconds)
        routers = [ClusterRouter(slots) for _ in range(search_connections)]
        return Clients("cluster", nodes, ClusterRouter(slots), routers, slot_map=slots)
    client = aioredis.Redis.from_url(url, retry=_retry(), **timeouts)
    entries = RespClient(address, timeout_seconds=timeout_seconds)
    searches = [RespClient(address, timeout_seconds=timeout_seconds)
                for _ in range(search_connections)]  # fmt: skip
    return Clients("standalone", client, entries, searches)
