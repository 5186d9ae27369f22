"""Two versions of semcache behind one fake upstream, timed with interleaved requests.

    .venv/bin/python bench/side_by_side.py --old PATH --new PATH [--requests 200]

PATH is a checkout (``git archive COMMIT | tar -x -C PATH``); each ``semcache serve`` imports
``proxy`` from it (``PYTHONPATH``). Requests go direct, to the old and to the new in turn, so
drift on a shared machine hits all three alike: misses with unique prompts and streamed
time to first byte, each proxy's p50 minus direct's (what ``bench/run.py`` reports as
``miss_added_p50_ms`` and ``ttfb_added_ms``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

UPSTREAM_LATENCY_MS = 20.0
JSON = {"content-type": "application/json"}


def body(prompt: str, *, stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": "fake-model", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, default=ROOT)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    miss: dict[str, list[float]] = {"direct": [], "old": [], "new": []}
    ttfb: dict[str, list[float]] = {"direct": [], "old": [], "new": []}
    with UpstreamProcess(UPSTREAM_LATENCY_MS) as upstream:
        proxies: dict[str, ProxyProcess] = {}
        try:
            for name, path in (("old", args.old), ("new", args.new)):
                env = {"PYTHONPATH": str(path.resolve())}
                proxies[name] = ProxyProcess(upstream.url, env=env).start()
            bases = {"direct": upstream.url, **{n: p.base_url for n, p in proxies.items()}}
            with httpx.Client(timeout=30) as client:
                for i in range(-5, args.requests):  # five to warm up
                    for name, base in bases.items():
                        url = base + "/chat/completions"
                        started = time.perf_counter()
                        answer = client.post(url, content=body(f"{run} {name} {i}"), headers=JSON)
                        took = time.perf_counter() - started
                        assert answer.status_code == 200, answer.text
                        streamed = body(f"{run} stream {name} {i}", stream=True)
                        started = time.perf_counter()
                        with client.stream("POST", url, content=streamed, headers=JSON) as r:
                            next(r.iter_raw())
                            first = time.perf_counter() - started
                        if i >= 0:
                            miss[name].append(took * 1000)
                            ttfb[name].append(first * 1000)
        finally:
            for proxy in proxies.values():
                proxy.stop()
    direct_miss, direct_ttfb = statistics.median(miss["direct"]), statistics.median(ttfb["direct"])
    result = {
        f"{name}_{figure}": round(statistics.median(samples[name]) - direct, 3)
        for name in ("old", "new")
        for figure, samples, direct in (
            ("miss_added_p50_ms", miss, direct_miss),
            ("ttfb_added_p50_ms", ttfb, direct_ttfb),
        )
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
