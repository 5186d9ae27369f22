"""``semcache warm`` of an FAQ file: how long N rows take through a running proxy.

    .venv/bin/python bench/warm.py [--rows 10000] [--concurrency 8] [--latency-ms 20] [--json]

Starts the fake upstream (answers after ``--latency-ms``) and ``semcache serve`` (memory store,
``--embed-model`` default ``hash:64``: the semantic path runs, cheaply), writes N distinct
questions as JSON Lines and runs the real ``semcache warm`` command on them, twice: the first
run stores every answer, the second finds them all cached. Keys: ``warm_rows``,
``warm_seconds``, ``warm_rows_per_second``, ``warm_upstream_calls``, ``rewarm_seconds``,
``rewarm_upstream_calls``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fake_upstream import FakeUpstream  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

SEMCACHE = str(Path(sys.executable).parent / "semcache")


def run_warm(url: str, path: Path, concurrency: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [SEMCACHE, "warm", str(path), "--url", url, "--key", "sk-bench-warm",
         "--concurrency", str(concurrency)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--embed-model", default="hash:64")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faq.jsonl"
        with path.open("wb") as f:
            for i in range(args.rows):
                text = f"How do I reset the password of account type {i}?"
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
                f.write(orjson.dumps(body) + b"\n")
        env = {"SEMCACHE_EMBED_MODEL": args.embed_model}
        with (
            FakeUpstream(latency_seconds=args.latency_ms / 1000) as upstream,
            ProxyProcess(upstream.url, env=env) as proxy,
        ):
            seconds = run_warm(proxy.url, path, args.concurrency)
            calls = upstream.calls("/v1/chat/completions")
            again = run_warm(proxy.url, path, args.concurrency)
            recalls = upstream.calls("/v1/chat/completions") - calls
    out = {
        "warm_rows": args.rows,
        "warm_concurrency": args.concurrency,
        "warm_upstream_latency_ms": args.latency_ms,
        "warm_seconds": round(seconds, 2),
        "warm_rows_per_second": round(args.rows / seconds, 1),
        "warm_upstream_calls": calls,
        "rewarm_seconds": round(again, 2),
        "rewarm_upstream_calls": recalls,
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() if args.json else out)


if __name__ == "__main__":
    main()
