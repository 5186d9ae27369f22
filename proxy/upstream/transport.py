"""The transport under httpx: aiohttp's connection pool (httpx-aiohttp), with one guard added.

Why aiohttp: it is the transport the openai SDK offers for load (``DefaultAioHttpClient``), and it
costs the least CPU per request, by far at concurrency (``bench/upstream_client.py``; figures in
pyproject.toml). aiohttp speaks HTTP/1.1 only; why semcache does without HTTP/2 to the upstream:
the README, "The connection to the upstream".

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

import select
import ssl
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

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

    return AiohttpTransport(proxy=None if proxy is None else httpx.Proxy(proxy), client=session)


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
