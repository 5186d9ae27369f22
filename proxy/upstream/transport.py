"""The transport under httpx: aiohttp's connection pool, with one guard added.

Why aiohttp: it is the pool the openai SDK offers for load (``DefaultAioHttpClient``, through
httpx-aiohttp), and it costs the least CPU per request, by far at concurrency
(``bench/upstream_client.py``; figures in pyproject.toml). :class:`AiohttpTransport` is the
adapter, an ``httpx.AsyncBaseTransport`` (httpx's documented extension point) as httpx-aiohttp's
is, minus what costs time on every miss and serves nothing here: it hands aiohttp the header list
as it is (no merging of repeated fields into one), a parsed URL and a timeout made once, and maps
aiohttp's errors only when one is raised (with the request built in httpx's server-side form by
:class:`~proxy.upstream.client.Upstream`, a miss's upstream call costs 70-100 us less CPU than on
httpx-aiohttp's; README, "Performance"). aiohttp speaks HTTP/1.1 only; why semcache does
without HTTP/2 to the upstream: the README, "The connection to the upstream".

The guard: a pooled connection must never hand one request the bytes of another. aiohttp parses
whatever arrives, also on an idle connection or past the end of a response, and queues it as the
next response; its pool reuses any connection whose socket is open. :class:`GuardedConnector`
reuses a connection only when nothing is queued or waiting in its socket, as semcache's own
HTTP/1.1 client did before it (``tests/integration/test_transport.py``).

Proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``; ``NO_PROXY``
exempts hosts), TLS trust from ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` or else certifi's bundle, as
httpx does (``httpx.create_ssl_context``).
"""

from __future__ import annotations

import functools
import select
import ssl
import urllib.request
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl

# Below the 5 s idle timeout of uvicorn and Node servers: reusing a connection the server is
# closing at that very moment would fail the request (a POST cannot be retried blindly).
KEEPALIVE_EXPIRY_SECONDS = 4.0
# Headers aiohttp would add on its own: semcache sends what the client sent, plus Host and the
# body's framing (an Accept-Encoding it invented would change what the upstream sends back).
_NOT_ADDED = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# aiohttp warns of each body above 1 MiB given as bytes (a chat request with images): it is
# written to the socket in one call, which does not block an asyncio transport. (pyproject's
# pytest filter says the same for the tests.)
warnings.filterwarnings("ignore", message="Sending a large body directly", category=ResourceWarning)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, None for ever: to connect, for each read and write, for a free slot."""

    connect: float | None = 10.0
    read: float | None = 600.0
    write: float | None = 600.0
    pool: float | None = 600.0


def upstream_transport(
    url: str,
    *,
    max_connections: int = 100,
    keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncBaseTransport:
    """The one transport to the upstream at ``url`` (its pool is made in the running loop, at
    the first request). ``ssl_context`` replaces the trust taken from the environment."""
    proxy = environment_proxy(url)
    tls = httpx.create_ssl_context(trust_env=True) if ssl_context is None else ssl_context

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=GuardedConnector(
                limit=max_connections, keepalive_timeout=keepalive_expiry, ssl=tls
            ),
            # One pool serves every tenant: an upstream's Set-Cookie must never ride along
            # with someone else's request.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NOT_ADDED,
            trust_env=False,  # the proxy is chosen here, once, and httpx's TLS trust used
        )

    return AiohttpTransport(session, proxy=None if proxy is None else httpx.Proxy(proxy))


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent on an aiohttp session, made by ``session`` in the running loop at the
    first request. A request's ``timeout`` extension (httpx's: connect, read, write, pool) maps
    to aiohttp's socket connect and read timeouts and its wait for a connection; aiohttp's
    errors become httpx's (``from`` the original, which decides what the client is told)."""

    def __init__(
        self, session: Callable[[], aiohttp.ClientSession], *, proxy: httpx.Proxy | None = None
    ) -> None:
        self._make_session = session
        self._session: aiohttp.ClientSession | None = None
        self.proxy = proxy
        self._proxy_options: dict[str, Any] = {}
        if proxy is not None:
            auth = None if proxy.auth is None else aiohttp.BasicAuth(*proxy.auth)
            self._proxy_options = {"proxy": str(proxy.url), "proxy_auth": auth,
                                   "proxy_headers": dict(proxy.headers) or None}  # fmt: skip

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._make_session()
        headers = request.headers.raw
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a body streamed from the client (passthrough)
            data = request.stream
            headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
        timeout = request.extensions.get("timeout") or {}
        try:
            response = await session.request(
                request.method,
                _url(str(request.url)),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
                **self._proxy_options,
            )
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response),
            request=request, extensions=extensions,
        )  # fmt: skip

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx.AsyncByteStream):
    """A response's body as it arrives, each piece as soon as it is there."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc

    async def aclose(self) -> None:
        try:
            self._response.release()
            await self._response.wait_for_close()
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc


# aiohttp's errors as httpx's, most specific first (as httpx-aiohttp maps them).
_ERRORS: tuple[tuple[type[aiohttp.ClientError], type[httpx.TransportError]], ...] = (
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.TimeoutException),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),
)


def httpx_error(exc: aiohttp.ClientError) -> Exception:
    """The httpx error for ``exc`` (raise it ``from exc``); one httpx does not name (a
    malformed response) stays aiohttp's."""
    for kind, mapped in _ERRORS:
        if isinstance(exc, kind):
            return mapped(str(exc) or type(exc).__name__)
    return exc


@functools.lru_cache(maxsize=256)
def _url(url: str) -> yarl.URL:
    """The upstream URLs repeat: each parsed once (httpx has encoded it already)."""
    return yarl.URL(url, encoded=True)


@functools.lru_cache(maxsize=64)
def _timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``: ``<scheme>_proxy`` or ``all_proxy`` (either
    case), unless ``no_proxy`` exempts its host; None for a direct connection."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's pool, reusing an idle connection only when nothing arrived on it since its last
    response ended: no queued message or bytes, no error, and nothing (data or the close of
    the peer) waiting in its socket that the event loop has not read yet.

    ``_get`` is aiohttp's own (private) step that takes an idle connection from the pool; if an
    aiohttp release stopped calling it, tests/integration/test_transport.py would fail."""

    async def _get(self, *args: Any, **kwargs: Any) -> Any:
        while True:
            connection = await super()._get(*args, **kwargs)
            if connection is None or _clean(connection):
                return connection
            connection.close()  # then try the next idle one, or connect anew


def _clean(connection: aiohttp.connector.Connection) -> bool:
    protocol = connection.protocol
    transport = connection.transport
    if protocol is None or transport is None or protocol.should_close:
        return False
    sock = transport.get_extra_info("socket")
    if sock is None:
        return True  # not a socket (a test's transport): nothing to ask
    try:
        return not _readable(sock)
    except (OSError, ValueError):
        return False


def _readable(sock: Any) -> bool:
    """One look at the socket, without waiting. ``poll`` where there is one: ``select`` fails
    for a descriptor above 1023 (FD_SETSIZE), which a proxy with many clients reaches; Windows
    has no ``poll``, and its ``select`` takes any socket."""
    poll = getattr(select, "poll", None)
    if poll is None:
        return bool(select.select([sock], [], [], 0)[0])
    poller = poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
