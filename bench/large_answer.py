"""Memory of a miss whose non-streamed answer is far larger than ``SEMCACHE_MAX_ENTRY_BYTES``.

    python bench/large_answer.py [--json] [--answer-mb 100] [--entry-bytes 4194304]

A ``semcache serve`` subprocess in front of an upstream in this process that answers a chat
completion of ``--answer-mb`` MB (plain, and gzip-compressed) and an embeddings batch of
2,048 inputs x 3,072 dimensions (about 125 MB of JSON). Each is asked once (a miss) by a
client that reads and discards the answer; the figure is the proxy's
peak resident set (``VmHWM``) against its resident set before, both from ``/proc``. Each route
runs in a fresh proxy, so that one peak does not hide the next. Linux only.

Against another checkout's proxy (a before/after figure): ``PYTHONPATH=/that/checkout``, which
``semcache serve`` honours.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import print_report  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

MB = 1_000_000
EMBEDDING_INPUTS = 2048
EMBEDDING_DIMS = 3072
WRITE_BYTES = 1 << 20


class Upstream:
    """Answers each path with one prebuilt body, written in 1 MB pieces (raw asyncio: a fake
    that built its answer per request would be the slow part)."""

    def __init__(self, answers: dict[bytes, tuple[bytes, bytes]]) -> None:
        self.answers = answers
        """Path -> (extra header lines, body)."""
        self.port = free_port()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Upstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                extra, body = self.answers[path]
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + extra
                    + b"content-length: %d\r\n\r\n" % len(body)
                )
                view = memoryview(body)
                for i in range(0, len(body), WRITE_BYTES):
                    writer.write(view[i : i + WRITE_BYTES])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def ask(url: str, body: dict[str, Any]) -> tuple[float, int]:
    """Seconds to read the whole answer, discarded as it arrives, and its bytes."""
    started = time.perf_counter()
    got = 0
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", url, json=body, headers={"authorization": "Bearer sk-bench"}) as r,
    ):
        assert r.status_code == 200, r.status_code
        assert r.headers["x-cache"] == "MISS"
        for chunk in r.iter_raw():
            got += len(chunk)
    return time.perf_counter() - started, got


def answers(answer_mb: int) -> tuple[dict[bytes, tuple[bytes, bytes]], dict[str, int]]:
    text = "x" * (answer_mb * MB)
    chat = orjson.dumps(
        {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": text}}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    )  # fmt: skip
    del text
    vector = [(j * 2654435761 % 2**32) / 2**32 - 0.5 for j in range(EMBEDDING_DIMS)]
    embeddings = orjson.dumps(
        {"object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
         "data": [{"object": "embedding", "index": i, "embedding": vector}
                  for i in range(EMBEDDING_INPUTS)]}
    )  # fmt: skip
    served = {
        b"/v1/chat/completions": (b"", chat),
        b"/gz/chat/completions": (b"content-encoding: gzip\r\n", gzip.compress(chat, 1)),
        b"/v1/embeddings": (b"", embeddings),
    }
    sizes = {"chat": len(chat), "chat_gzip": len(chat), "embeddings": len(embeddings)}
    return served, sizes


def run(answer_mb: int, entry_bytes: int) -> dict[str, Any]:
    served, sizes = answers(answer_mb)
    chat = {"model": "m", "messages": [{"role": "user", "content": "a long answer"}]}
    inputs = {"model": "m", "input": [f"item {i}" for i in range(EMBEDDING_INPUTS)]}
    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("chat", "/v1", "/chat/completions", chat),
        ("chat_gzip", "/gz", "/chat/completions", chat),
        ("embeddings", "/v1", "/embeddings", inputs),
    ]
    report: dict[str, Any] = {"entry_bytes": entry_bytes}
    with Upstream(served) as upstream:
        for name, base, path, body in cases:
            env = {"SEMCACHE_MAX_ENTRY_BYTES": str(entry_bytes)}
            with ProxyProcess(f"http://127.0.0.1:{upstream.port}{base}", env=env) as proxy:
                before = status_kb(proxy.pid, "VmRSS")
                seconds, got = ask(proxy.base_url + path, body)
                peak = status_kb(proxy.pid, "VmHWM")
            # Relayed as sent; a proxy that stores embeddings serves them re-encoded (float32).
            assert got == sizes[name] or name == "embeddings", (name, got, sizes[name])
            report[f"{name}_answer_mb"] = round(sizes[name] / MB, 1)
            report[f"{name}_served_mb"] = round(got / MB, 1)
            report[f"{name}_rss_before_mb"] = round(before * 1024 / MB, 1)
            report[f"{name}_peak_rss_mb"] = round(peak * 1024 / MB, 1)
            report[f"{name}_seconds"] = round(seconds, 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--answer-mb", type=int, default=100, help="the chat answer's size")
    parser.add_argument("--entry-bytes", type=int, default=4 * 1024 * 1024)
    args = parser.parse_args()
    report = run(args.answer_mb, args.entry_bytes)
    print_report(report, as_json=args.json)


if __name__ == "__main__":
    main()
