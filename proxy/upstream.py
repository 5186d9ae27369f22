"""The one connection pool to the upstream: forward a request, map transport errors.

Every httpx error is translated here, and only here, into the UpstreamError tree.
"""

from __future__ import annotations

import functools
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from proxy.errors import (
    OverloadedError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)
from proxy.http1 import Http1Transport
from proxy.metrics import Metrics
from proxy.settings import Settings

# RFC 9110 §7.6.1 hop-by-hop fields, plus fields httpx sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Encodings httpx can decode without extra packages, asked for when semcache reads a body whole.
DECODABLE_ENCODINGS = b"gzip, deflate"
# A stream semcache parses while relaying must arrive uncompressed, event by event.
IDENTITY = b"identity"

Headers = list[tuple[bytes, bytes]]


class Upstream:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        base_url: str,
        api_key: str | None,
        metrics: Metrics,
        timeout: httpx.Timeout,
        max_inflight: int | None = None,
        queue_timeout_seconds: float = 10.0,
    ) -> None:
        """``transport`` is the one connection pool to the upstream. No client layer sits on
        it: semcache follows no redirect and keeps no cookie (one pool serves every tenant, so
        an upstream's Set-Cookie must never ride along with someone else's request)."""
        self._transport = transport
        self._base_url = base_url.rstrip("/")
        self._auth = None if api_key is None else b"Bearer " + api_key.encode()
        self._metrics = metrics
        self._extensions = {"timeout": timeout.as_dict()}
        self._slots = None if max_inflight is None else anyio.Semaphore(max_inflight)
        self._queue_timeout_seconds = queue_timeout_seconds

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Upstream:
        """``transport`` defaults to :func:`default_transport`."""
        return cls(
            default_transport(settings) if transport is None else transport,
            base_url=settings.upstream_url,
            api_key=settings.upstream_api_key,
            metrics=metrics,
            timeout=httpx.Timeout(
                settings.upstream_timeout_seconds,
                connect=settings.upstream_connect_timeout_seconds,
            ),
            max_inflight=settings.max_inflight,
            queue_timeout_seconds=settings.queue_timeout_seconds,
        )

    async def close(self) -> None:
        await self._transport.aclose()

    def url(self, path: str, query: bytes = b"") -> str:
        """``path`` is what follows ``/v1`` in the client's request, e.g. ``/chat/completions``."""
        url = self._base_url + path
        return url + "?" + query.decode("latin-1") if query else url

    def forward_headers(
        self, headers: Iterable[tuple[bytes, bytes]], *, accept_encoding: bytes | None = None
    ) -> Headers:
        """The client's headers minus hop-by-hop and semcache's own ``X-Cache-*`` controls.

        The upstream key is added only when the client sends none. ``accept_encoding`` replaces
        the client's when semcache reads the body itself and must be able to decode it.
        """
        out: Headers = []
        has_key = False
        for name, value in headers:
            lower = name.lower()
            if lower in _DROP or lower.startswith(b"x-cache-"):
                continue
            if accept_encoding is not None and lower == b"accept-encoding":
                continue
            if lower in (b"authorization", b"api-key", b"x-api-key", b"x-goog-api-key"):
                has_key = True
            # A field value has no surrounding whitespace (RFC 9110 §5.5); httpx refuses it.
            out.append((name, value.strip(b" \t")))
        if accept_encoding is not None:
            out.append((b"accept-encoding", accept_encoding))
        if not has_key and self._auth is not None:
            out.append((b"authorization", self._auth))
        return out

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Headers,
        content: bytes | AsyncIterable[bytes] | None,
    ) -> httpx.Response:
        """Send and return once the response headers arrived; the caller reads or streams the
        body and closes the response, which frees its slot (``SEMCACHE_MAX_INFLIGHT``)."""
        release = await self._take_slot()
        started = time.perf_counter()
        try:
            with self.errors():
                request = httpx.Request(
                    method, _parsed(url), headers=headers, content=content,
                    extensions=self._extensions,
                )  # fmt: skip
                response = await self._transport.handle_async_request(request)
                response.request = request
        except BaseException:
            release()
            raise
        self._metrics.upstream_latency.observe(time.perf_counter() - started)
        if self._slots is not None:
            response.stream = _SlotStream(response.stream, release)
        return response

    async def _take_slot(self) -> Callable[[], None]:
        slots = self._slots
        if slots is None:
            return _nothing
        if slots.value == 0:
            self._metrics.upstream_errors["queued"] += 1
        try:
            with anyio.fail_after(self._queue_timeout_seconds):
                await slots.acquire()
        except TimeoutError:
            self._metrics.upstream_errors["overloaded"] += 1
            raise OverloadedError(
                "too many requests in flight to the upstream; retry shortly",
                headers=[(b"retry-after", b"1")],
            ) from None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        return release

    async def read(self, response: httpx.Response) -> bytes:
        try:
            with self.errors():
                return await response.aread()
        finally:
            await response.aclose()

    async def iter_raw(self, response: httpx.Response) -> AsyncIterator[bytes]:
        with self.errors():
            async for chunk in response.aiter_raw():
                yield chunk

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectTimeout as exc:
            raise self._failed(UpstreamUnreachableError, "connect timeout", exc) from exc
        except httpx.TimeoutException as exc:
            raise self._failed(UpstreamTimeoutError, "timeout", exc) from exc
        except httpx.HTTPError as exc:
            raise self._failed(UpstreamUnreachableError, "unreachable", exc) from exc

    def _failed(self, kind: type[UpstreamError], label: str, exc: Exception) -> UpstreamError:
        self._metrics.upstream_errors[label] += 1
        detail = str(exc) or type(exc).__name__
        return kind(f"upstream {label}: {detail}")


_DROP = frozenset(name.encode() for name in HOP_BY_HOP)


def default_transport(settings: Settings) -> httpx.AsyncBaseTransport:
    """semcache's own HTTP/1.1 transport (:mod:`proxy.http1`), or httpx's when the environment
    names an HTTP proxy for the upstream (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, with
    ``NO_PROXY`` honoured), since only httpx's speaks to proxies."""
    proxy = _environment_proxy(settings.upstream_url)
    if proxy is None:
        return Http1Transport(max_connections=settings.upstream_max_connections)
    limits = httpx.Limits(
        max_connections=settings.upstream_max_connections,
        max_keepalive_connections=settings.upstream_max_connections,
    )
    return httpx.AsyncHTTPTransport(limits=limits, proxy=proxy)


def _environment_proxy(url: str) -> str | None:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> httpx.URL:
    """Parsing a URL costs more than sending the request; the chat and embeddings URLs repeat."""
    return httpx.URL(url)


# uvicorn adds its own Date; a response has one (RFC 9110 §6.6.1).
_DROP_RESPONSE = _DROP | {b"date"}


def _nothing() -> None:
    return None


class _SlotStream(httpx.AsyncByteStream):
    """The upstream body, giving its inflight slot back when closed (read, relayed or not)."""

    def __init__(self, inner: Any, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


def response_headers(response: httpx.Response, *, decoded: bool) -> Headers:
    """Upstream response headers to relay: hop-by-hop removed; ``content-encoding`` removed
    when httpx decoded the body."""
    out: Headers = []
    for name, value in response.headers.raw:
        lower = name.lower()
        if lower in _DROP_RESPONSE or (decoded and lower == b"content-encoding"):
            continue
        out.append((lower, value))
    return out
