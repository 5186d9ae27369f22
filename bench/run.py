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
- store scaling (``bench/scaling.py``, a process per store and size, once the servers are gone):
  ``Store.get`` and ``Store.nearest`` latency and memory per entry with ~1 KB completions;
- ``--peers``: the exact-hit scenario against the LiteLLM proxy with its in-memory cache, when a
  ``litellm`` command is found (``--litellm PATH``, on PATH or beside this Python).

Load comes from ``wrk`` when installed, else from Python processes (``bench/loadgen.py``); the
output names the generator and how busy it was. Prints a table (to stderr with ``--json``, whose
one object goes to stdout) and writes charts to ``docs/bench/``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from bench.loadgen import UNIQUE, Generator, Load, LoadResult, percentile, pick  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402

UPSTREAM_LATENCY_MS = 20.0
CHARTS = ROOT / "docs" / "bench"
API_KEY = f"sk-bench-{uuid.uuid4().hex}"
"""One key for every target: the proxies' tenant, and the master key LiteLLM insists on."""
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
STORES = ("memory", "redis")
HIT_PROMPT = "What is the capital of France? Answer in one word."
SIZES = (1_000, 10_000, 100_000, 1_000_000)
SEMANTIC_STORED = "what is the capital city of france"
SEMANTIC_ASKED = "the capital city of france is what"  # same words: the hash embedder's cosine 1


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    """Interleaved rounds of exact-hit loads (each target once per round)."""
    hit_seconds: float
    c1_seconds: float
    miss_seconds: float
    semantic_seconds: float
    ttfb_requests: int
    memory_sizes: tuple[int, ...]
    redis_sizes: tuple[int, ...]
    redis_vector_build_max: int
    """Larger Redis vector sets come only from a snapshot of an earlier run (HNSW is slow to
    fill: minutes at 100k on this machine)."""
    queries: int = 300


QUICK = Plan(
    quick=True, rounds=3, hit_seconds=2, c1_seconds=1, miss_seconds=4, semantic_seconds=3,
    ttfb_requests=100, memory_sizes=SIZES[:3], redis_sizes=SIZES[:3],
    redis_vector_build_max=10_000,
)  # fmt: skip
FULL = Plan(
    quick=False, rounds=5, hit_seconds=3, c1_seconds=2, miss_seconds=10, semantic_seconds=5,
    ttfb_requests=300, memory_sizes=SIZES, redis_sizes=SIZES[:3], redis_vector_build_max=100_000,
)  # fmt: skip


@dataclass
class Target:
    key: str
    label: str
    limit: float
    higher_is_better: bool = False

    def check(self, results: dict[str, Any]) -> dict[str, Any]:
        value = results.get(self.key)
        if not isinstance(value, int | float):
            return {"value": None, "limit": self.limit, "met": None}
        met = value >= self.limit if self.higher_is_better else value <= self.limit
        return {"value": value, "limit": self.limit, "met": met}


TARGETS = [
    Target("exact_hit_ratio_memory", "exact hit, memory: throughput vs baseline", 0.50, True),
    Target("exact_hit_added_p50_ms_memory", "exact hit, memory: added p50 at c1 (ms)", 0.5),
    Target("exact_hit_ratio_redis", "exact hit, redis: throughput vs baseline", 0.35, True),
    Target("miss_added_p50_ms", "miss: added p50 (ms)", 1.0),
    Target("ttfb_added_ms", "streamed miss: added TTFB p50 (ms)", 1.0),
    Target("semantic_p50_ms_100k", "semantic lookup, memory, 100k: p50 (ms)", 1.0),
    Target("semantic_p99_ms_100k_redis", "semantic lookup, redis, 100k: p99 (ms)", 3.0),
    Target("overhead_bytes_per_entry", "memory store: bytes per entry above payload", 512),
]


# -- processes ----------------------------------------------------------------------------------


class Service:
    """A server process of the benchmark's own, ready once ``ready_url`` answers 200."""

    def __init__(
        self,
        args: list[str],
        ready_url: str,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.output()[-3000:]
                self.close()
                raise RuntimeError(f"{args[0]} did not start:\n{output}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proxy_pid(proxy: ProxyProcess) -> int:
    """``semcache serve`` runs in the process ProxyProcess started (uvicorn, one worker)."""
    process: subprocess.Popen[bytes] | None = proxy._proc
    assert process is not None
    return process.pid


def machine_cpu_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, every process and the kernel)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    hit: dict[str, list[float]] = {name: [] for name in bases if name != "direct"}
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
        env = {"SEMCACHE_EMBED_MODEL": "hash:256"}
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


# -- store scaling ------------------------------------------------------------------------------


def run_group(args: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``args`` in a process group of its own, so that whatever it started (a
    redis-server) goes with it if it is interrupted or times out."""
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc.returncode, stdout, stderr


def size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


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
        proxies = {"memory": stack.enter_context(ProxyProcess(upstream.url))}
        redis: RedisServer | None = None
        if redis_binary is not None:
            redis = stack.enter_context(RedisServer(redis_binary))
            proxies["redis"] = stack.enter_context(ProxyProcess(upstream.url, redis_url=redis.url))
        yield {
            "upstream": upstream.url,
            "baseline": (f"http://127.0.0.1:{port}/v1", baseline.pid),
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
        direct = {"direct": s["upstream"]} | {n: p.base_url for n, p in proxies.items()}
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
    results["targets"] = {t.key: t.check(results) for t in TARGETS}
    results["duration_seconds"] = time.monotonic() - started
    return results


# -- output -------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(r: dict[str, Any], out: TextIO) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    mode = "quick" if r["quick"] else "full"
    line(
        f"semcache benchmark ({mode}, {r['duration_seconds']:.0f} s)  generator: {r['generator']}"
        f", busiest {r['generator_cpu_max']:.0%} of a core"
        + ("  ** SATURATED **" if r["generator_saturated"] else "")
    )
    line(
        f"fake upstream latency {r['upstream_latency_ms']:.0f} ms; all on loopback; ms unless "
        f"noted; {os.cpu_count()} cores, other work on the machine during the c64 loads: "
        f"{r['other_cpu_during_loads']:.0%} of a core (kernel network work included)"
    )
    line()
    names = [n for n in ("baseline", "memory", "redis", "litellm") if f"exact_hit_rps_{n}" in r]
    line(
        f"{'exact hit':<22}{'req/s c64':>10}{'p50':>8}{'p99':>8}{'vs base':>9}{'srv CPU':>9}"
        f"{'per CPU':>9}"
        f"{'p50 c1':>9}{'p99 c1':>9}{'added':>8}"
    )
    for n in names:
        ratio = r.get(f"exact_hit_ratio_{n}", 1.0)
        cpu_ratio = r.get(f"exact_hit_cpu_ratio_{n}", 1.0)
        added = r.get(f"exact_hit_added_p50_ms_{n}")
        line(
            f"  {n:<20}{r[f'exact_hit_rps_{n}']:>10,.0f}{r[f'exact_hit_p50_ms_{n}']:>8.2f}"
            f"{r[f'exact_hit_p99_ms_{n}']:>8.2f}{ratio:>9.0%}"
            f"{r[f'exact_hit_server_cpu_{n}']:>9.0%}{cpu_ratio:>9.0%}"
            f"{r[f'exact_hit_c1_p50_ms_{n}']:>9.3f}"
            f"{r[f'exact_hit_c1_p99_ms_{n}']:>9.3f}{fmt(added, 3):>8}"
        )
    if "peers" in r:
        line(f"  peers: {r['peers']}")
    if "exact_hit_rps_baseline_litellm_rounds" in r:
        line(
            f"  (litellm's share is of the baseline measured in its own rounds: "
            f"{r['exact_hit_rps_baseline_litellm_rounds']:,.0f} req/s)"
        )
    for n in names:
        errors = sum(r.get(f"{k}_errors_{n}", 0) for k in ("exact_hit", "miss"))
        if errors or r.get(f"exact_hit_all_hits_{n}") is False:
            line(
                f"  ** {n}: {errors} failed requests; every load request a hit: "
                f"{r.get(f'exact_hit_all_hits_{n}')} **"
            )
    if r["exact_hit_server_cpu_baseline"] < 0.85:
        line(
            "  ** the baseline was not CPU-bound (a busy machine, or the generator): 'per CPU', "
            "requests per CPU-second vs the baseline's, is the fairer ratio **"
        )
    line()
    line(
        f"{'c1: p50 / p99':<22}{'direct':>16}{'memory':>16}{'redis':>16}"
        f"{'added p50 mem / redis':>24}"
    )
    rows: list[tuple[str, dict[str, tuple[str, str]], tuple[str, str] | None]] = [
        (
            "miss",
            {s: (f"miss_p50_ms_{s}", f"miss_p99_ms_{s}") for s in ("direct", *STORES)},
            ("miss_added_p50_ms", "miss_added_p50_ms_redis"),
        ),
        (
            "stream TTFB, miss",
            {"direct": ("ttfb_direct_p50_ms", "ttfb_direct_p99_ms")}
            | {s: (f"ttfb_miss_p50_ms_{s}", f"ttfb_miss_p99_ms_{s}") for s in STORES},
            ("ttfb_added_ms", "ttfb_added_ms_redis"),
        ),
        (
            "stream TTFB, hit",
            {
                "memory": ("ttfb_hit_ms", "ttfb_hit_p99_ms"),
                "redis": ("ttfb_hit_ms_redis", "ttfb_hit_p99_ms_redis"),
            },
            None,
        ),
        (
            "semantic hit",
            {
                "memory": ("semantic_hit_p50_ms", "semantic_hit_p99_ms"),
                "redis": ("semantic_hit_p50_ms_redis", "semantic_hit_p99_ms_redis"),
            },
            None,
        ),
    ]
    for label, keys, added in rows:
        cells = []
        for store in ("direct", *STORES):
            p50, p99 = keys.get(store, ("", ""))
            cells.append(f"{fmt(r.get(p50))} / {fmt(r.get(p99))}" if p50 in r else "-")
        extra = f"{fmt(r.get(added[0]), 3)} / {fmt(r.get(added[1]), 3)}" if added else ""
        line(f"  {label:<20}" + "".join(f"{c:>16}" for c in cells) + f"{extra:>24}")
    for key in ("semantic_hit", "semantic_hit_redis"):
        if isinstance(r.get(key), str):
            line(f"  {key}: {r[key]}")
    line()
    line(
        f"{'store scaling':<18}{'get p50':>9}{'get p99':>9}{'sem p50':>9}{'sem p99':>9}"
        f"{'found':>7}{'B/entry':>9}{'overhead':>9}{'vector B':>9}"
    )
    for store, suffix in (("memory", ""), ("redis", "_redis")):
        for size in SIZES:
            k = f"_{size_label(size)}{suffix}"
            if f"exact_get_p50_ms{k}" not in r:
                continue
            line(
                f"  {store:<7}{size_label(size):>6}    "
                f"{r[f'exact_get_p50_ms{k}']:>9.4f}{r[f'exact_get_p99_ms{k}']:>9.4f}"
                f"{fmt(r.get(f'semantic_p50_ms{k}'), 3):>9}"
                f"{fmt(r.get(f'semantic_p99_ms{k}'), 3):>9}"
                f"{fmt(r.get(f'semantic_found_share{k}')):>7}{r[f'bytes_per_entry{k}']:>9,.0f}"
                f"{r[f'overhead_bytes_per_entry{k}']:>9,.0f}"
                f"{fmt(r.get(f'vector_bytes_per_entry{k}'), 0):>9}"
            )
    if "streamed_traced_bytes_per_entry" in r:
        line(
            f"  payload {fmt(r['payload_bytes_per_entry'], 0)} B per entry; an entry stored "
            f"from a streamed miss (orjson.dumps body + replay) costs "
            f"{r['streamed_traced_bytes_per_entry']:,.0f} B (tracemalloc), a non-streamed one "
            f"{r['plain_traced_bytes_per_entry']:,.0f} B"
        )
    for note in r.get("scaling_notes", []):
        line(f"  note: {note}")
    line()
    line("targets")
    for t in TARGETS:
        c = r["targets"][t.key]
        verdict = {True: "met", False: "MISSED", None: "not measured"}[c["met"]]
        op = ">=" if t.higher_is_better else "<="
        line(f"  {verdict:<13}{t.label:<46}{fmt(c['value'], 3):>10} {op} {t.limit:g}")


def charts(r: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    mode = "quick" if r["quick"] else "full"
    names = [n for n in ("baseline", "memory", "redis", "litellm") if f"exact_hit_rps_{n}" in r]
    labels = {
        "baseline": "baseline\n(bare Starlette)",
        "memory": "semcache\nmemory",
        "redis": "semcache\nredis",
        "litellm": "LiteLLM\n(local cache)",
    }
    colors = {"baseline": "#9e9e9e", "memory": "#1f77b4", "redis": "#d62728", "litellm": "#2ca02c"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    rps = [r[f"exact_hit_rps_{n}"] for n in names]
    bars = left.bar([labels[n] for n in names], rps, color=[colors[n] for n in names])
    for bar, n, value in zip(bars, names, rps, strict=True):
        share = r.get(f"exact_hit_ratio_{n}", 1.0)
        left.annotate(
            f"{value:,.0f}\n({share:.0%})",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    left.set_ylabel("requests / s")
    left.set_ylim(0, max(rps) * 1.25)
    left.set_title("Exact hits, 64 connections")
    x = range(len(names))
    p50 = [r[f"exact_hit_c1_p50_ms_{n}"] for n in names]
    p99 = [r[f"exact_hit_c1_p99_ms_{n}"] for n in names]
    right.bar([i - 0.2 for i in x], p50, 0.4, label="p50", color=[colors[n] for n in names])
    right.bar(
        [i + 0.2 for i in x], p99, 0.4, label="p99", color=[colors[n] for n in names], alpha=0.45
    )
    for i, (a, b) in enumerate(zip(p50, p99, strict=True)):
        right.annotate(f"{a:.2f}", (i - 0.2, a), ha="center", va="bottom", fontsize=8)
        right.annotate(f"{b:.2f}", (i + 0.2, b), ha="center", va="bottom", fontsize=8)
    right.set_xticks(list(x), [labels[n] for n in names])
    right.set_ylabel("ms")
    right.set_title("Exact hit latency, 1 connection (solid p50, light p99)")
    fig.suptitle(
        f"semcache exact hits vs the bare-Starlette ceiling ({mode} run, {r['generator']})",
        fontsize=10,
    )
    fig.tight_layout()
    throughput = directory / "throughput.png"
    fig.savefig(throughput, dpi=110)
    plt.close(fig)

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(12, 5.6))
    series = [
        ("exact_get", "", "memory Store.get", "#1f77b4", "o"),
        ("semantic", "", "memory Store.nearest", "#1f77b4", "s"),
        ("exact_get", "_redis", "redis Store.get", "#d62728", "o"),
        ("semantic", "_redis", "redis Store.nearest", "#d62728", "s"),
    ]
    for metric, suffix, label, color, marker in series:
        for q, style in (("p50", "-"), ("p99", ":")):
            points = [
                (n, r[f"{metric}_{q}_ms_{size_label(n)}{suffix}"])
                for n in SIZES
                if f"{metric}_{q}_ms_{size_label(n)}{suffix}" in r
            ]
            if points:
                lat.plot(
                    *zip(*points, strict=True),
                    style,
                    marker=marker,
                    color=color,
                    label=f"{label} {q}",
                    alpha=1.0 if q == "p50" else 0.6,
                )
    lat.axhline(1.0, color="gray", lw=0.8, ls="--")
    lat.axhline(3.0, color="gray", lw=0.8, ls="-.")
    lat.text(1_000, 1.05, "1 ms (memory semantic p50 target)", fontsize=7, color="gray")
    lat.text(1_000, 3.15, "3 ms (redis semantic p99 target)", fontsize=7, color="gray")
    lat.set(
        xscale="log",
        yscale="log",
        xlabel="entries in the store (one partition)",
        ylabel="ms per lookup",
        title="Lookup latency vs entries",
    )
    lat.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    lat.grid(True, which="both", alpha=0.25)
    for suffix, label, color in (("", "memory", "#1f77b4"), ("_redis", "redis", "#d62728")):
        for metric, style, marker, what in (
            ("bytes_per_entry", "-", "o", "entry"),
            ("vector_bytes_per_entry", "--", "s", "vector row (semantic)"),
        ):
            points = [
                (n, r[f"{metric}_{size_label(n)}{suffix}"])
                for n in SIZES
                if isinstance(r.get(f"{metric}_{size_label(n)}{suffix}"), int | float)
            ]
            if points:
                mem.plot(
                    *zip(*points, strict=True),
                    style,
                    marker=marker,
                    color=color,
                    label=f"{label}: {what}",
                )
    payload = r["payload_bytes_per_entry"]
    if payload is not None:
        mem.axhline(payload, color="gray", lw=0.8, ls=":")
        mem.axhline(payload + 512, color="gray", lw=0.8, ls="--")
        mem.text(1_000, payload + 20, f"payload {payload:.0f} B", fontsize=7, color="gray")
        mem.text(1_000, payload + 532, "payload + 0.5 KB (target)", fontsize=7, color="gray")
    mem.set(
        xscale="log",
        xlabel="entries",
        ylabel="bytes per entry",
        title="Memory per entry (~1 KB completion; vectors 384 x float32)",
    )
    mem.set_ylim(bottom=0)
    mem.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    mem.grid(True, which="both", alpha=0.25)
    fig.suptitle(f"semcache store scaling ({mode} run)", fontsize=10)
    fig.tight_layout()
    scaling_png = directory / "scaling.png"
    fig.savefig(scaling_png, dpi=110)
    plt.close(fig)
    return [throughput, scaling_png]


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
    table(results, report)
    print(f"charts: {', '.join(results['charts'])}", file=report)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
