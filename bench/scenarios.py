"""The scenarios of ``bench/run.py``, each returning its figures as JSON-ready keys: exact hits
(semcache vs the baseline, in interleaved rounds), misses and streamed time to first byte (vs
the upstream direct), semantic hits, and the same exact-hit scenario on a peer (LiteLLM)."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.loadgen import UNIQUE, Generator, Load, LoadResult, percentile
from bench.plan import STORES, Plan
from bench.processes import Service, cpu_seconds, machine_cpu_seconds
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess

API_KEY = f"sk-bench-{uuid.uuid4().hex}"
"""One key for every target: the proxies' tenant, and the master key LiteLLM insists on."""
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
HIT_PROMPT = "What is the capital of France? Answer in one word."
SEMANTIC_STORED = "what is the capital city of france"
SEMANTIC_ASKED = "the capital city of france is what"  # same words: the hash embedder's cosine 1


# -- requests -----------------------------------------------------------------------------------


def chat(text: str, *, stream: bool = False) -> bytes:
    return orjson.dumps(
        {
            "model": "gpt-fake",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
            "temperature": 0,
            "stream": stream,
        }
    )


def chat_load(base: str, body: bytes, connections: int, seconds: float) -> Load:
    return Load(base + "/chat/completions", body, connections, seconds, tuple(HEADERS.items()))


def post(base: str, body: bytes) -> httpx.Response:
    response = httpx.post(base + "/chat/completions", content=body, headers=HEADERS, timeout=30)
    response.raise_for_status()
    return response


def cache_stats(proxy: ProxyProcess) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(proxy.url + "/cache/stats", timeout=10).json()
    return stats


def lookups(proxy: ProxyProcess, kind: str) -> int:
    return int(cache_stats(proxy)["hits_by_lookup"].get(kind, 0))


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- exact hits ---------------------------------------------------------------------------------


@dataclass
class Runs:
    c64: list[LoadResult] = field(default_factory=list)
    c1: list[LoadResult] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    other_cpu: list[float] = field(default_factory=list)
    """Cores busy with anything but the server and the generator (other work on the machine)."""


def exact_hits(
    generator: Generator,
    plan: Plan,
    bases: dict[str, str],
    pids: dict[str, int],
    proxies: dict[str, ProxyProcess],
) -> dict[str, Any]:
    """Throughput at 64 connections and latency at 1, in rounds interleaving the targets."""
    body = chat(HIT_PROMPT)
    for name, base in bases.items():
        post(base, body)
        if name in proxies:
            answer = post(base, body)
            assert answer.headers["x-cache"] == "HIT", f"{name}: no exact hit: {answer.headers}"
    for base in bases.values():  # warm up: connections, caches, code paths
        generator.run(chat_load(base, body, 64, 1))
    hits_before = {name: lookups(proxy, "exact") for name, proxy in proxies.items()}
    runs = {name: Runs() for name in bases}
    for _ in range(plan.rounds):
        for name, base in bases.items():
            cpu, machine = cpu_seconds(pids[name]), machine_cpu_seconds()
            result = generator.run(chat_load(base, body, 64, plan.hit_seconds))
            server = (cpu_seconds(pids[name]) - cpu) / result.seconds
            busy = (machine_cpu_seconds() - machine) / result.seconds
            runs[name].server_cpu.append(server)
            runs[name].other_cpu.append(max(0.0, busy - server - result.generator_cpu))
            runs[name].c64.append(result)
    for _ in range(plan.rounds):
        for name, base in bases.items():
            runs[name].c1.append(generator.run(chat_load(base, body, 1, plan.c1_seconds)))
    out: dict[str, Any] = {}
    ceiling = runs["baseline"]
    for name, r in runs.items():
        out[f"exact_hit_rps_{name}"] = median([x.rps for x in r.c64])
        out[f"exact_hit_p50_ms_{name}"] = median([x.p50_ms for x in r.c64])
        out[f"exact_hit_p99_ms_{name}"] = median([x.p99_ms for x in r.c64])
        out[f"exact_hit_c1_p50_ms_{name}"] = median([x.p50_ms for x in r.c1])
        out[f"exact_hit_c1_p99_ms_{name}"] = median([x.p99_ms for x in r.c1])
        out[f"exact_hit_server_cpu_{name}"] = median(r.server_cpu)
        out[f"exact_hit_errors_{name}"] = sum(x.errors for x in r.c64 + r.c1)
        if name != "baseline":
            pairs = zip(r.c64, ceiling.c64, strict=True)
            out[f"exact_hit_ratio_{name}"] = median([x.rps / b.rps for x, b in pairs])
            # Requests per CPU-second against the baseline's: fair even when the servers did
            # not get a whole core each (a busy machine).
            per_cpu = zip(r.c64, r.server_cpu, ceiling.c64, ceiling.server_cpu, strict=True)
            out[f"exact_hit_cpu_ratio_{name}"] = median(
                [(x.rps / cx) / (b.rps / cb) for x, cx, b, cb in per_cpu if cx and cb]
            )
            pairs = zip(r.c1, ceiling.c1, strict=True)
            out[f"exact_hit_added_p50_ms_{name}"] = median([x.p50_ms - b.p50_ms for x, b in pairs])
    for name, proxy in proxies.items():
        served = sum(x.requests for x in runs[name].c64 + runs[name].c1)
        # Every request the generator completed was a hit (in-flight ones at the end count too).
        out[f"exact_hit_all_hits_{name}"] = lookups(proxy, "exact") - hits_before[name] >= served
    loads = [x for r in runs.values() for x in r.c64 + r.c1]
    out["other_cpu_during_loads"] = median([x for r in runs.values() for x in r.other_cpu])
    out["generator_cpu_max"] = max(x.generator_cpu for x in loads)
    out["generator_saturated"] = any(x.saturated for x in loads)
    return out


# -- misses and streaming -----------------------------------------------------------------------


def misses(generator: Generator, plan: Plan, bases: dict[str, str]) -> dict[str, Any]:
    """Unique prompts at one connection, through each proxy and direct, in two rounds."""
    samples: dict[str, list[LoadResult]] = {name: [] for name in bases}
    for _ in range(2):
        for name, base in bases.items():
            body = chat(f"miss {uuid.uuid4().hex[:8]} {UNIQUE.decode()}")
            load = chat_load(base, body, 1, plan.miss_seconds / 2)
            samples[name].append(generator.run(load))
    out: dict[str, Any] = {}
    for name, runs in samples.items():
        out[f"miss_p50_ms_{name}"] = median([x.p50_ms for x in runs])
        out[f"miss_p99_ms_{name}"] = median([x.p99_ms for x in runs])
        out[f"miss_errors_{name}"] = sum(x.errors for x in runs)
    for name in bases:
        if name != "direct":
            suffix = "" if name == "memory" else f"_{name}"
            for q in ("p50", "p99"):
                added = out[f"miss_{q}_ms_{name}"] - out[f"miss_{q}_ms_direct"]
                out[f"miss_added_{q}_ms{suffix}"] = added
    return out


UNCACHED = ("direct", "floor")
"""Bases without a cache: the upstream itself and bench/floor.py's null proxy."""


def first_byte(client: httpx.Client, base: str, body: bytes) -> tuple[float, httpx.Headers]:
    """Seconds to the first body byte of a streamed request; the stream is read to its end."""
    started = time.perf_counter()
    with client.stream("POST", base + "/chat/completions", content=body, headers=HEADERS) as r:
        chunks = r.iter_raw()
        next(chunks)
        elapsed = time.perf_counter() - started
        for _ in chunks:
            pass
    assert r.status_code == 200, r.status_code
    return elapsed, r.headers


def streaming(plan: Plan, bases: dict[str, str]) -> dict[str, Any]:
    """Streamed TTFB: a miss through each proxy and direct (interleaved request by request),
    then a hit on each proxy."""
    run_id = uuid.uuid4().hex[:8]
    ttfb: dict[str, list[float]] = {name: [] for name in bases}
    hit: dict[str, list[float]] = {name: [] for name in bases if name not in UNCACHED}
    with httpx.Client(timeout=30) as client:
        for name, base in bases.items():  # warm up
            first_byte(client, base, chat(f"warm {run_id} {name}", stream=True))
        for i in range(plan.ttfb_requests):
            for name, base in bases.items():
                body = chat(f"stream {run_id} {name} {i}", stream=True)
                ttfb[name].append(first_byte(client, base, body)[0] * 1000)
        for name in hit:
            body = chat(f"stream {run_id} {name} 0", stream=True)
            for _ in range(plan.ttfb_requests):
                seconds, headers = first_byte(client, bases[name], body)
                assert headers["x-cache"] == "HIT", f"{name}: streamed request was no hit"
                hit[name].append(seconds * 1000)
    out: dict[str, Any] = {
        "ttfb_direct_p50_ms": median(ttfb["direct"]),
        "ttfb_direct_p99_ms": percentile(ttfb["direct"], 0.99),
    }
    if "floor" in ttfb:
        out["ttfb_added_ms_floor"] = median(ttfb["floor"]) - out["ttfb_direct_p50_ms"]
    for name in hit:
        suffix = "" if name == "memory" else f"_{name}"
        out[f"ttfb_miss_p50_ms_{name}"] = median(ttfb[name])
        out[f"ttfb_miss_p99_ms_{name}"] = percentile(ttfb[name], 0.99)
        out[f"ttfb_added_ms{suffix}"] = median(ttfb[name]) - out["ttfb_direct_p50_ms"]
        out[f"ttfb_added_p99_ms{suffix}"] = percentile(ttfb[name], 0.99) - out["ttfb_direct_p99_ms"]
        out[f"ttfb_hit_ms{suffix}"] = median(hit[name])
        out[f"ttfb_hit_p99_ms{suffix}"] = percentile(hit[name], 0.99)
    return out


# -- semantic hits ------------------------------------------------------------------------------


def semantic_hits(
    generator: Generator, plan: Plan, upstream: str, redis_url: str | None
) -> dict[str, Any]:
    """A proxy with the hash embedder: store one prompt, then ask it with its words reordered
    (an exact miss, the same bag of words) and time those semantic hits at one connection."""
    out: dict[str, Any] = {}
    run_id = uuid.uuid4().hex[:8]
    for store in STORES:
        suffix = "" if store == "memory" else f"_{store}"
        if store == "redis" and redis_url is None:
            out[f"semantic_hit{suffix}"] = "skipped: no redis-server >= 8"
            continue
        # No audits: the fake upstream answers the two wordings differently, so an audit would
        # (rightly) find the hit wrong and stop it, and the rest of the load would time exact hits.
        env = {"SEMCACHE_EMBED_MODEL": "hash:256", "SEMCACHE_AUDIT_RATE": "0"}
        redis = redis_url if store == "redis" else None
        with ProxyProcess(upstream, redis_url=redis, env=env) as proxy:
            post(proxy.base_url, chat(f"{SEMANTIC_STORED} {run_id}"))
            asked = chat(f"{run_id} {SEMANTIC_ASKED}")
            headers = post(proxy.base_url, asked).headers
            if headers.get("x-cache-lookup") != "semantic":
                out[f"semantic_hit{suffix}"] = (
                    f"failed: reordered prompt got x-cache={headers.get('x-cache')} "
                    f"x-cache-lookup={headers.get('x-cache-lookup')}"
                )
                continue
            before = lookups(proxy, "semantic")
            result = generator.run(chat_load(proxy.base_url, asked, 1, plan.semantic_seconds))
            out[f"semantic_hit_p50_ms{suffix}"] = result.p50_ms
            out[f"semantic_hit_p99_ms{suffix}"] = result.p99_ms
            out[f"semantic_hit_all_hits{suffix}"] = (
                lookups(proxy, "semantic") - before >= result.requests and not result.errors
            )
    return out


# -- peers --------------------------------------------------------------------------------------


def find_litellm(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "litellm"
    return str(beside) if beside.exists() else shutil.which("litellm")


def litellm_peer(stack: contextlib.ExitStack, upstream: str, binary: str) -> tuple[str, int]:
    """Start the LiteLLM proxy (one worker) in front of the same upstream with its in-memory
    cache on; returns its base URL and pid once it has answered a request from its cache."""
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="semcache-bench-litellm-"))
    config = Path(workdir) / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-fake\n"
        "    litellm_params:\n"
        "      model: openai/gpt-fake\n"
        f"      api_base: {upstream}\n"
        "      api_key: sk-fake\n"
        "litellm_settings:\n"
        "  cache: true\n"
        "  cache_params:\n"
        "    type: local\n"
    )
    port = free_port()
    args = [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--num_workers", "1"]
    env = {
        "LITELLM_MASTER_KEY": API_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
        "LITELLM_LOG": "ERROR",
    }
    ready = f"http://127.0.0.1:{port}/health/liveliness"
    litellm = stack.enter_context(Service(args, ready, env=env, timeout=180))
    base = f"http://127.0.0.1:{port}/v1"
    body = chat(HIT_PROMPT)
    first = post(base, body).json()["choices"][0]["message"]["content"]
    second = post(base, body).json()["choices"][0]["message"]["content"]
    if first != second:  # the fake upstream numbers its answers: a cached one repeats
        raise RuntimeError(f"LiteLLM did not serve a cached answer: {first!r}, then {second!r}")
    return base, litellm.pid


def peer_hits(
    generator: Generator, plan: Plan, upstream: str, baseline: tuple[str, int], binary: str
) -> dict[str, Any]:
    """The exact-hit scenario on LiteLLM, interleaved with the baseline again (LiteLLM runs
    only now: its background work must not weigh on the other figures)."""
    with contextlib.ExitStack() as stack:
        try:
            base, pid = litellm_peer(stack, upstream, binary)
        except (RuntimeError, httpx.HTTPError) as exc:
            return {"peers": f"failed: {exc}"}
        bases = {"baseline": baseline[0], "litellm": base}
        hits = exact_hits(generator, plan, bases, {"baseline": baseline[1], "litellm": pid}, {})
    figures = {k: v for k, v in hits.items() if k.endswith("_litellm")}
    figures["exact_hit_rps_baseline_litellm_rounds"] = hits["exact_hit_rps_baseline"]
    return figures | {"peers": "litellm (in-memory cache)"}
