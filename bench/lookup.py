"""Semantic lookup latency: nearest-neighbour search in one partition of N entries.

    python bench/lookup.py [--entries 1000,10000,100000] [--dims 384] [--store memory|redis|both]
                           [--queries 300] [--json]

Fills one partition with N random unit vectors (the store's own add path), then times
``Store.nearest`` for queries that each have one true neighbour at cosine ~0.95 (so every
search finds a candidate and scores it), at the proxy's default threshold. Redis: a
``redis-server`` >= 8 is started on a free loopback port (vector sets as RedisStore writes
them: projected, Q8, 32 links per node, with the float32 vector in the attributes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.settings import Settings  # noqa: E402
from proxy.stores.base import Entry, Store  # noqa: E402
from proxy.stores.memory import MemoryStore  # noqa: E402
from proxy.stores.redis import RedisStore  # noqa: E402
from proxy.stores.vectorset import VECTOR_SET, vector_add_command  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402

PARTITION = "sem:bench:partition"
PREFIX = "bench:"
FILL_CONNECTIONS = 4
FILL_BATCH = 100


def unit_rows(rng: np.random.Generator, n: int, dims: int) -> np.ndarray[Any, Any]:
    rows = rng.standard_normal((n, dims)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


async def fill(store: Store, rows: np.ndarray[Any, Any], redis_url: str | None) -> float:
    """The memory store through its own add path; Redis with the VADD RedisStore.add_vector
    sends, pipelined (one round trip per row would only time the network)."""
    started = time.perf_counter()
    if redis_url is None:
        entry = Entry(id="0" * 16, body=b"{}", created_at=0.0)
        for i, row in enumerate(rows):
            key = f"chat:bench:{i}"
            await store.put(key, entry, 3600)
            await store.add_vector(PARTITION, key, row, f"question {i}", 3600)
    else:
        keys = [f"chat:bench:{i}" for i in range(len(rows))]
        texts = [f"question {i}" for i in range(len(rows))]
        await fill_vector_set(redis_url, rows, keys, texts)
    return time.perf_counter() - started


async def fill_vector_set(
    redis_url: str, rows: np.ndarray[Any, Any], keys: list[str], texts: list[str]
) -> None:
    """Pipelined batches on FILL_CONNECTIONS connections at once: VADD ... CAS searches for
    an element's neighbours in a Redis thread, so concurrent batches use both cores."""
    vset = PREFIX + VECTOR_SET + PARTITION
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(FILL_CONNECTIONS)]

    async def batches(worker: int) -> None:
        client = clients[worker]
        for start in range(worker * FILL_BATCH, len(rows), FILL_BATCH * FILL_CONNECTIONS):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(start, min(start + FILL_BATCH, len(rows))):
                    pipe.execute_command(*vector_add_command(vset, keys[i], rows[i], texts[i]))
                await pipe.execute()

    try:
        async with anyio.create_task_group() as tg:
            for worker in range(FILL_CONNECTIONS):
                tg.start_soon(batches, worker)
    finally:
        for client in clients:
            await client.aclose()


async def measure(
    store: Store, rows: np.ndarray[Any, Any], queries: int, seed: int
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    threshold = Settings().similarity
    samples = []
    found = 0
    for _ in range(queries):
        target = rows[rng.integers(len(rows))]
        noise = rng.standard_normal(rows.shape[1]).astype(np.float32)
        query = target + 0.33 * noise / np.linalg.norm(noise)
        query /= np.linalg.norm(query)
        started = time.perf_counter()
        neighbors = await store.nearest(PARTITION, query, k=5, min_similarity=threshold)
        samples.append((time.perf_counter() - started) * 1000)
        found += bool(neighbors)
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "found_share": found / queries,
    }


async def run(sizes: list[int], dims: int, stores: list[str], queries: int) -> dict[str, Any]:
    results: dict[str, Any] = {"dims": dims, "queries": queries, "threshold": Settings().similarity}
    rng = np.random.default_rng(0)
    for kind in stores:
        results[kind] = {}
        for n in sizes:
            rows = unit_rows(rng, n, dims)
            if kind == "memory":
                store: Store = MemoryStore(max_entries=n + 1, max_bytes=1 << 40)
                server = None
            else:
                binary = find_redis_server()
                if binary is None:
                    results[kind] = "skipped: no redis-server >= 8"
                    break
                server = RedisServer(binary).start()
                store = RedisStore.from_url(server.url, prefix=PREFIX, timeout_seconds=5.0)
            try:
                fill_seconds = await fill(store, rows, None if server is None else server.url)
                figures = await measure(store, rows, queries, seed=n)
                figures["fill_seconds"] = fill_seconds
                results[kind][str(n)] = figures
            finally:
                await store.close()
                if server is not None:
                    server.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", default="1000,10000,100000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(x) for x in args.entries.split(",")]
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    results = anyio.run(run, sizes, args.dims, stores, args.queries)
    if args.json:
        print(orjson.dumps(results).decode())
        return
    print(f"nearest() in one partition, {args.dims} dims, threshold {results['threshold']}")
    for kind in stores:
        if not isinstance(results[kind], dict):
            print(f"{kind}: {results[kind]}")
            continue
        for n, f in results[kind].items():
            print(
                f"{kind:<7}{int(n):>9,} entries  p50 {f['p50_ms']:6.3f} ms"
                f"  p99 {f['p99_ms']:6.3f} ms  found {f['found_share']:.2f}"
                f"  (fill {f['fill_seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()
