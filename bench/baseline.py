"""The ceiling for any Python proxy: a bare Starlette app answering one fixed chat completion.

    python -m bench.baseline --port P [--host 127.0.0.1] [--body-file FILE]

``POST /v1/chat/completions`` reads the request body (as a proxy must) and returns the fixed
completion JSON (``--body-file``, else a built-in one); ``GET /healthz`` answers 200 for
readiness checks. It is served exactly as ``semcache serve`` serves the proxy: ``uvicorn.run``
in one process, uvicorn's own choice of event loop (uvloop when installed), semcache's HTTP
protocol (:mod:`proxy.http.server`: uvicorn's httptools protocol, a response's head joined to its
body), no access log, no ``server`` header. Nothing a real proxy must do (validate, hash,
look up, add headers) is done here, so no Python proxy on uvicorn can answer faster.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.http.server import CoalescingProtocol

DEFAULT_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-baseline",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "answer 1: Paris."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        "system_fingerprint": "fp_fake",
    }
)


def create_app(completion: bytes = DEFAULT_COMPLETION) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        await request.body()
        return Response(completion, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--body-file", type=Path, help="the completion JSON to serve")
    args = parser.parse_args()
    completion = args.body_file.read_bytes() if args.body_file else DEFAULT_COMPLETION
    # The same call and options as proxy.cli.run: the comparison is app against app.
    uvicorn.run(
        create_app(completion),
        http=CoalescingProtocol,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
