"""The ASGI application: routes, error handlers and the lifespan of what it opens."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from proxy.cache.answers import JSON, error_response, raw_response
from proxy.cache.completions import COMPLETIONS
from proxy.cache.embeddings import EmbeddingPipeline
from proxy.cache.exact import ExactPipeline
from proxy.cache.feedback import Feedback
from proxy.cache.ollama import OllamaPipeline
from proxy.cache.pipeline import ChatPipeline
from proxy.cache.responses import RESPONSES
from proxy.cache.tenancy import Tenancy
from proxy.errors import HTTPError, NotFoundError, error_body
from proxy.http import admin, dashboard, entries, handlers, ollama, ops
from proxy.http.history import History
from proxy.http.readiness import UpstreamProbe
from proxy.metrics import Metrics
from proxy.requests import loggable
from proxy.semantic import SYNC_SECONDS, Adaptive, Embedder, Reader, Verifier, semantic_cache
from proxy.settings import Settings, mask_url
from proxy.stores import Cache, Store, open_store
from proxy.totals import Totals
from proxy.upstream import Upstream

log = logging.getLogger("semcache.app")
request_log = logging.getLogger("semcache.requests")
# What a browser's script may read of an answer besides the CORS-safelisted headers.
CORS_EXPOSED_HEADERS = [
    "x-cache", "x-cache-lookup", "x-cache-similarity", "x-cache-entry-id", "x-cache-reason", "age",
    "x-cache-hit-items", "x-cache-shadow", "x-request-id", "retry-after",
]  # fmt: skip
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    upstream: Upstream | None = None,
    metrics: Metrics | None = None,
    embedder: Embedder | None = None,
    reader: Reader | None = None,
    verifier: Verifier | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the app. Collaborators passed in stay the caller's to close; those the app opens
    itself (from ``settings``) are closed when its lifespan ends."""
    metrics = Metrics() if metrics is None else metrics
    owned_store = store is None
    owned_upstream = upstream is None
    store = open_store(settings) if store is None else store
    upstream = Upstream.from_settings(settings, metrics) if upstream is None else upstream
    cache = Cache(store, metrics, clock=clock)
    tenancy = Tenancy(
        secret=settings.secret,
        shared=settings.shared_cache,
        allowed_keys=settings.client_key_set(),
        identity_headers=settings.identity_header_set(),
    )
    semantic = semantic_cache(
        settings, cache, upstream, metrics, embedder=embedder, reader=reader, verifier=verifier
    )
    feedback = Feedback(cache, semantic)
    totals = Totals(cache, metrics)
    ollama_base = settings.ollama_base()
    services = handlers.Services(
        settings=settings,
        cache=cache,
        upstream=upstream,
        metrics=metrics,
        chat=ChatPipeline(
            cache,
            semantic,
            upstream,
            metrics,
            max_entry_bytes=settings.max_entry_bytes,
            coalesce_timeout_seconds=settings.coalesce_timeout_seconds,
            feedback=feedback,
        ),
        embeddings=EmbeddingPipeline(
            cache, upstream, metrics, max_entry_bytes=settings.max_entry_bytes
        ),
        completions=ExactPipeline(
            cache,
            upstream,
            metrics,
            COMPLETIONS,
            max_entry_bytes=settings.max_entry_bytes,
            coalesce_timeout_seconds=settings.coalesce_timeout_seconds,
            feedback=feedback,
        ),
        responses=ExactPipeline(
            cache,
            upstream,
            metrics,
            RESPONSES,
            max_entry_bytes=settings.max_entry_bytes,
            coalesce_timeout_seconds=settings.coalesce_timeout_seconds,
            semantic=semantic,
            feedback=feedback,
        ),
        ollama=None
        if ollama_base is None
        else OllamaPipeline(
            cache,
            upstream,
            metrics,
            semantic,
            base=ollama_base,
            max_entry_bytes=settings.max_entry_bytes,
            coalesce_timeout_seconds=settings.coalesce_timeout_seconds,
            feedback=feedback,
        ),
        semantic=semantic,
        tenancy=tenancy,
        feedback=feedback,
        probe=UpstreamProbe(upstream, own_key=settings.upstream_api_key is not None, clock=clock),
        totals=totals,
    )

    history = History(metrics, clock=clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not await cache.reachable():
            log.warning("store is unreachable at startup; serving uncached until it is back")
        await tenancy.start(cache)
        await semantic.start()
        log.info(
            "semcache on http://%s:%d -> %s (%s store); semantic matching %s",
            settings.host,
            settings.port,
            mask_url(settings.upstream_url),
            "memory" if settings.redis_url is None else "redis",
            semantic.state,
        )
        try:
            async with anyio.create_task_group() as background:
                background.start_soon(tenancy.keep_in_sync, cache)
                background.start_soon(history.run)
                background.start_soon(totals.keep_flushing)
                if semantic.enabled and semantic.auditor is not None:
                    background.start_soon(semantic.auditor.run)
                if semantic.enabled and semantic.adaptive is not None:
                    background.start_soon(_keep_syncing, semantic.adaptive)
                yield
                background.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await totals.flush()  # what was served since the last flush
            if owned_upstream:
                await upstream.close()
            if owned_store:
                await store.close()

    routes = [
        # POST /v1/chat/completions and /v1/embeddings: _App answers them before the router.
        Route("/v1/{path:path}", handlers.passthrough, methods=ALL_METHODS),
        Route("/api/{path:path}", ollama.ollama_api, methods=ALL_METHODS),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/readyz", ops.readyz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route("/cache/stats", ops.cache_stats, methods=["GET"]),
        Route("/cache", ops.clear_cache, methods=["DELETE"]),
        Route("/cache/feedback", ops.cache_feedback, methods=["POST"]),
        Route("/cache/explain", admin.cache_explain, methods=["POST"]),
        Route("/cache/import", admin.cache_import, methods=["POST"]),
        Route("/cache/export", entries.export, methods=["GET"]),
        Route("/cache/entries", entries.list_entries, methods=["GET"]),
        Route("/cache/entries", entries.delete_entries, methods=["DELETE"]),
        Route("/cache/entries/{entry_id}", entries.show_entry, methods=["GET"]),
        Route("/cache/entries/{entry_id}", entries.delete_entry, methods=["DELETE"]),
        Route("/dashboard", dashboard.page, methods=["GET"]),
        Route("/dashboard/login", dashboard.login, methods=["POST"]),
        Route("/dashboard/logout", dashboard.logout, methods=["POST"]),
        Route("/dashboard/data", dashboard.data, methods=["GET"]),
        Route("/dashboard/static/{name}", dashboard.static, methods=["GET"]),
    ]
    app = _App(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_exception,
            HTTPError: _semcache_error,
            Exception: _unexpected,
        },
    )
    app.state.services = services
    app.state.history = history
    origins = settings.cors_origin_list()
    if origins:
        app.cors = CORSMiddleware(
            app._serve,
            allow_origins=origins,
            allow_methods=ALL_METHODS,
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    return app


Endpoint = Callable[[Request], Awaitable[Response]]
# The cache's own routes, called straight from the app (see _App).
_HOT_ROUTES: dict[str, Endpoint] = {
    "/v1/chat/completions": handlers.chat_completions,
    "/v1/embeddings": handlers.embeddings,
    "/v1/completions": handlers.completions,
    "/v1/responses": handlers.responses,
}


class _App(Starlette):
    """Starlette, but a ``POST`` to one of the cache's own routes goes straight to its handler,
    past the middleware stack and the router: on a miss those layers cost about 0.1 ms of the
    added latency here (``bench/floor.py``). The handlers answer their own errors; a bug in one
    gets the same 500 as on any other route. Everything else takes the usual way: a cache
    route's path with percent-escapes too, passed through as sent (``handlers.as_routed``)."""

    cors: CORSMiddleware | None = None
    """Set when ``SEMCACHE_CORS_ORIGINS`` is: it wraps every route, the hot ones too."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serve = self._serve if self.cors is None else self.cors
        if scope["type"] == "http" and request_log.isEnabledFor(logging.DEBUG):
            await _logged(serve, scope, receive, send)
            return
        await serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = _HOT_ROUTES.get(scope["path"])
            if endpoint is not None and handlers.as_routed(scope):
                scope["app"] = self
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                except Exception as exc:
                    response = await _unexpected(request, exc)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _keep_syncing(adaptive: Adaptive) -> None:
    """The adaptive thresholds' evidence to and from the store, every ``SYNC_SECONDS``."""
    while True:
        try:
            await adaptive.sync()
        except Exception:  # never let the loop die; the store wrapper already logs failures
            log.exception("adaptive threshold sync failed")
        await anyio.sleep(SYNC_SECONDS)


async def _logged(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """``--log-level debug``: one line per request once it is answered. The path only (a query
    string may carry a key), the status, what the cache did, and the time taken."""
    start = time.perf_counter()
    seen: dict[str, Any] = {
        "status": 0, "cache": "-", "lookup": "", "similarity": "", "reason": ""
    }  # fmt: skip

    async def watch(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
            for name, value in message.get("headers", ()):
                if name in _LOGGED_HEADERS:
                    seen[_LOGGED_HEADERS[name]] = value.decode("latin-1")
        await send(message)

    try:
        await app(scope, receive, watch)
    finally:
        detail = " ".join(v for v in (seen["lookup"], seen["similarity"], seen["reason"]) if v)
        request_log.debug(
            "%s %s %s %s%s %.1f ms",
            scope["method"],
            loggable(scope["path"]),  # decoded: an escaped CR or LF is one here
            seen["status"],
            seen["cache"],
            f" ({detail})" if detail else "",
            (time.perf_counter() - start) * 1000,
        )


_LOGGED_HEADERS = {
    b"x-cache": "cache",
    b"x-cache-lookup": "lookup",
    b"x-cache-similarity": "similarity",
    b"x-cache-reason": "reason",
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFoundError(f"no route for {request.url.path}"))
    body = error_body(str(exc.detail), "invalid_request_error", code=str(exc.status_code))
    return raw_response(body, exc.status_code, [JSON])


async def _semcache_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, loggable(request.url.path))
    body = error_body("semcache failed unexpectedly; see its log", "server_error", code="internal")
    return raw_response(body, 500, [JSON])
