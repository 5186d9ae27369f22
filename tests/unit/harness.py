"""Helpers for unit tests: a proxy app over ASGITransport, upstream simulated with respx."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
import respx
import uvicorn
from uvicorn.server import ServerState

from proxy.app import create_app
from proxy.http.server import CoalescingProtocol
from proxy.metrics import Metrics
from proxy.semantic.embedders import Embedder, Reader
from proxy.semantic.verifier import Verifier
from proxy.settings import Settings
from proxy.stores.memory import MemoryStore
from proxy.upstream import Upstream

UPSTREAM = "http://upstream.test/v1"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def completion(
    content: str | None = "Paris.", *, finish: str = "stop", **extra: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message.update(extra)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def chat_body(text: str = "What is the capital of France?", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **fields}


@dataclass
class Proxy:
    client: httpx.AsyncClient
    upstream: respx.MockRouter
    clock: FakeClock
    metrics: Metrics
    store: MemoryStore
    app: Any = None

    async def chat(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.client.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-test-a", **headers},
        )


class make_proxy:
    """A proxy app over ASGITransport with a respx-simulated upstream."""

    def __init__(
        self,
        router: respx.MockRouter,
        clock: FakeClock,
        *,
        embedder: Embedder | None = None,
        reader: Reader | None = None,
        verifier: Verifier | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings(upstream_url=UPSTREAM, **settings)
        self.router = router
        self.clock = clock
        self.embedder = embedder
        self.reader = reader
        self.verifier = verifier

    async def __aenter__(self) -> Proxy:
        self.metrics = Metrics()
        self.store = MemoryStore(
            max_entries=self.settings.memory_max_entries,
            max_bytes=self.settings.memory_max_bytes,
            clock=self.clock,
        )
        # httpx's own transport: respx intercepts it (semcache's is tested over real sockets).
        self.upstream = Upstream.from_settings(
            self.settings, self.metrics, transport=httpx.AsyncHTTPTransport()
        )
        app = create_app(
            self.settings,
            store=self.store,
            upstream=self.upstream,
            metrics=self.metrics,
            embedder=self.embedder,
            reader=self.reader,
            verifier=self.verifier,
            clock=self.clock,
        )
        self.lifespan = app.router.lifespan_context(app)
        await self.lifespan.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://semcache.test"
        )
        return Proxy(self.client, self.router, self.clock, self.metrics, self.store, app)

    async def __aexit__(self, *exc: object) -> None:
        await self.lifespan.__aexit__(None, None, None)
        await self.client.aclose()
        await self.upstream.close()


QUESTION = "What is the capital of France?"
SAME_WORDS = "the capital of France is what?"
"""The same bag of words as ``QUESTION``: cosine 1.0 under the hash embedder."""
INDENTED = "  print(1)\nprint(2)\nWhy does Python raise an error here?"
"""Python refuses this code (unexpected indent on its first line); unindented it runs."""


def numbered(request: httpx.Request, route: respx.Route) -> httpx.Response:
    """An upstream whose n-th answer says ``answer n``: a wrong hit shows."""
    return httpx.Response(200, json=completion(f"answer {route.call_count + 1}"))


def tier_served(request: httpx.Request) -> str:
    """The tier the API names in its answer to ``request``: the one asked (``fast`` shown as
    ``priority``), or the project's (``default``) for ``auto`` or none."""
    asked = orjson.loads(request.content).get("service_tier")
    return "default" if asked in (None, "auto") else {"fast": "priority"}.get(asked, asked)


class Held:
    """An upstream that answers ``body`` only once the test sets ``release``."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.release = anyio.Event()
        self.body = body

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await self.release.wait()
        return httpx.Response(200, json=self.body)


class FakeSocket:
    """The client's end of one connection a server protocol writes to: each write, and whether
    the server closed or aborted it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default


def served_on(app: Any) -> tuple[CoalescingProtocol, FakeSocket]:
    """``app`` behind semcache's serving protocol (:mod:`proxy.http.server`, uvicorn's
    httptools protocol) on one fake connection, as ``semcache serve`` makes one per client:
    bytes given to ``data_received`` are a request, what it writes lands on the socket."""
    config = uvicorn.Config(app, http=CoalescingProtocol, lifespan="off", log_config=None)
    config.load()
    protocol = CoalescingProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    socket = FakeSocket()
    protocol.connection_made(socket)  # type: ignore[arg-type]
    return protocol, socket
