"""The floor for a miss: what a proxy that caches nothing adds over calling the upstream.

    python bench/floor.py [--rounds 4] [--seconds 3] [--stream 300] [--json]

The null proxy (``python -m bench.floor --serve PORT UPSTREAM``) is a bare Starlette app on
uvicorn, served as ``semcache serve`` is, that forwards ``POST /v1/chat/completions`` with the
caller's headers (minus hop-by-hop ones) through semcache's own HTTP client and returns the
answer: no validation, key, lookup or store. In
interleaved rounds at one connection (wrk when installed) it measures the fake upstream (20 ms)
directly, through the null proxy, and through ``semcache serve`` on a miss; the figures are
medians of the rounds' p50s. What the null proxy adds is the cost of the extra hop on this
stack and machine, below which the miss target of ``bench/run.py`` cannot go.

``--stream N`` also times the first byte of N streamed misses on each (interleaved request by
request, as ``bench/run.py`` does); the null proxy relays a stream chunk by chunk as it arrives.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import UpstreamProcess  # noqa: E402
from bench.loadgen import UNIQUE, pick  # noqa: E402
from bench.scenarios import chat, chat_load  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

UPSTREAM_LATENCY_MS = 20.0


def serve(port: int, upstream: str) -> None:
    """Run the null proxy in this process until it is killed."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from proxy.http.server import CoalescingProtocol
    from proxy.upstream.transport import upstream_transport

    client = upstream_transport(upstream)
    target = upstream.rstrip("/") + "/chat/completions"

    class Relay(Response):
        """Each upstream chunk to the client as it arrives."""

        def __init__(self, answer: Any) -> None:
            self.answer = answer
            self.background = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            answer = self.answer
            headers = [(k.lower(), v) for k, v in answer.headers.raw if k.lower() not in hop]
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": answer.status_code,
                        "headers": headers,
                    }
                )
                async for chunk in answer.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await answer.aclose()

    hop = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding"}

    async def chat_completions(request: Request) -> Response:
        body = await request.body()
        # As any proxy must: the caller's headers go on (its key, its content type), minus
        # the hop-by-hop ones.
        headers = [(k, v) for k, v in request.scope["headers"] if k not in hop]
        forward = httpx.Request("POST", target, headers=headers, content=body)
        answer = await client.handle_async_request(forward)
        if b'"stream":true' in body:
            return Relay(answer)
        try:
            content = b"".join([chunk async for chunk in answer.aiter_raw()])
        finally:
            await answer.aclose()
        return Response(content, status_code=answer.status_code, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, server_header=False,
                proxy_headers=False, http=CoalescingProtocol, log_level="warning")  # fmt: skip


def started(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def first_bytes(bases: dict[str, str], requests: int) -> dict[str, Any]:
    """Median first-byte times of streamed misses, each proxy's added time over direct."""
    from bench.scenarios import first_byte

    run_id = uuid.uuid4().hex[:8]
    ttfb: dict[str, list[float]] = {name: [] for name in bases}
    with httpx.Client(timeout=30) as client:
        for i in range(-3, requests):  # three to warm up
            for name, base in bases.items():
                body = chat(f"floor stream {run_id} {name} {i}", stream=True)
                seconds = first_byte(client, base, body)[0]
                if i >= 0:
                    ttfb[name].append(seconds * 1000)
    direct = statistics.median(ttfb["direct"])
    out: dict[str, Any] = {"ttfb_direct_p50_ms": direct}
    for name in ("null_proxy", "semcache"):
        out[f"ttfb_{name}_added_p50_ms"] = statistics.median(ttfb[name]) - direct
    return out


def run(rounds: int, seconds: float, stream: int = 0) -> dict[str, Any]:
    generator = pick("auto")
    p50s: dict[str, list[float]] = {"direct": [], "null_proxy": [], "semcache": []}
    with UpstreamProcess(UPSTREAM_LATENCY_MS) as upstream, ProxyProcess(upstream.url) as proxy:
        port = free_port()
        null = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "--serve", str(port), upstream.url], cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 15
            while not started(port):
                if time.monotonic() > deadline or null.poll() is not None:
                    raise SystemExit("the null proxy did not start")
                time.sleep(0.1)
            bases = {
                "direct": upstream.url,
                "null_proxy": f"http://127.0.0.1:{port}/v1",
                "semcache": proxy.base_url,
            }
            streamed = first_bytes(bases, stream) if stream else {}
            for _ in range(rounds):
                for name, base in bases.items():
                    body = chat(f"floor {uuid.uuid4().hex[:8]} {UNIQUE.decode()}")
                    result = generator.run(chat_load(base, body, 1, seconds))
                    if result.errors:
                        raise SystemExit(f"{name}: {result.errors} failed requests")
                    p50s[name].append(result.p50_ms)
        finally:
            null.kill()
            null.wait()
    direct = statistics.median(p50s["direct"])
    out: dict[str, Any] = {"generator": generator.name, "rounds": rounds, "direct_p50_ms": direct}
    for name in ("null_proxy", "semcache"):
        out[f"{name}_p50_ms"] = statistics.median(p50s[name])
        out[f"{name}_added_p50_ms"] = statistics.median(p50s[name]) - direct
    return out | streamed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stream", type=int, default=0, metavar="N",
                        help="also time the first byte of N streamed misses on each")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    result = run(args.rounds, args.seconds, args.stream)
    if args.json:
        print(orjson.dumps(result).decode())
        return
    print(f"direct p50 {result['direct_p50_ms']:.2f} ms ({result['generator']}, c1)")
    for name in ("null_proxy", "semcache"):
        print(f"{name:11s} p50 {result[f'{name}_p50_ms']:.2f} ms, "
              f"added {result[f'{name}_added_p50_ms']:.3f} ms")  # fmt: skip
    if args.stream:
        print(f"stream TTFB direct p50 {result['ttfb_direct_p50_ms']:.2f} ms; added: null proxy "
              f"{result['ttfb_null_proxy_added_p50_ms']:.3f} ms, "
              f"semcache {result['ttfb_semcache_added_p50_ms']:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
