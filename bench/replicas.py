"""Exact-hit throughput through a real HAProxy for 1, 2 and 4 ``semcache serve`` processes.

    .venv/bin/python bench/replicas.py [--json] [--counts 1,2,4] [--rounds R] [--seconds S]
                                       [--generator auto|wrk|python]

Everything runs on loopback and is stopped on exit: the fake upstream (a process of its own),
one ``redis-server``, and for each count a set of replicas behind HAProxy (round-robin, as in
``tests/support/balancer.py``), on the Redis store (the replicas share one cache) and on the
memory store (each process its own cache, warmed one by one: processes scaling, not a shared
cache). One hit prompt is loaded at 64 connections through the balancer, in rounds that
interleave every set so that drift on a shared machine hits all alike, plus one process
without the balancer (what the balancer costs). Reported per set: requests/s, p50/p99, the
cores used by the semcache processes, HAProxy, Redis and the load generator (CPU seconds per
wall second of the load, from /proc), and requests/s per core used by the semcache processes;
``other``: cores busy with anything else over the run (on a shared machine, other work).
On a machine with fewer cores than processes (4 on 2 cores), the processes share cores with
each other, the balancer, Redis and the generator: the figure shows that oversubscription, not
scaling.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from bench.loadgen import Generator, LoadResult, pick  # noqa: E402
from bench.processes import cpu_seconds, machine_cpu_seconds, proxy_pid  # noqa: E402
from bench.scenarios import HIT_PROMPT, cache_stats, chat, chat_load, post  # noqa: E402
from tests.support.balancer import REPLICA_HEADER, find_haproxy  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402
from tests.support.replicas import ReplicaSet  # noqa: E402

CONNECTIONS = 64


class Target:
    """One thing the load is pointed at: a replica set behind the balancer, or one process."""

    def __init__(
        self, name: str, base_url: str, proxies: list[ProxyProcess], extra_pids: dict[str, int]
    ):
        self.name = name
        self.base_url = base_url
        self.proxies = proxies
        self.extra_pids = extra_pids
        """Other processes whose CPU is reported (``balancer``, ``redis``)."""
        self.results: list[LoadResult] = []
        self.cpu: list[dict[str, float]] = []

    def pids(self) -> dict[str, list[int]]:
        out = {"semcache": [proxy_pid(p) for p in self.proxies]}
        out.update({k: [pid] for k, pid in self.extra_pids.items()})
        return out

    def exact_hits(self) -> int:
        return sum(int(cache_stats(p)["hits_by_lookup"].get("exact", 0)) for p in self.proxies)


def warm(target: Target, store: str, body: bytes) -> None:
    """The prompt stored (in each process for the memory store) and every process serving it as
    a hit through the balancer."""
    if store == "memory":
        for proxy in target.proxies:
            post(proxy.base_url, body)
    else:
        post(target.base_url, body)
    seen = set()
    for _ in range(2 * len(target.proxies)):
        answer = post(target.base_url, body)
        assert answer.headers["x-cache"] == "HIT", f"{target.name}: no hit: {answer.headers}"
        seen.add(answer.headers.get(REPLICA_HEADER, "direct"))
    if target.name.startswith("replicas"):
        assert len(seen) == len(target.proxies), f"{target.name}: served by {seen}"


def measure(target: Target, generator: Generator, seconds: float, body: bytes) -> None:
    pids = target.pids()
    before = {k: sum(cpu_seconds(p) for p in ps) for k, ps in pids.items()}
    machine, started = machine_cpu_seconds(), time.monotonic()
    result = generator.run(chat_load(target.base_url, body, CONNECTIONS, seconds))
    elapsed, busy = time.monotonic() - started, machine_cpu_seconds() - machine
    used = {k: sum(cpu_seconds(p) for p in ps) - before[k] for k, ps in pids.items()}
    cpu = {k: v / result.seconds for k, v in used.items()}
    cpu["generator"] = result.generator_cpu
    # Whatever else kept the machine busy over the whole run (its start-up included): other
    # sessions' work on a shared machine shows here.
    ours = sum(used.values()) + result.generator_cpu * result.seconds
    cpu["other"] = max(0.0, busy - ours) / elapsed
    target.results.append(result)
    target.cpu.append(cpu)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def figures(target: Target, key: str) -> dict[str, Any]:
    r, cpu = target.results, target.cpu
    rps = median([x.rps for x in r])
    server = median([c["semcache"] for c in cpu])
    out: dict[str, Any] = {
        f"{key}_rps": round(rps, 1),
        f"{key}_p50_ms": round(median([x.p50_ms for x in r]), 2),
        f"{key}_p99_ms": round(median([x.p99_ms for x in r]), 2),
        f"{key}_errors": sum(x.errors for x in r),
        f"{key}_semcache_cores": round(server, 2),
        f"{key}_per_core_rps": round(
            median([x.rps / c["semcache"] for x, c in zip(r, cpu, strict=True) if c["semcache"]]), 1
        ),
        f"{key}_generator_cores": round(median([c["generator"] for c in cpu]), 2),
        f"{key}_other_cores": round(median([c["other"] for c in cpu]), 2),
    }
    for extra in target.extra_pids:
        out[f"{key}_{extra}_cores"] = round(median([c[extra] for c in cpu]), 2)
    return out


def run(
    counts: list[int], rounds: int, seconds: float, generator: Generator, log: Any
) -> dict[str, Any]:
    haproxy = find_haproxy()
    redis_binary = find_redis_server()
    if haproxy is None or redis_binary is None:
        raise SystemExit("bench/replicas.py needs haproxy and a redis-server >= 8")
    body = chat(HIT_PROMPT)
    out: dict[str, Any] = {
        "replicas_cores": os.cpu_count(),
        "replicas_counts": counts,
        "replicas_connections": CONNECTIONS,
        "replicas_rounds": rounds,
        "replicas_seconds": seconds,
        "replicas_generator": generator.name,
        "replicas_balancer": "haproxy, round-robin (tests/support/balancer.py)",
    }
    with ExitStack() as stack:
        upstream = stack.enter_context(UpstreamProcess())
        redis = stack.enter_context(RedisServer(redis_binary))
        redis_pid = redis.pid
        targets: list[tuple[str, Target, str]] = []
        direct = stack.enter_context(ProxyProcess(upstream.url, redis_url=redis.url))
        one = Target("direct", direct.base_url, [direct], {"redis": redis_pid})
        targets.append(("direct_1", one, "redis"))
        for store in ("redis", "memory"):
            for n in counts:
                log(f"starting {n} replica(s) on the {store} store")
                env = {"SEMCACHE_REDIS_PREFIX": f"bench{n}:"}
                replicas = stack.enter_context(
                    ReplicaSet(
                        haproxy,
                        upstream.url,
                        redis.url if store == "redis" else None,
                        count=n,
                        env=env,
                        log_requests=False,
                    )
                )
                extra = {"balancer": replicas.balancer.pid}
                if store == "redis":
                    extra["redis"] = redis_pid
                target = Target(
                    f"replicas {n} {store}",
                    replicas.base_url,
                    list(replicas.proxies.values()),
                    extra,
                )
                suffix = "" if store == "redis" else "_memory"
                targets.append((f"replicas_{n}{suffix}", target, store))
        for _, target, store in targets:
            warm(target, store, body)
            generator.run(
                chat_load(target.base_url, body, CONNECTIONS, 1)
            )  # connections, code paths
        hits_before = {key: t.exact_hits() for key, t, _ in targets}
        for r in range(rounds):
            for _, target, _ in targets:
                log(f"round {r + 1}/{rounds}: {target.name}")
                measure(target, generator, seconds, body)
        for key, target, _ in targets:
            out.update(figures(target, key))
            served = sum(x.requests for x in target.results)
            out[f"{key}_all_hits"] = target.exact_hits() - hits_before[key] >= served
    out["replicas_per_core_rps"] = {str(n): out[f"replicas_{n}_per_core_rps"] for n in counts}
    out["replicas_oversubscribed"] = [n for n in counts if n > (os.cpu_count() or 1)]
    loads = [x for _, t, _ in targets for x in t.results]
    out["generator_cpu_max"] = round(max(x.generator_cpu for x in loads), 2)
    out["generator_saturated"] = any(x.saturated for x in loads)
    return out


def table(out: dict[str, Any], counts: list[int]) -> str:
    rows = [("direct_1", "1 process, no balancer (redis)")]
    rows += [(f"replicas_{n}", f"{n} behind haproxy (redis)") for n in counts]
    rows += [(f"replicas_{n}_memory", f"{n} behind haproxy (memory, own caches)") for n in counts]
    lines = [
        f"exact hits, {out['replicas_connections']} connections, {out['replicas_cores']} cores, "
        f"load: {out['replicas_generator']}",
        f"{'target':<42}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'semcache cores':>16}"
        f"{'req/s/core':>12}{'haproxy':>9}{'redis':>7}{'generator':>11}{'other':>7}",
    ]
    for key, label in rows:
        lines.append(
            f"{label:<42}{out[key + '_rps']:>9,.0f}{out[key + '_p50_ms']:>8.2f}"
            f"{out[key + '_p99_ms']:>8.2f}{out[key + '_semcache_cores']:>16.2f}"
            f"{out[key + '_per_core_rps']:>12,.0f}{out.get(key + '_balancer_cores', 0):>9.2f}"
            f"{out.get(key + '_redis_cores', 0):>7.2f}{out[key + '_generator_cores']:>11.2f}"
            f"{out[key + '_other_cores']:>7.2f}"
        )
    if out["replicas_oversubscribed"]:
        lines.append(
            f"oversubscribed: {out['replicas_oversubscribed']} processes on "
            f"{out['replicas_cores']} cores, with the balancer, Redis and the generator"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    out = run(counts, args.rounds, args.seconds, pick(args.generator), log)
    print(table(out, counts), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
