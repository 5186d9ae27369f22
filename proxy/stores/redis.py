"""Shared store on Redis (standalone, cluster or sentinel: :mod:`proxy.stores.redis_clients`):
one string key per entry, written with its expiry.

Key layout. On a cluster every command and script touches exactly one key (no MGET, no
multi-key Lua, no MULTI; standalone and sentinel, one script removes an orphan row only while
its entry is absent, :meth:`RedisStore.remove_orphan`), so on a Redis Cluster no two keys need
to share a slot and no key carries a hash tag: keys spread over every master, and one tenant or
partition never pins one master. A vector set's elements name entry keys, but the set is
searched (VSIM) and the entry read (GET) by two commands, each routed to its own slot's master.

    <prefix>chat:<namespace>:<sha256>   a chat completion entry
    <prefix>emb:<namespace>:<sha256>    one embedding vector
    <prefix>lock:chat:<namespace>:<sha>  a short lock: one replica calls the upstream
    <prefix>secret                      the namespace secret when SEMCACHE_SECRET is unset
    <prefix>ref:<entry id>              where an entry lives, for POST /cache/feedback
    <prefix>counters:<group>            a hash of counters: the adaptive thresholds' evidence
    <prefix>vset-rq8m32:<partition>     a Redis 8 vector set: one element per entry of the
                                        partition (element = entry key, attribute = its text)

(and cmpl:, resp:, oll: entries as chat: ones). A flush removes the entries, their locks,
refs and vector sets, and nothing else under the prefix: another deployment's prefix may
extend this one (``semcache:staging:`` under ``semcache:``), and its keys are not ours.

Values are packed :class:`Entry` bytes. A vector set expires with the latest entry added to
it; an element whose entry expired earlier is removed the first time a search finds it (unless
the entry was stored again meanwhile: the check and the removal are one script).

A failure becomes a ``StoreError``; an outage rests the store (:mod:`proxy.stores.redis_failures`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

from proxy.errors import StoreError
from proxy.stores.base import Entry, Listed, StoreStats, Vector, pack_entry, unpack_entry
from proxy.stores.redis_clients import Clients, HotClient, connect
from proxy.stores.redis_failures import FAILURES, Failures
from proxy.stores.redis_walk import ENTRY_PREFIXES, Walk, glob_escape, text_of
from proxy.stores.resp import Reply
from proxy.stores.similarity import Neighbor
from proxy.stores.vectorset import (
    SEARCH_CONNECTIONS,
    VECTOR_SET,
    VECTOR_SET_FORMATS,
    neighbors_from_reply,
    unit_query,
    vector_add_command,
    vector_search_command,
)

log = logging.getLogger("semcache.cache")

REF = "ref:"
LOCK = "lock:"
COUNTERS = "counters:"
"""Key infix of a counter group's hash (the adaptive thresholds' evidence)."""
OWN_FAMILIES = (*ENTRY_PREFIXES, *(LOCK + p for p in ENTRY_PREFIXES), REF, *VECTOR_SET_FORMATS)
"""The keys :meth:`RedisStore.clear` removes, after the prefix: entries, their locks, refs and
vector sets (of every format an earlier version wrote too). Not the secret or the counters."""
COUNTERS_TTL_SECONDS = 30 * 86_400
"""A counter hash not added to for 30 days expires."""


class RedisStore:
    shared = True

    def __init__(
        self,
        clients: Clients,
        *,
        prefix: str,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._client = clients.client
        self._entries = clients.entries
        """The hot path's client: entry GET and SET, locks (standalone: the lean one)."""
        self._searches: Sequence[HotClient] = tuple(clients.searches)
        """Clients for VSIM, standalone each on a connection of its own: Redis answers a
        connection's commands in order, and a search holds its connection for about a
        millisecond, so searches go neither on the entries' connection nor all on one."""
        self._prefix = prefix
        self._failures = Failures(retry_seconds=retry_seconds, clock=clock)
        self._walk = Walk(clients.client, prefix, clock)
        """The admin API's reads of every entry: pages, one entry, the census."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        timeout_seconds: float,
        cluster: bool = False,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> RedisStore:
        clients = connect(
            url,
            cluster=cluster,
            timeout_seconds=timeout_seconds,
            search_connections=SEARCH_CONNECTIONS,
        )
        return cls(clients, prefix=prefix, retry_seconds=retry_seconds, clock=clock)

    @property
    def kind(self) -> str:
        """``standalone``, ``cluster`` or ``sentinel``."""
        return self._clients.kind

    async def get(self, key: str) -> Entry | None:
        with self._failures:
            data = await self._entries.get(self._prefix + key)
        self._failures.recovered()
        return None if data is None else unpack_entry(data)

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None:
        with self._failures:
            await self._entries.set(
                self._prefix + key, pack_entry(entry), px=max(1, int(ttl_seconds * 1000))
            )
        self._failures.recovered()

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
        vset = self._prefix + VECTOR_SET + partition
        ttl = max(1, math.ceil(ttl_seconds))
        with self._failures:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.execute_command(*vector_add_command(vset, key, vector, text, sketch))
                # A new set has no expiry, which GT treats as infinite: NX sets it first.
                pipe.execute_command("EXPIRE", vset, ttl, "NX")
                pipe.execute_command("EXPIRE", vset, ttl, "GT")
                await pipe.execute()

    async def nearest(
        self, partition: str, vector: Vector, *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        """The graph search ranks by approximate scores; every candidate is then rescored exactly
        from the float32 vector in its attributes, and only exact scores meet the threshold."""
        query = unit_query(vector)
        vset = self._prefix + VECTOR_SET + partition
        client = min(self._searches, key=_pending)  # an idle one when there is one
        with self._failures:
            reply = await client.command(
                *vector_search_command(vset, query, k=k, min_similarity=min_similarity)
            )
        return neighbors_from_reply(reply, query, k=k, min_similarity=min_similarity)

    async def remove_vector(self, partition: str, key: str) -> None:
        with self._failures:
            await self._command("VREM", self._prefix + VECTOR_SET + partition, key)

    async def remove_orphan(self, partition: str, key: str) -> None:
        """One script checks the entry and removes the row, so a writer that stores the entry
        (then its row) between the lookup's GET and this keeps its row. On a cluster the entry
        and the set live in different slots: no script holds both, the row goes unchecked."""
        if isinstance(self._client, RedisCluster):
            await self.remove_vector(partition, key)
            return
        vset = self._prefix + VECTOR_SET + partition
        with self._failures:
            try:
                await self._client.eval(_REMOVE_ORPHAN, 2, self._prefix + key, vset, key)
            except NoPermissionError:  # an ACL without EVAL: the row goes unchecked
                await self._command("VREM", vset, key)

    async def delete(self, key: str) -> None:
        with self._failures:
            await self._client.unlink(self._prefix + key)

    async def put_ref(self, name: str, data: bytes, ttl_seconds: float) -> None:
        with self._failures:
            await self._entries.set(
                self._prefix + REF + name, data, px=max(1, int(ttl_seconds * 1000))
            )

    async def get_ref(self, name: str) -> bytes | None:
        with self._failures:
            return await self._entries.get(self._prefix + REF + name)

    async def incr_counters(self, name: str, deltas: dict[str, int]) -> None:
        """One hash per group, HINCRBY per counter in one pipeline: replicas add up. Each write
        renews the hash's expiry (``COUNTERS_TTL_SECONDS``): a group nobody uses any more (its
        name comes from a request's model) leaves nothing behind for good."""
        key = self._prefix + COUNTERS + name
        with self._failures:
            async with self._client.pipeline(transaction=False) as pipe:
                for field, delta in deltas.items():
                    pipe.hincrby(key, field, delta)
                pipe.expire(key, COUNTERS_TTL_SECONDS)
                await pipe.execute()

    async def read_counters(self, name: str) -> dict[str, int]:
        with self._failures:
            raw = await self._client.hgetall(self._prefix + COUNTERS + name)
        return {text_of(k): int(v) for k, v in raw.items()}

    async def supports_vectors(self) -> bool:
        """Only an unknown command (Redis before 8, Valkey) or one the ACL denies means no
        vector sets; any other error (a ``MOVED`` from a cluster node reached as a standalone
        server, a timeout) is a store failure, not an answer."""
        with self._failures:
            try:
                await self._command("VCARD", self._prefix + "vset:probe")
            except ResponseError as exc:
                if isinstance(exc, NoPermissionError):
                    # Redis 8 puts the vector set commands in no ACL category: a user granted
                    # categories only (``+@read +@write``) has vector sets it may not use.
                    log.warning(
                        "redis: the ACL user may not run VCARD, so semantic lookup is off; "
                        "vector set commands are in no ACL category: grant them by name "
                        "(+vadd +vsim +vrem +vcard)"
                    )
                    return False
                if "unknown command" in str(exc).lower():
                    return False
                raise
        return True

    # Locks sit on the miss path: they go through the lean client too.

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        ttl_ms = b"%d" % max(1, int(ttl_seconds * 1000))
        lock = self._lock_key(key)
        return await self._locking(b"SET", lock, token.encode(), b"NX", b"PX", ttl_ms) is not None

    async def unlock(self, key: str, token: str) -> None:
        await self._locking(b"EVAL", _UNLOCK, b"1", self._lock_key(key), token.encode())

    async def extend_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        ttl_ms = b"%d" % max(1, int(ttl_seconds * 1000))
        lock = self._lock_key(key)
        return bool(await self._locking(b"EVAL", _EXTEND, b"1", lock, token.encode(), ttl_ms))

    async def is_locked(self, key: str) -> bool:
        return bool(await self._locking(b"EXISTS", self._lock_key(key)))

    def _lock_key(self, key: str) -> bytes:
        return (self._prefix + LOCK + key).encode()

    async def _locking(self, *command: bytes) -> Reply:
        with self._failures:
            return await self._entries.command(*command)

    async def shared_secret(self, candidate: bytes) -> bytes:
        key = self._prefix + "secret"
        with self._failures:
            await self._client.set(key, candidate, nx=True)
            kept = await self._client.get(key)
        if not isinstance(kept, bytes) or len(kept) < 16:
            raise StoreError("the stored namespace secret is unusable")
        return kept

    async def ping(self) -> None:
        """Standalone and sentinel: ``INFO cluster`` answers like a PING and tells a cluster
        node reached as a standalone server (each of its keys would answer ``MOVED``); for a
        user whose ACL denies ``INFO`` (``-@dangerous``), a PING, and the server is taken for
        the standalone one it was configured as. A cluster: every node answers PING and the
        cluster's state is ``ok``."""
        try:
            if isinstance(self._client, RedisCluster):
                await self._client.ping(target_nodes=RedisCluster.ALL_NODES)
                state = await self._client.cluster_info()
                if state.get("cluster_state") != "ok":
                    raise StoreError(f"redis cluster state is {state.get('cluster_state')}")
            else:
                try:
                    info = await self._client.info("cluster")
                except NoPermissionError:
                    info = {}
                    await self._client.ping()
                if int(info.get("cluster_enabled", 0)) == 1:
                    self._failures.rest()
                    raise StoreError(
                        "redis: the server is a cluster node; set SEMCACHE_REDIS_CLUSTER=true"
                    )
        except FAILURES as exc:
            raise self._failures.failed(exc) from exc
        self._failures.recovered()

    async def stats(self) -> StoreStats:
        """Whole-database figures (Redis keeps no cheap per-prefix count), summed over the
        masters of a cluster. No bytes (None) when the ACL denies ``INFO`` (``-@dangerous``)."""
        entries = 0
        used: int | None = 0
        with self._failures:
            if isinstance(self._client, RedisCluster):
                await self._client.initialize()  # learns the masters, once
                for node in self._client.get_primaries():
                    entries += int(await self._client.dbsize(target_nodes=node))
                    if used is not None:
                        try:
                            memory = await self._client.info("memory", target_nodes=node)
                        except NoPermissionError:
                            used = None
                        else:
                            used += int(memory.get("used_memory", 0))
            else:
                entries = int(await self._client.dbsize())
                try:
                    used = int((await self._client.info("memory")).get("used_memory", 0))
                except NoPermissionError:
                    used = None
        return StoreStats(entries=entries, bytes=used)

    async def census(self) -> StoreStats:
        """Entries and bytes under this proxy's own prefix (:mod:`proxy.stores.redis_walk`)."""
        with self._failures:
            return await self._walk.census()

    async def clear(self) -> int:
        """SCAN the prefix (on a cluster: every master) and UNLINK key by key, each routed to its
        slot: only the families this store writes (``OWN_FAMILIES``). The namespace secret and
        the counters stay, and so does any other key under the prefix (another deployment's
        whose prefix extends this one, another application's)."""
        removed = 0
        own = tuple((self._prefix + family).encode() for family in OWN_FAMILIES)
        with self._failures:
            async for key in self._client.scan_iter(
                match=glob_escape(self._prefix) + "*", count=500
            ):
                if key.startswith(own):
                    removed += await self._client.unlink(key)
        return removed

    async def scan(self, cursor: str, *, prefix: str, count: int) -> tuple[str, list[Listed]]:
        self._failures.check()
        try:
            return await self._walk.scan(cursor, prefix=prefix, count=count)
        except (*FAILURES, ValueError, IndexError) as exc:
            raise self._failures.failed(exc) from exc

    async def listed(self, key: str) -> Listed | None:
        with self._failures:
            found = await self._walk.listed([self._prefix + key])
        return found[0] if found else None

    async def close(self) -> None:
        await self._clients.aclose()

    async def _command(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)


# Delete the lock only if this token still holds it (one key: fine on a cluster).
_UNLOCK = b"""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# Remove a row only while its entry is absent (standalone and sentinel: two keys, one server).
_REMOVE_ORPHAN = """
if redis.call('exists', KEYS[1]) == 0 then return redis.call('vrem', KEYS[2], ARGV[1]) end
return 0
"""


_EXTEND = b"""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _pending(client: HotClient) -> int:
    return client.pending
