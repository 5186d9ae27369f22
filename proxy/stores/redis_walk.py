"""The admin API's walk over a Redis store's entries: a page of them (``SCAN`` plus their values
and lifetimes), one of them, and their census. Not on the request path; raises what the Redis
clients raise, which :class:`~proxy.stores.redis.RedisStore` turns into a ``StoreError``."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from proxy.errors import StoreError
from proxy.stores.base import Listed, StoreStats, unpack_entry

CENSUS_SECONDS = 30.0
CENSUS_SAMPLE = 100
ENTRY_PREFIXES = ("chat:", "emb:", "cmpl:", "resp:", "oll:")
"""The keys that are entries (the rest under the prefix: locks, refs, counters, vector sets,
the secret); the routes of :mod:`proxy.cache.catalog`."""


class Walk:
    def __init__(
        self, client: Redis | RedisCluster, prefix: str, clock: Callable[[], float]
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._census: tuple[float, StoreStats] | None = None

    async def census(self) -> StoreStats:
        """Entries and bytes under this proxy's own prefix (``stats`` counts the whole
        database): every key is counted with ``SCAN`` (every master of a cluster), the bytes
        estimated from ``MEMORY USAGE`` of up to ``CENSUS_SAMPLE`` of them. A walk over every
        key costs the server about a second per million keys, so its result stands for
        ``CENSUS_SECONDS``."""
        now = self._clock()
        if self._census is not None and now - self._census[0] < CENSUS_SECONDS:
            return self._census[1]
        entry_prefixes = tuple((self._prefix + p).encode() for p in ENTRY_PREFIXES)
        count, sample = 0, list[bytes]()
        async for key in self._client.scan_iter(match=glob_escape(self._prefix) + "*", count=1000):
            if key.startswith(entry_prefixes):
                count += 1
                if len(sample) < CENSUS_SAMPLE:
                    sample.append(key)
        sizes = [await self._client.memory_usage(key) for key in sample]
        known = [size for size in sizes if size is not None]
        mean = sum(known) / len(known) if known else 0.0
        found = StoreStats(entries=count, bytes=round(mean * count))
        self._census = (now, found)
        return found

    async def scan(self, cursor: str, *, prefix: str, count: int) -> tuple[str, list[Listed]]:
        """``SCAN`` with the prefix as a pattern, then each key's value and time to live in one
        pipelined round trip. On a cluster each master is scanned in turn; the cursor says
        which (``<master>:<cursor>``)."""
        pattern = glob_escape(self._prefix + prefix) + "*"
        if isinstance(self._client, RedisCluster):
            await self._client.initialize()
            masters = self._client.get_primaries()
            at, _, inner = (cursor or "0:0").partition(":")
            after, keys = await self._client.scan(
                int(inner or 0), match=pattern, count=count, target_nodes=masters[int(at)]
            )
            if isinstance(after, dict):  # redis-py gives the cursor per node scanned
                after = next(iter(after.values()), 0)
            nxt = f"{at}:{after}" if int(after) else (
                f"{int(at) + 1}:0" if int(at) + 1 < len(masters) else ""
            )  # fmt: skip
        else:
            after, keys = await self._client.scan(int(cursor or 0), match=pattern, count=count)
            nxt = "" if int(after) == 0 else str(after)
        return nxt, await self.listed([text_of(k) for k in keys])

    async def listed(self, full_keys: list[str]) -> list[Listed]:
        """Each key's entry and time to live, in one pipelined round trip."""
        if not full_keys:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for key in full_keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        out = []
        for key, data, pttl in zip(full_keys, replies[::2], replies[1::2], strict=True):
            if data is None:
                continue  # gone since the scan
            ttl = None if int(pttl) < 0 else int(pttl) / 1000
            try:
                entry = unpack_entry(data)
            except StoreError:
                continue  # not an entry (another application's key under the prefix)
            out.append(Listed(key.removeprefix(self._prefix), entry, ttl))
        return out


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
