"""The floor for a miss through any Python proxy: a bare relay that forwards and streams back.

    python -m bench.relay_floor --port P --upstream URL [--host 127.0.0.1]

``POST /v1/...`` reads the request body, sends it to ``URL`` + the path after ``/v1`` on one
shared aiohttp session (the least CPU per request of the clients measured in
``bench/upstream_client.py``) and relays the answer's status, headers and body chunks as they
arrive; ``GET /healthz`` answers 200. It is served exactly as ``semcache serve`` is (as
``bench/baseline.py``): ``uvicorn.run``, uvloop when installed, semcache's HTTP protocol, no
access log. Nothing a cache must do (validate, hash, look up, single flight, store, capture a
stream) is done here, so its added latency over the upstream direct is what the extra hop alone
costs on this machine: the part of ``miss_added_p50_ms`` and ``ttfb_added_ms`` no cache logic
can remove. ``bench/run.py`` measures it beside semcache (``*_floor`` keys).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from proxy.http.server import CoalescingProtocol

_HOP = (b"host", b"content-length", b"transfer-encoding", b"connection")


class Relay:
    """The ASGI app: a pure relay on one aiohttp session."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b'{"status": "ok"}'})
            return
        assert self.session is not None
        url = self.upstream + scope["path"].removeprefix("/v1")
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
        async with self.session.request(scope["method"], url, data=body, headers=headers) as r:
            out = [(k, v) for k, v in r.raw_headers if k.lower() not in _HOP]
            await send({"type": "http.response.start", "status": r.status, "headers": out})
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with self._session():
            await receive()  # startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        try:
            yield
        finally:
            await self.session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        Relay(args.upstream),
        http=CoalescingProtocol,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
