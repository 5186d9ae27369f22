"""Store scaling: lookup latency and memory per entry for one store filled with N entries.

    python -m bench.scaling --store memory|redis --entries N [--dims 384] [--queries 300]
                            [--no-build-vectors]

Runs in a process of its own per store and size (``bench/run.py`` starts one each), so that the
resident-memory growth it reports belongs to this fill alone. Prints one JSON object.

- Entries: N chat keys (``chat:<namespace>:<sha256>``) with a ~1 KB completion body each,
  written through the store's own ``put`` (Redis: pipelined ``SET ... PX``, the same command
  ``RedisStore.put`` sends). ``exact_get_*``: ``Store.get`` of random stored keys.
- Vectors: N unit rows of ``dims`` floats in one partition, one per entry (memory:
  ``add_vector``; Redis: pipelined ``VADD ... REDUCE ... Q8 M 32 CAS SETATTR``, as
  ``add_vector``).
  ``semantic_*``: ``Store.nearest`` as ``bench/lookup.py`` times it (one true neighbour at
  cosine ~0.95 per query, the default threshold); ``semantic_server_mean_ms`` is Redis's own
  time per ``VSIM`` (``INFO commandstats``), the rest of ``semantic_p50_ms`` is the client.
- Memory: resident-set growth of this process (memory store) or Redis ``used_memory`` growth,
  divided by N: ``bytes_per_entry`` for entries alone, then ``vector_bytes_per_entry`` for
  what the semantic row adds. ``overhead_bytes_per_entry`` is what an entry costs beyond its
  body (key, bookkeeping, allocator).

Filling a Redis vector set is slow (HNSW insertion, about 1-5 ms per row here), so a filled set
is kept as an RDB snapshot in ``$TMPDIR/semcache-bench/`` (named by ``SNAPSHOT_VERSION``, which
changes with the vector format) and loaded on later runs; ``--no-build-vectors`` skips the
semantic part when no snapshot is there yet.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import percentile  # noqa: E402
from bench.lookup import PARTITION, PREFIX, fill_vector_set, measure  # noqa: E402
from proxy.stores.base import Entry, pack_entry  # noqa: E402
from proxy.stores.memory import MemoryStore  # noqa: E402
from proxy.stores.redis import RedisStore  # noqa: E402
from proxy.stores.vectorset import VECTOR_SET  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402

CACHE_DIR = Path(tempfile.gettempdir()) / "semcache-bench"
SNAPSHOT_VERSION = 4
"""4: REDUCE + Q8 + M 32 sets with the float32 vector in the attributes (3: M 16; 2: Q8, no
REDUCE; 1: NOQUANT)."""
TTL_SECONDS = 7 * 24 * 3600
NAMESPACE = hashlib.sha256(b"bench").hexdigest()[:32]
GET_SAMPLES = 2000
BATCH = 500
Rows = np.ndarray[Any, np.dtype[np.float32]]

_ANSWER = (
    "The capital of France is Paris. It has been the country's capital for most of its history "
    "and is also its largest city, with about two million inhabitants in the city proper and "
    "more than twelve million in the metropolitan area. Paris is known for the Eiffel Tower, "
    "the Louvre, Notre-Dame and the Seine, and it is a major centre of finance, diplomacy, "
    "commerce, fashion and science. If you are planning a visit, spring and early autumn are "
    "usually the most pleasant seasons; the metro reaches almost every sight within minutes. "
    "Start with the Île de la Cité, walk along the river to the Louvre, and end the day on "
    "Montmartre for the view over the whole city at sunset."
)


def key(i: int) -> str:
    return f"chat:{NAMESPACE}:{hashlib.sha256(i.to_bytes(8, 'little')).hexdigest()}"


def prompt(i: int) -> str:
    return f"What is the capital of France, and what should I see there first? (variant {i})"


def completion(i: int) -> bytes:
    """A typical ~1 KB chat completion, distinct per entry, sized exactly as the upstream's
    bytes the proxy stores for a non-streamed miss."""
    return bytes(memoryview(orjson.dumps(completion_object(i))))


def completion_object(i: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{i:012d}",
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"{_ANSWER}({i})"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 121, "total_tokens": 140},
        "system_fingerprint": "fp_0ba0d124f1",
    }


def unit_rows(n: int, dims: int, seed: int) -> Rows:
    """Like ``bench.lookup.unit_rows``, generated as float32 directly (1M x 384 fits easily)."""
    rows = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def rss_bytes() -> int:
    """Resident set size, after handing free heap back to the OS so that growth from here on
    is new memory rather than reuse of what earlier garbage left behind."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def time_gets(get: Callable[[str], Awaitable[Entry | None]], n: int) -> dict[str, float]:
    rng = np.random.default_rng(n + 1)
    samples = []
    for i in rng.integers(n, size=GET_SAMPLES):
        k = key(int(i))
        started = time.perf_counter()
        entry = await get(k)
        samples.append((time.perf_counter() - started) * 1000)
        assert entry is not None, f"{k} was not found"
    return {
        "exact_get_p50_ms": statistics.median(samples),
        "exact_get_p99_ms": percentile(samples, 0.99),
    }


# -- memory store -------------------------------------------------------------------------------


async def memory_store(n: int, dims: int, queries: int) -> dict[str, Any]:
    rows = unit_rows(n, dims, seed=n)
    store = MemoryStore(max_entries=n + 1, max_bytes=1 << 42)
    now = time.time()
    keys: list[str] = []  # the proxy hands one key object to put and to add_vector
    payload = 0
    before = rss_bytes()
    started = time.perf_counter()
    for i in range(n):
        body = completion(i)
        payload += len(body)
        keys.append(key(i))
        entry = Entry(id=secrets.token_hex(8), body=body, created_at=now, tokens=140)
        await store.put(keys[i], entry, TTL_SECONDS)
    fill_seconds = time.perf_counter() - started
    with_entries = rss_bytes()
    started = time.perf_counter()
    for i in range(n):
        await store.add_vector(PARTITION, keys[i], rows[i], prompt(i), TTL_SECONDS)
    vector_fill_seconds = time.perf_counter() - started
    with_vectors = rss_bytes()
    out: dict[str, Any] = {
        "payload_bytes": payload / n,
        "bytes_per_entry": (with_entries - before) / n,
        "vector_bytes_per_entry": (with_vectors - with_entries) / n,
        "fill_seconds": fill_seconds,
        "vector_fill_seconds": vector_fill_seconds,
    }
    out |= await time_gets(store.get, n)
    out |= semantic(await measure(store, rows, queries, seed=n))
    await store.close()
    return out


async def entry_kinds(samples: int = 2000) -> dict[str, float]:
    """Traced bytes per entry of a memory store holding entries made as the proxy makes them:
    from a non-streamed miss (the upstream's bytes, exact size) and from a streamed miss
    (``orjson.dumps`` of the assembled completion plus ``orjson.dumps`` of its replay
    boundaries, as ``ChatPipeline._store`` does)."""
    out: dict[str, float] = {}
    now = time.time()
    for kind in ("plain", "streamed"):
        store = MemoryStore(max_entries=samples + 1, max_bytes=1 << 42)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(samples):
            if kind == "plain":
                body, replay = completion(i), b""
            else:
                obj = completion_object(i)
                words = obj["choices"][0]["message"]["content"].split(" ")
                body = orjson.dumps(obj)
                replay = orjson.dumps({"0": {"content": [len(w) + 1 for w in words]}})
            entry = Entry(secrets.token_hex(8), body, now, tokens=140, replay=replay)
            await store.put(key(i), entry, TTL_SECONDS)
        out[f"{kind}_traced_bytes_per_entry"] = (
            tracemalloc.get_traced_memory()[0] - before
        ) / samples
        tracemalloc.stop()
        await store.close()
    return out


def semantic(figures: dict[str, float]) -> dict[str, float]:
    return {
        "semantic_p50_ms": figures["p50_ms"],
        "semantic_p99_ms": figures["p99_ms"],
        "semantic_found_share": figures["found_share"],
    }


# -- Redis --------------------------------------------------------------------------------------


def snapshot_path(n: int, dims: int) -> Path:
    return CACHE_DIR / f"vset-v{SNAPSHOT_VERSION}-{n}x{dims}-seed{n}.rdb"


async def used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def fill_vectors(redis_url: str, rows: Rows) -> None:
    """The VADD RedisStore.add_vector sends, pipelined on a few connections at once."""
    n = len(rows)
    await fill_vector_set(
        redis_url, rows, [key(i) for i in range(n)], [prompt(i) for i in range(n)]
    )


async def fill_entries(client: aioredis.Redis, n: int) -> float:
    """``SET <prefix>key <packed entry> PX ttl`` for every entry, as RedisStore.put; returns
    the mean body size."""
    now = time.time()
    payload = 0
    for start in range(0, n, BATCH):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + BATCH, n)):
                body = completion(i)
                payload += len(body)
                entry = Entry(id=secrets.token_hex(8), body=body, created_at=now, tokens=140)
                pipe.set(PREFIX + key(i), pack_entry(entry), px=TTL_SECONDS * 1000)
            await pipe.execute()
    return payload / n


async def redis_store(n: int, dims: int, queries: int, build_vectors: bool) -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        return {"skipped": "no redis-server >= 8"}
    rows = unit_rows(n, dims, seed=n)
    snapshot = snapshot_path(n, dims)
    workdir = Path(tempfile.mkdtemp(prefix="semcache-bench-redis-"))
    extra: tuple[str, ...] = ()
    if snapshot.exists():
        shutil.copy(snapshot, workdir / "dump.rdb")
        extra = ("--dir", str(workdir), "--dbfilename", "dump.rdb")
    server = RedisServer(binary, extra_args=extra, ready_timeout=60).start()
    # SAVE of a 100k-vector set takes longer than redis-py's default 5 s timeout
    client = aioredis.Redis.from_url(server.url, socket_timeout=600)
    store = RedisStore.from_url(server.url, prefix=PREFIX, timeout_seconds=10.0)
    out: dict[str, Any] = {}
    try:
        vset = PREFIX + VECTOR_SET + PARTITION
        have_vectors = int(await client.execute_command("VCARD", vset)) == n  # type: ignore[no-untyped-call]
        sidecar = snapshot.with_suffix(".json")
        if have_vectors and sidecar.exists():
            out |= orjson.loads(sidecar.read_bytes()) | {"vectors_from_snapshot": True}
        elif build_vectors:
            await client.flushall()
            before = await used_memory(client)
            started = time.perf_counter()
            await fill_vectors(server.url, rows)
            built = {
                "vector_bytes_per_entry": (await used_memory(client) - before) / n,
                "vector_fill_seconds": time.perf_counter() - started,
            }
            out |= built | {"vectors_from_snapshot": False}
            await save_snapshot(client, snapshot, built)
            have_vectors = True
        before = await used_memory(client)
        started = time.perf_counter()
        payload = await fill_entries(client, n)
        out["fill_seconds"] = time.perf_counter() - started
        out["payload_bytes"] = payload
        out["bytes_per_entry"] = (await used_memory(client) - before) / n
        out |= await time_gets(store.get, n)
        if have_vectors:
            await client.config_resetstat()
            out |= semantic(await measure(store, rows, queries, seed=n))
            out["semantic_server_mean_ms"] = await vsim_server_ms(client)
        else:
            out["semantic_skipped"] = (
                f"no snapshot of {n:,} vectors yet (a full run builds it once; "
                f"HNSW insertion takes minutes at this size)"
            )
    finally:
        await store.close()
        await client.aclose()
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


async def vsim_server_ms(client: aioredis.Redis) -> float:
    """Redis's own mean time per VSIM since the last CONFIG RESETSTAT, its search thread
    included: what the lookup costs before the reply leaves the server."""
    stats = await client.info("commandstats")
    return float(stats["cmdstat_VSIM"]["usec_per_call"]) / 1000


async def save_snapshot(client: aioredis.Redis, snapshot: Path, figures: dict[str, Any]) -> None:
    """Keep the filled vector set (alone, before the entries are written) for later runs."""
    await client.save()
    directory = str((await client.config_get("dir"))["dir"])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = snapshot.with_suffix(".partial")
    shutil.copy(Path(directory) / "dump.rdb", partial)
    partial.replace(snapshot)
    snapshot.with_suffix(".json").write_bytes(orjson.dumps(figures))


# -----------------------------------------------------------------------------------------------


async def run(store: str, n: int, dims: int, queries: int, build_vectors: bool) -> dict[str, Any]:
    if store == "memory":
        out = await memory_store(n, dims, queries) | await entry_kinds()
    else:
        out = await redis_store(n, dims, queries, build_vectors)
    if "bytes_per_entry" in out:
        out["overhead_bytes_per_entry"] = out["bytes_per_entry"] - out["payload_bytes"]
    return {"store": store, "entries": n, "dims": dims, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["memory", "redis"], required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-build-vectors", action="store_true")
    args = parser.parse_args()
    result = anyio.run(
        run, args.store, args.entries, args.dims, args.queries, not args.no_build_vectors
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
