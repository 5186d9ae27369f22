"""One command for every performance figure: semcache side by side with the ceiling (and a peer).

    .venv/bin/python bench/run.py [--quick] [--json] [--peers] [--generator auto|wrk|python]

Everything runs on loopback and is stopped on exit. In one run it starts a fake upstream with a
fixed latency (its own process), ``semcache serve`` on the memory store and on Redis (a
``redis-server`` 8 of its own), and the baseline of ``bench/baseline.py``: a bare Starlette app on
uvicorn, served like ``semcache serve``, that answers a fixed completion; no Python proxy can be
faster. Then it measures:

- exact hits at concurrency 64 (req/s, p50/p99) and 1 (p50/p99) for baseline, memory, redis,
  in interleaved rounds (so drift on a shared machine hits all three alike); ratios and added
  p50 are medians of per-round pairs;
- semantic hits (``SEMCACHE_EMBED_MODEL=hash:256``; the prompt is a stored one with its words
  reordered, checked by ``x-cache-lookup: semantic``) at concurrency 1;
- misses with unique prompts through the proxy vs the fake upstream direct, at concurrency 1;
- streamed time to first byte: miss vs direct, and hit;
- both of those through ``bench/floor.py``'s null proxy too (served the same way, semcache's
  HTTP client, no cache logic): what the extra hop alone adds on the machine measuring
  (``miss_added_p50_ms_floor``, ``ttfb_added_ms_floor``);
- store scaling (``bench/scaling.py``, a process per store and size, once the servers are gone):
  ``Store.get`` and ``Store.nearest`` latency and memory per entry with ~1 KB completions;
- the learned verifier (``bench/verifier_cost.py``): time per candidate beyond the embedding
  pass (``verify_p50_ms``) and the sketch bytes stored per entry for it (``sketch_bytes_*``);
- ``--peers``: the exact-hit scenario against the LiteLLM proxy with its in-memory cache, when a
  ``litellm`` command is found (``--litellm PATH``, on PATH or beside this Python).

Load comes from ``wrk`` when installed, else from Python processes (``bench/loadgen.py``); the
output names the generator and how busy it was. Prints a table (to stderr with ``--json``, whose
one object goes to stdout) and writes charts to ``docs/bench/``. The scenarios live in
``bench/scenarios.py``, the table and charts in ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from bench.loadgen import Generator, pick  # noqa: E402
from bench.plan import SIZES, Plan, Target, size_label  # noqa: E402
from bench.processes import Service, proxy_pid, run_group  # noqa: E402
from bench.report import charts, table  # noqa: E402
from bench.scenarios import (  # noqa: E402
    HIT_PROMPT,
    chat,
    exact_hits,
    find_litellm,
    misses,
    peer_hits,
    post,
    semantic_hits,
    streaming,
)
from tests.support.ports import free_port  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402

UPSTREAM_LATENCY_MS = 20.0
CHARTS = ROOT / "docs" / "bench"


QUICK = Plan(
    quick=True, rounds=3, hit_seconds=2, c1_seconds=1, miss_seconds=4, semantic_seconds=3,
    ttfb_requests=100, memory_sizes=SIZES[:3], redis_sizes=SIZES[:3],
    redis_vector_build_max=10_000,
)  # fmt: skip
FULL = Plan(
    quick=False, rounds=5, hit_seconds=3, c1_seconds=2, miss_seconds=10, semantic_seconds=5,
    ttfb_requests=300, memory_sizes=SIZES, redis_sizes=SIZES[:3], redis_vector_build_max=100_000,
)  # fmt: skip


TARGETS = [
    Target("exact_hit_ratio_memory", "exact hit, memory: throughput vs baseline", 0.50, True),
    Target("exact_hit_added_p50_ms_memory", "exact hit, memory: added p50 at c1 (ms)", 0.5),
    Target("exact_hit_ratio_redis", "exact hit, redis: throughput vs baseline", 0.35, True),
    # 1.5 ms since the upstream client is httpx (issue 15); 1.0 ms before it.
    Target("miss_added_p50_ms", "miss: added p50 (ms)", 1.5),
    Target("ttfb_added_ms", "streamed miss: added TTFB p50 (ms)", 1.5),
    Target("semantic_p50_ms_100k", "semantic lookup, memory, 100k: p50 (ms)", 1.0),
    Target("semantic_p99_ms_100k_redis", "semantic lookup, redis, 100k: p99 (ms)", 3.0),
    Target("overhead_bytes_per_entry", "memory store: bytes per entry above payload", 512),
    Target("verify_p50_ms", "learned verifier: p50 per candidate (ms)", 0.5),
]


# -- store scaling ------------------------------------------------------------------------------

SCALING_KEYS = (
    "exact_get_p50_ms",
    "exact_get_p99_ms",
    "semantic_p50_ms",
    "semantic_p99_ms",
    "semantic_found_share",
    "payload_bytes",
    "bytes_per_entry",
    "overhead_bytes_per_entry",
    "vector_bytes_per_entry",
)


def scaling(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    notes: list[str] = []
    runs = [("memory", n) for n in plan.memory_sizes] + [("redis", n) for n in plan.redis_sizes]
    for store, n in runs:
        args = [
            sys.executable,
            "-m",
            "bench.scaling",
            "--store",
            store,
            "--entries",
            str(n),
            "--queries",
            str(plan.queries),
        ]
        if store == "redis" and n > plan.redis_vector_build_max:
            args.append("--no-build-vectors")
        log(f"  scaling: {store} {n:,} entries")
        code, stdout, stderr = run_group(args, timeout=1800)
        if code != 0:
            error = stderr.decode(errors="replace").strip().splitlines()[-1:]
            notes.append(f"{store} {size_label(n)}: failed: {' '.join(error)}")
            continue
        figures = orjson.loads(stdout)
        suffix = f"_{size_label(n)}" + ("" if store == "memory" else "_redis")
        for key in SCALING_KEYS:
            if key in figures:
                out[key + suffix] = figures[key]
        if "semantic_skipped" in figures:
            notes.append(f"redis {size_label(n)} semantic: {figures['semantic_skipped']}")
        if "vector_fill_seconds" in figures:
            out["vector_fill_seconds" + suffix] = figures["vector_fill_seconds"]
        headline = "" if store == "memory" else "_redis"
        for key in ("bytes_per_entry", "overhead_bytes_per_entry", "payload_bytes"):
            out[key + headline] = figures[key]  # the largest size wins: the least noisy figure
        for key in ("plain_traced_bytes_per_entry", "streamed_traced_bytes_per_entry"):
            if key in figures:
                out[key] = figures[key]
    out["payload_bytes_per_entry"] = out.pop("payload_bytes", None)
    out["payload_bytes_per_entry_redis"] = out.pop("payload_bytes_redis", None)
    if notes:
        out["scaling_notes"] = notes
    return out


def verifier_cost(plan: Plan) -> dict[str, Any]:
    """``bench/verifier_cost.py`` in a process of its own (it loads the local model)."""
    args = [sys.executable, "-m", "bench.verifier_cost", "--json"]
    if plan.quick:
        args += ["--pairs", "300"]
    code, stdout, stderr = run_group(args, timeout=600)
    if code != 0:
        error = stderr.decode(errors="replace").strip().splitlines()[-1:]
        return {"verifier_cost": f"failed: {' '.join(error)}"}
    figures: dict[str, Any] = orjson.loads(stdout)
    return figures


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def servers(redis_binary: str | None) -> Iterator[dict[str, Any]]:
    """The fake upstream, the baseline and both proxies, all stopped on exit."""
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(UpstreamProcess(UPSTREAM_LATENCY_MS))
        # The baseline serves the very completion the proxies will serve from their cache.
        completion = post(upstream.url, chat(HIT_PROMPT)).content
        body_file = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".json"))
        body_file.write(completion)
        body_file.flush()
        port = free_port()
        baseline = stack.enter_context(
            Service(
                [
                    sys.executable,
                    "-m",
                    "bench.baseline",
                    "--port",
                    str(port),
                    "--body-file",
                    body_file.name,
                ],
                f"http://127.0.0.1:{port}/healthz",
            )
        )
        # bench/floor.py's null proxy: what the extra hop alone costs a miss.
        floor_port = free_port()
        stack.enter_context(
            Service(
                [sys.executable, "-m", "bench.floor", "--serve", str(floor_port), upstream.url],
                f"http://127.0.0.1:{floor_port}/healthz",
            )
        )
        proxies = {"memory": stack.enter_context(ProxyProcess(upstream.url))}
        redis: RedisServer | None = None
        if redis_binary is not None:
            redis = stack.enter_context(RedisServer(redis_binary))
            proxies["redis"] = stack.enter_context(ProxyProcess(upstream.url, redis_url=redis.url))
        yield {
            "upstream": upstream.url,
            "baseline": (f"http://127.0.0.1:{port}/v1", baseline.pid),
            "floor": f"http://127.0.0.1:{floor_port}/v1",
            "proxies": proxies,
            "redis_url": None if redis is None else redis.url,
        }


def run(
    plan: Plan, generator: Generator, peers: str | None, log: Callable[[str], None]
) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "generator": generator.name,
        "quick": plan.quick,
        "upstream_latency_ms": UPSTREAM_LATENCY_MS,
    }
    redis_binary = find_redis_server()
    if redis_binary is None:
        results["redis"] = "skipped: no redis-server >= 8"
    with servers(redis_binary) as s:
        proxies: dict[str, ProxyProcess] = s["proxies"]
        bases = {"baseline": s["baseline"][0]} | {n: p.base_url for n, p in proxies.items()}
        pids = {"baseline": s["baseline"][1]} | {n: proxy_pid(p) for n, p in proxies.items()}
        log("exact hits (c64 throughput, c1 latency), interleaved rounds")
        results |= exact_hits(generator, plan, bases, pids, proxies)
        direct = {"direct": s["upstream"], "floor": s["floor"]} | {
            n: p.base_url for n, p in proxies.items()
        }
        log("misses (c1, unique prompts), proxy vs direct")
        results |= misses(generator, plan, direct)
        log("streamed time to first byte")
        results |= streaming(plan, direct)
        log("semantic hits (hash:256)")
        results |= semantic_hits(generator, plan, s["upstream"], s["redis_url"])
        if peers is not None:
            log("peer: LiteLLM exact hits, in rounds with the baseline")
            results |= peer_hits(generator, plan, s["upstream"], s["baseline"], peers)
    log("store scaling")
    results |= scaling(plan, log)
    log("learned verifier: time per candidate, sketch bytes per entry")
    results |= verifier_cost(plan)
    results["targets"] = {t.key: t.check(results) for t in TARGETS}
    results["duration_seconds"] = time.monotonic() - started
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter loads, memory up to 100k")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--peers", action="store_true", help="also LiteLLM, when installed")
    parser.add_argument("--litellm", help="the litellm command (default: found on PATH)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--charts", type=Path, default=CHARTS, help="where the PNGs go")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = sys.stderr if args.json else sys.stdout

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    litellm = find_litellm(args.litellm) if args.peers else None
    results = run(QUICK if args.quick else FULL, pick(args.generator), litellm, log)
    if args.peers and litellm is None:
        results["peers"] = "skipped: litellm not installed"
    written = charts(results, args.charts)
    results["charts"] = [
        str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written
    ]
    table(results, report, TARGETS)
    print(f"charts: {', '.join(results['charts'])}", file=report)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
