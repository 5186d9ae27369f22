"""Shared store on Redis: one string key per entry, written with its expiry.

Key layout (every command touches one key, so a Redis Cluster can spread them over slots):

    <prefix>chat:<namespace>:<sha256>   a chat completion entry
    <prefix>emb:<namespace>:<sha256>    one embedding vector
    <prefix>lock:chat:<namespace>:<sha>  a short lock: one replica calls the upstream
    <prefix>secret                      the namespace secret when SEMCACHE_SECRET is unset
    <prefix>vset:<partition>            a Redis 8 vector set: one element per entry of the
                                        partition (element = entry key, attribute = its text)

Values are packed :class:`Entry` bytes. A vector set expires with the latest entry added to
it; an element whose entry expired earlier is removed the first time a search finds it.

After a failure the store answers "unavailable" at once for ``retry_seconds`` instead of
waiting on a dead server each request, then tries again; redis-py reconnects by itself.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from proxy.errors import StoreError
from proxy.similarity import Neighbor
from proxy.stores.base import Entry, StoreStats, Vector, pack_entry, unpack_entry
from proxy.stores.resp import Address, Reply, ReplyError, RespClient


class RedisStore:
    shared = True

    def __init__(
        self,
        client: aioredis.Redis,
        entries: RespClient,
        searches: Sequence[RespClient],
        *,
        prefix: str,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._entries = entries
        """The hot path's own lean client: entry GET and SET, locks."""
        self._searches = tuple(searches)
        """Lean clients for VSIM, each on a connection of its own: Redis answers a connection's
        commands in order, and a search holds its connection for about a millisecond, so
        searches go neither on the entries' connection nor all on one."""
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
        address = Address.from_url(url)
        entries = RespClient(address, timeout_seconds=timeout_seconds)
        searches = [RespClient(address, timeout_seconds=timeout_seconds)
                    for _ in range(SEARCH_CONNECTIONS)]  # fmt: skip
        return cls(
            client, entries, searches, prefix=prefix, retry_seconds=retry_seconds, clock=clock
        )

    async def get(self, key: str) -> Entry | None:
        self._check_available()
        try:
            data = await self._entries.get(self._prefix + key)
        except (ReplyError, OSError) as exc:
            raise self._failed(exc) from exc
        self._down_until = 0.0
        return None if data is None else unpack_entry(data)

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> None:
        self._check_available()
        try:
            await self._entries.set(
                self._prefix + key, pack_entry(entry), px=max(1, int(ttl_seconds * 1000))
            )
        except (ReplyError, OSError) as exc:
            raise self._failed(exc) from exc
        self._down_until = 0.0

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
        self._check_available()
        vset = self._prefix + VECTOR_SET + partition
        ttl = max(1, math.ceil(ttl_seconds))
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.execute_command(*vector_add_command(vset, key, vector, text, sketch))
                # A new set has no expiry, which GT treats as infinite: NX sets it first.
                pipe.execute_command("EXPIRE", vset, ttl, "NX")
                pipe.execute_command("EXPIRE", vset, ttl, "GT")
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc

    async def nearest(
        self, partition: str, vector: Vector, *, k: int, min_similarity: float
    ) -> list[Neighbor]:
        """The graph search ranks by approximate scores; every candidate is then rescored exactly
        from the float32 vector in its attributes, and only exact scores meet the threshold."""
        self._check_available()
        query = _unit(vector)
        vset = self._prefix + VECTOR_SET + partition
        client = min(self._searches, key=_pending)  # an idle one when there is one
        try:
            reply = await client.command(
                *vector_search_command(vset, query, k=k, min_similarity=min_similarity)
            )
        except (ReplyError, OSError) as exc:
            raise self._failed(exc) from exc
        return _neighbors(reply, query, k=k, min_similarity=min_similarity)

    async def remove_vector(self, partition: str, key: str) -> None:
        self._check_available()
        try:
            await self._command("VREM", self._prefix + VECTOR_SET + partition, key)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc

    async def supports_vectors(self) -> bool:
        try:
            await self._command("VCARD", self._prefix + "vset:probe")
        except ResponseError:
            return False  # unknown command: Redis before 8, Valkey
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
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
        return (self._prefix + "lock:" + key).encode()

    async def _locking(self, *command: bytes) -> Reply:
        self._check_available()
        try:
            return await self._entries.command(*command)
        except (ReplyError, OSError) as exc:
            raise self._failed(exc) from exc

    async def shared_secret(self, candidate: bytes) -> bytes:
        self._check_available()
        key = self._prefix + "secret"
        try:
            await self._client.set(key, candidate, nx=True)
            kept = await self._client.get(key)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        if not isinstance(kept, bytes) or len(kept) < 16:
            raise StoreError("the stored namespace secret is unusable")
        return kept

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

    async def clear(self) -> int:
        """SCAN the prefix and UNLINK key by key: no multi-key command, so it works on a
        cluster node by node too. The namespace secret stays."""
        self._check_available()
        removed = 0
        secret = (self._prefix + "secret").encode()
        try:
            async for key in self._client.scan_iter(
                match=_glob_escape(self._prefix) + "*", count=500
            ):
                if key != secret:
                    removed += await self._client.unlink(key)
        except (RedisError, OSError) as exc:
            raise self._failed(exc) from exc
        return removed

    async def close(self) -> None:
        await self._entries.aclose()
        for search in self._searches:
            await search.aclose()
        await self._client.aclose()

    async def _command(self, *args: Any) -> Any:
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def _check_available(self) -> None:
        if self._clock() < self._down_until:
            raise StoreError("redis is unavailable; retrying shortly")

    def _failed(self, exc: Exception) -> StoreError:
        self._down_until = self._clock() + self._retry_seconds
        return StoreError(f"redis: {type(exc).__name__}: {exc}")


# Delete the lock only if this token still holds it (one key: fine on a cluster).
_UNLOCK = b"""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


_EXTEND = b"""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _pending(client: RespClient) -> int:
    return client.pending


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# The graph of a vector set holds each vector projected to a third of its dimensions (VADD
# REDUCE, from 192 dims on) and int8-quantized (Q8): at 100k random 384-dim vectors a search
# took 28-50 % less server time than NOQUANT. Its scores are approximate, so each element's
# attributes also keep its float32 vector and nearest() rescores every candidate exactly: the
# threshold and the order see the exact cosine.
#
# A search costs the graph nodes it visits, about a cache miss each at 100k. With 32 links per
# node (VADD M 32; Redis's default is 16) a narrow search (EF 20; Redis's default is 100) finds
# as many true neighbours in about half the server time. Server time per search (p50, threaded,
# each query once, the formats interleaved, 500 queries each) and neighbours found:
#
#                             M 16, EF 100       M 32, EF 20                 M 32, EF 15
#   100k random 384-dim       2.21 ms, 99.6 %    1.25-1.29 ms, 99.0-99.4 %   1.03 ms, 98.2 %
#   100k MiniLM embeddings    98.0 %             98.4 %                      97.6 %
#
# (MiniLM: 3,000 qqp-dev questions among 97k docstring sentences; found = the exact best
# neighbour above 0.89 of 909 paraphrase queries.) A projection to 64 dims (M 24, EF 20) searched
# in 0.90 ms, but its distances are up to 2.7x the exact ones: EPSILON would admit ~14
# candidates per MiniLM query instead of 1.5.
VECTOR_SET = "vset-rq8m32:"
"""Key infix of a partition's vector set (reduced, Q8, M 32: VADD refuses to mix formats)."""
MIN_REDUCE_DIMS = 192
GRAPH_LINKS = 32
"""VADD M: links per node and layer (twice as many on the bottom layer)."""
SEARCH_EF = 20
"""VSIM EF: candidates the graph search keeps while it explores (at least COUNT)."""
DISTANCE_FACTOR = 3.0
"""EPSILON admits graph distances (1 - approximate cosine) up to this multiple of the largest
exact distance the threshold allows, so that no candidate whose exact cosine reaches the
threshold is cut by its approximate score. The projection scales distances rather than shifting
them, so a fixed cosine margin does not fit every threshold: in 580k random pairs at cosines
0-0.99 the graph's distance was at most 1.87x the exact one, and it put pairs up to 0.30 below
their exact cosine (0.08 at 0.89, 0.26 at 0.5, where the former 0.2 margin cut them); in 2M
pairs of MiniLM embeddings of qqp-dev at most 1.48x."""
QUANTIZATION_SLACK = 0.01
"""Distance added on top: Q8 alone puts an identical vector up to 0.005 away."""
SEARCH_CONNECTIONS = 4
"""Connections for VSIM: as many searches run at once (in Redis threads) before one waits."""
EXTRA_CANDIDATES = 10
"""Candidates beyond k, so that rescoring can reorder near ties of the approximate ranking
(EPSILON keeps the reply short when few candidates are near the threshold)."""


def vector_add_command(
    vset: str, key: str, vector: Vector, text: str, sketch: bytes = b""
) -> tuple[Any, ...]:
    """VADD of one element. CAS finds its graph neighbours in a Redis thread: without it each
    add held Redis's event loop for ~14 ms at 100k (every other command waited). The
    attributes keep the text, the float32 vector and the verifier's sketch."""
    unit = _unit(vector)
    blob = unit.astype("<f4").tobytes()
    fields = {"t": text, "v": base64.b64encode(blob).decode("ascii")}
    if sketch:
        fields["s"] = base64.b64encode(sketch).decode("ascii")
    attributes = orjson.dumps(fields)
    dims = unit.shape[0]
    reduce = ("REDUCE", dims // 3) if dims >= MIN_REDUCE_DIMS else ()
    return (
        "VADD", vset, *reduce, "FP32", blob, key, "Q8", "M", GRAPH_LINKS, "CAS",
        "SETATTR", attributes,
    )  # fmt: skip


def vector_search_command(
    vset: str, query: Vector, *, k: int, min_similarity: float
) -> tuple[bytes, ...]:
    """VSIM for ``query`` (a unit vector); EPSILON bounds 1 - score, and VSIM scores are
    (1 + cosine) / 2, so EPSILON is half the graph distance admitted. The search runs in a Redis
    thread (no NOTHREAD): on Redis's event loop it would hold every other command for its whole
    ~1 ms."""
    distance = DISTANCE_FACTOR * (1.0 - min_similarity) + QUANTIZATION_SLACK
    epsilon = min(1.0, distance / 2)
    return (
        b"VSIM", vset.encode(), b"FP32", query.astype("<f4").tobytes(), b"WITHATTRIBS",
        b"COUNT", b"%d" % (k + EXTRA_CANDIDATES), b"EF", b"%d" % SEARCH_EF,
        b"EPSILON", repr(epsilon).encode(),
    )  # fmt: skip


def _unit(vector: Vector) -> Vector:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return (v / np.float32(norm)).astype(np.float32) if norm > 0 else v


def _neighbors(reply: Any, query: Vector, *, k: int, min_similarity: float) -> list[Neighbor]:
    """The best ``k`` candidates by exact cosine, at or above ``min_similarity``, from VSIM's
    RESP2 reply (element, attributes, element, attributes...). A candidate without a readable
    float32 vector of the query's size is dropped: a missed hit, never a wrong one."""
    if not isinstance(reply, list):
        return []
    items = [(reply[i], reply[i + 1]) for i in range(0, len(reply) - 1, 2)]
    out: list[Neighbor] = []
    for name, attributes in items:
        try:
            fields = orjson.loads(attributes)
            text, encoded = fields["t"], fields["v"]
            vector = np.frombuffer(binascii.a2b_base64(encoded, strict_mode=True), dtype="<f4")
            sketch = binascii.a2b_base64(fields.get("s", ""), strict_mode=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error):
            continue
        if not isinstance(text, str) or vector.shape != query.shape:
            continue
        similarity = float(vector @ query)
        if similarity >= min_similarity:
            key = name.decode() if isinstance(name, bytes) else str(name)
            out.append(Neighbor(key, similarity, text, sketch))
    out.sort(key=lambda n: -n.similarity)
    return out[:k]
