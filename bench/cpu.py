"""CPU time the proxy process spends per request: hit, miss and streamed miss.

    python bench/cpu.py [--requests 1000] [--store memory|redis] [--json]

Starts the fake upstream (no added latency) and ``semcache serve`` on loopback, sends sequential
requests over one keep-alive connection, and reads the proxy's user + system CPU seconds from
``/proc/<pid>/stat`` before and after. CPU time moves less than latency on a shared machine,
which makes this the figure to compare before and after a change to the hot path. Linux only.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from bench.processes import cpu_seconds, proxy_pid  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402
from tests.support.redis_server import RedisServer, find_redis_server  # noqa: E402

HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-cpu"}
KINDS = ("hit", "miss", "stream_miss")


def body(kind: str) -> bytes:
    text = "the same question" if kind == "hit" else f"question {uuid.uuid4().hex}"
    message = [{"role": "user", "content": text}]
    return orjson.dumps({"model": "gpt-fake", "stream": kind == "stream_miss", "messages": message})


def per_request(client: httpx.Client, proxy: ProxyProcess, kind: str, n: int) -> float:
    """Microseconds of proxy CPU per request of ``kind`` (after 50 warm-up requests)."""
    url = proxy.base_url + "/chat/completions"
    pid = proxy_pid(proxy)
    before = cpu_seconds(pid)
    for i in range(n + 50):
        if i == 50:
            before = cpu_seconds(pid)
        with client.stream("POST", url, content=body(kind), headers=HEADERS) as response:
            response.read()
            assert response.status_code == 200, response.text
    return (cpu_seconds(pid) - before) / n * 1e6


def run(n: int, store: str) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": n, "store": store}
    with UpstreamProcess(0.0) as upstream, httpx.Client(timeout=30) as client:
        redis: RedisServer | None = None
        if store == "redis":
            binary = find_redis_server()
            if binary is None:
                raise SystemExit("no redis-server >= 8 (set REDIS_SERVER_BIN)")
            redis = RedisServer(binary).start()
        try:
            with ProxyProcess(upstream.url, redis_url=None if redis is None else redis.url) as px:
                for kind in KINDS:
                    out[f"cpu_us_per_{kind}"] = round(per_request(client, px, kind, n), 1)
        finally:
            if redis is not None:
                redis.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--store", choices=["memory", "redis"], default="memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/stat"):
        raise SystemExit("bench/cpu.py reads /proc: Linux only")
    result = run(args.requests, args.store)
    if args.json:
        print(orjson.dumps(result).decode())
        return
    for kind in KINDS:
        print(f"{kind:12s} {result[f'cpu_us_per_{kind}']:8.1f} us of proxy CPU per request")


if __name__ == "__main__":
    main()
