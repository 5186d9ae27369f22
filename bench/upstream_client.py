"""CPU per upstream request of each candidate transport for httpx, sequential and concurrent:
httpx's own, httpx-aiohttp's (when installed) and semcache's (aiohttp's pool, the one it uses).

    .venv/bin/python bench/upstream_client.py [--requests N] [--concurrency C] [--json]

A server in its own process answers every request at once with a fixed completion (keep-alive,
Content-Length), so the figures are the client's own cost: ``time.process_time()`` of this
process divided by the requests, on uvloop as ``semcache serve`` runs. Each transport runs
with the body read whole and closed, as :class:`proxy.upstream.Upstream` does.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port  # noqa: E402

BODY = orjson.dumps(
    {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "x" * 400}, "finish_reason": "stop"}]}
)  # fmt: skip
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (
    len(BODY),
    BODY,
)


def serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
        await server.serve_forever()

    import uvloop

    uvloop.run(main())


def transports() -> dict[str, Callable[[], httpx.AsyncBaseTransport]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    found: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
        "httpx": lambda: httpx.AsyncHTTPTransport(limits=limits),
    }
    try:  # not a dependency: installed by hand to compare (pip install httpx-aiohttp)
        other = importlib.import_module("httpx_aiohttp").AiohttpTransport
    except ImportError:
        pass
    else:
        found["httpx-aiohttp"] = lambda: other(limits=limits)
    from proxy.upstream.transport import upstream_transport

    found["semcache"] = lambda: upstream_transport("http://127.0.0.1", max_connections=100)
    return found


async def measure(
    make: Callable[[], httpx.AsyncBaseTransport], url: str, requests: int, concurrency: int
) -> float:
    """Microseconds of CPU per request."""
    transport = make()
    payload = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer k")]

    async def one() -> None:
        request = httpx.Request("POST", url, headers=headers, content=payload)
        response = await transport.handle_async_request(request)
        try:
            async for _ in response.aiter_raw():
                pass
        finally:
            await response.aclose()

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(worker(10) for _ in range(concurrency)))  # warm the pool
    started = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    spent = time.process_time() - started
    await transport.aclose()
    return spent / (requests // concurrency * concurrency) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    results: dict[str, dict[str, float]] = {}
    try:
        import uvloop

        time.sleep(0.5)
        for name, make in transports().items():
            for label, concurrency in (("sequential", 1), ("concurrent", args.concurrency)):
                runs = [
                    uvloop.run(measure(make, url, args.requests, concurrency))
                    for _ in range(args.rounds)
                ]
                results.setdefault(name, {})[f"cpu_us_per_request_{label}"] = round(
                    statistics.median(runs), 1
                )
    finally:
        server.terminate()
        server.join()
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        for name, figures in results.items():
            print(name, figures)


if __name__ == "__main__":
    main()
