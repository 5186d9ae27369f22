"""Hit, miss and streaming time-to-first-byte, proxy vs calling the upstream directly.

    python bench/latency.py [--requests 300] [--store memory|redis|both] [--json]

Starts the fake OpenAI-compatible upstream (tests/support) and ``semcache serve`` on loopback,
then times sequential requests over one keep-alive connection. Figures are medians and p99s in
milliseconds; the "added" figures are proxy minus direct, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(n: int, call: Callable[[int], float]) -> dict[str, float]:
    """``call(i)`` returns its own latency in seconds; the first call only warms up."""
    call(-1)
    samples = [call(i) * 1000 for i in range(n)]
    return {"p50": statistics.median(samples), "p99": percentile(samples, 0.99)}


def body(text: str, stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": "gpt-fake", "stream": stream, "messages": [{"role": "user", "content": text}]}
    )


def scenario(client: httpx.Client, base: str, n: int, run_id: str) -> dict[str, dict[str, float]]:
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}

    def post(text: str) -> float:
        start = time.perf_counter()
        r = client.post(base + "/chat/completions", content=body(text), headers=headers)
        elapsed = time.perf_counter() - start
        assert r.status_code == 200, r.text
        return elapsed

    def first_byte(text: str) -> float:
        start = time.perf_counter()
        with client.stream(
            "POST", base + "/chat/completions", content=body(text, True), headers=headers
        ) as r:
            chunks = r.iter_raw()
            next(chunks)
            elapsed = time.perf_counter() - start
            for _ in chunks:
                pass
        return elapsed

    out = {
        "miss": timed(n, lambda i: post(f"miss {run_id} {i}")),
        "ttfb_miss": timed(n, lambda i: first_byte(f"stream {run_id} {i}")),
    }
    post(f"hot {run_id}")
    first_byte(f"hot stream {run_id}")
    out["hit"] = timed(n, lambda i: post(f"hot {run_id}"))
    out["ttfb_hit"] = timed(n, lambda i: first_byte(f"hot stream {run_id}"))
    return out


class UpstreamProcess:
    """The fake upstream in a process of its own, as a real upstream would be."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_upstream", "--latency-ms", str(latency_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url:
            self.close()
            raise RuntimeError("the fake upstream did not start")

    def close(self) -> None:
        self._process.kill()
        self._process.wait()

    def __enter__(self) -> UpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(n: int, stores: list[str], latency_ms: float = 0.0) -> dict[str, Any]:
    results: dict[str, Any] = {"requests": n, "upstream_latency_ms": latency_ms}
    run_id = uuid.uuid4().hex[:6]
    with UpstreamProcess(latency_ms) as upstream, httpx.Client(timeout=30) as client:
        direct = scenario(client, upstream.url, n, "direct-" + run_id)
        results["direct"] = {"response": direct["miss"], "ttfb": direct["ttfb_miss"]}
        for store in stores:
            redis: RedisServer | None = None
            if store == "redis":
                binary = find_redis_server()
                if binary is None:
                    results[store] = "skipped: no redis-server >= 8"
                    continue
                redis = RedisServer(binary).start()
            try:
                with ProxyProcess(upstream.url, redis_url=redis.url if redis else None) as proxy:
                    measured = scenario(client, proxy.base_url, n, f"{store}-{run_id}")
            finally:
                if redis is not None:
                    redis.close()
            measured["miss_added"] = {
                q: measured["miss"][q] - direct["miss"][q] for q in ("p50", "p99")
            }
            measured["ttfb_miss_added"] = {
                q: measured["ttfb_miss"][q] - direct["ttfb_miss"][q] for q in ("p50", "p99")
            }
            results[store] = measured
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--upstream-latency-ms", type=float, default=20.0)
    parser.add_argument("--store", choices=["memory", "redis", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    stores = ["memory", "redis"] if args.store == "both" else [args.store]
    results = run(args.requests, stores, args.upstream_latency_ms)
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        return
    d = results["direct"]
    print(f"{'ms (p50 / p99)':<28}{'direct':>16}" + "".join(f"{s:>18}" for s in stores))
    rows = [
        ("non-stream miss", d["response"], "miss"),
        ("non-stream hit", None, "hit"),
        ("stream TTFB, miss", d["ttfb"], "ttfb_miss"),
        ("stream TTFB, hit", None, "ttfb_hit"),
    ]
    for label, direct, key in rows:
        cells = f"{direct['p50']:7.2f} / {direct['p99']:6.2f}" if direct else "-"
        line = f"{label:<28}{cells:>16}"
        for s in stores:
            m = results[s]
            line += (
                f"{m[key]['p50']:9.2f} / {m[key]['p99']:6.2f}" if isinstance(m, dict) else "skipped"
            )
        print(line)


if __name__ == "__main__":
    main()
