"""The one client to the upstream (httpx on :mod:`proxy.upstream.transport`): forward a
request, map transport errors.

Every transport error is translated by :mod:`proxy.upstream.failures`, and only there, into
the UpstreamError tree.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Protocol
from urllib.parse import urlsplit

import anyio
import httpx

from proxy.errors import OverloadedError, UpstreamUnreachableError
from proxy.metrics import Metrics
from proxy.settings import Settings
from proxy.upstream.body import Unread, read_body
from proxy.upstream.failures import ErrorMap
from proxy.upstream.transport import Timeouts, upstream_transport

Headers = list[tuple[bytes, bytes]]
Content = bytes | AsyncIterable[bytes] | None

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
        "expect",  # the client's 100-continue was for semcache, which has the body already
        "host",
        "content-length",
    }
)
KEY_HEADERS = ("api-key", "x-api-key", "x-goog-api-key", "ocp-apim-subscription-key")
"""Keys other APIs take instead of ``Authorization: Bearer``: Azure OpenAI's ``api-key``,
``x-api-key``, Google's ``x-goog-api-key``, Azure API Management's subscription key."""
CREDENTIAL_HEADERS = frozenset({b"authorization", *(name.encode() for name in KEY_HEADERS)})

# Encodings semcache decodes (zlib), asked for when it reads a body whole.
DECODABLE_ENCODINGS = b"gzip, deflate"
# A stream semcache parses while relaying must arrive uncompressed, event by event.
IDENTITY = b"identity"


class UpstreamResponse(Protocol):
    """An upstream answer with its body still to come; whoever gets one closes it."""

    status_code: int
    headers: Headers
    """As received, names lower-cased."""

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes:
        """The whole body, as :meth:`aiter_raw` would give it."""

    async def aclose(self) -> None: ...


class Upstream:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        base_url: str,
        api_key: str | None,
        metrics: Metrics,
        timeouts: Timeouts,
        max_inflight: int | None = None,
        queue_timeout_seconds: float = 10.0,
    ) -> None:
        """``transport`` is the one connection pool to the upstream. Nothing else sits on it:
        semcache follows no redirect and keeps no cookie (one pool serves every tenant, so an
        upstream's Set-Cookie must never ride along with someone else's request)."""
        self._transport = transport
        base, _, self._base_query = base_url.partition("?")
        self._base_path = base.rstrip("/")
        self._origin = _origin(base)
        self._auth = None if api_key is None else b"Bearer " + api_key.encode()
        self._metrics = metrics
        self._timeouts = timeouts
        self._slots = None if max_inflight is None else anyio.Semaphore(max_inflight)
        self._queue_timeout_seconds = queue_timeout_seconds
        self._errors = ErrorMap(metrics)
        self._extensions = {
            "timeout": {
                "connect": timeouts.connect, "read": timeouts.read,
                "write": timeouts.write, "pool": timeouts.pool,
            }
        }  # fmt: skip
        self._patient_extensions = {"timeout": {**self._extensions["timeout"], "read": None}}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Upstream:
        """``transport``: unit tests simulate the upstream with respx's. Default:
        :func:`~proxy.upstream.transport.upstream_transport`."""
        read = settings.upstream_timeout_seconds
        if transport is None:
            transport = upstream_transport(
                settings.upstream_url, max_connections=settings.upstream_max_connections
            )
        return cls(
            transport,
            base_url=settings.upstream_url,
            api_key=settings.upstream_api_key,
            metrics=metrics,
            timeouts=Timeouts(
                connect=settings.upstream_connect_timeout_seconds, read=read, write=read, pool=read
            ),
            max_inflight=settings.max_inflight,
            queue_timeout_seconds=settings.queue_timeout_seconds,
        )

    async def close(self) -> None:
        await self._transport.aclose()

    def url(self, path: str, query: bytes = b"") -> str:
        """``path`` is what follows ``/v1`` in the client's request, e.g. ``/chat/completions``.
        A query in the base URL (Azure OpenAI's ``?api-version=``) stays a query, before the
        client's own."""
        url = self._base_path + path
        queries = [q for q in (self._base_query, query.decode("latin-1")) if q]
        return url + "?" + "&".join(queries) if queries else url

    def forward_headers(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        accept_encoding: bytes | None = None,
        to: str | None = None,
    ) -> Headers:
        """The client's headers minus hop-by-hop, semcache's own ``X-Cache-*`` controls and its
        own cookies (``semcache_*``: the dashboard's session, which a browser that signed in
        before it was scoped to ``/dashboard`` still sends on every route).

        The upstream key is added only when the client sends none, and only to the upstream's
        own origin: not when ``to`` (the URL the request goes to) is another host, such as an
        Ollama at ``SEMCACHE_OLLAMA_URL``. ``accept_encoding`` replaces the client's when
        semcache reads the body itself and must be able to decode it.
        """
        out: Headers = []
        has_key = False
        for name, value in headers:
            lower = name.lower()
            if lower in _DROP or lower.startswith(b"x-cache-"):
                continue
            if accept_encoding is not None and lower == b"accept-encoding":
                continue
            if lower in CREDENTIAL_HEADERS:
                has_key = True
            if lower == b"cookie" and OWN_COOKIE_PREFIX in value:
                value = _without_own_cookies(value)
                if not value:
                    continue
            # A field value has no surrounding whitespace (RFC 9110 §5.5); httpx refuses it.
            out.append((name, value.strip(b" \t")))
        if accept_encoding is not None:
            out.append((b"accept-encoding", accept_encoding))
        if not has_key and self._auth is not None and (to is None or _origin(to) == self._origin):
            out.append((b"authorization", self._auth))
        return out

    async def post(
        self,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        content: bytes,
        *,
        decoded: bool,
        identity: bool = False,
    ) -> UpstreamResponse:
        """A client's POST forwarded: its headers as :meth:`forward_headers` keeps them, with an
        ``Accept-Encoding`` semcache can decode when ``decoded`` (it reads the body itself), or
        ``identity`` when it reads a stream as it relays it."""
        accept = IDENTITY if identity else DECODABLE_ENCODINGS if decoded else None
        return await self.send(
            "POST", url, headers=self.forward_headers(headers, accept_encoding=accept, to=url),
            content=content,
        )  # fmt: skip

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Headers,
        content: Content,
        background: bool = False,
        patient: bool = False,
    ) -> UpstreamResponse:
        """Send and return once the response headers arrived; the caller reads or streams the
        body and closes the response, which frees its slot (``SEMCACHE_MAX_INFLIGHT``).
        ``background`` (audits) takes no slot: it never makes a client wait or fail; the
        auditor bounds its own concurrency. ``patient``: no read timeout, for a request whose
        upstream may rightly say nothing for longer than ``SEMCACHE_UPSTREAM_TIMEOUT`` (Ollama's
        pull, push or create of a model, unstreamed, answers once it is done)."""
        if _FORBIDDEN.search(b"".join([name + value for name, value in headers])):
            # Refused before anything is sent: a CR or LF would split the request (smuggling).
            raise self._errors.failed(
                UpstreamUnreachableError, "invalid request", ValueError("CR, LF or NUL in a header")
            )
        slots = None if background else self._slots
        release = _nothing if slots is None else await self._take_slot(slots)
        started = time.perf_counter()
        try:
            with self.errors():
                request = self._request(method, url, headers, content, patient=patient)
                response = _HttpxResponse(await self._transport.handle_async_request(request))
        except BaseException:
            release()
            raise
        self._metrics.upstream_latency.observe(time.perf_counter() - started)
        return response if release is _nothing else _SlotResponse(response, release)

    def _request(
        self, method: str, url: str, headers: Headers, content: Content, *, patient: bool = False
    ) -> httpx.Request:
        """A body in bytes goes in httpx's server-side form (``stream=``): semcache knows Host
        and the body's length, so httpx has no header to fill in. A streamed one httpx frames."""
        parsed = _parsed(url)
        extensions = self._patient_extensions if patient else self._extensions
        if not isinstance(content, bytes):
            return httpx.Request(
                method, parsed, headers=headers, content=content, extensions=extensions
            )
        length = b"%d" % len(content)
        request = httpx.Request(
            method, parsed, stream=httpx.ByteStream(content),
            headers=[*headers, (b"host", parsed.netloc), (b"content-length", length)],
            extensions=extensions,
        )  # fmt: skip
        request.read()  # the transport hands aiohttp ``request.content``
        return request

    async def _take_slot(self, slots: anyio.Semaphore) -> Callable[[], None]:
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

    async def read(self, response: UpstreamResponse) -> bytes:
        """The whole body, decoded when it came compressed (see ``DECODABLE_ENCODINGS``)."""
        body = await read_body(response, self._errors)
        assert isinstance(body, bytes), "read whole without a limit"
        return body

    async def read_within(self, response: UpstreamResponse, max_bytes: int) -> bytes | Unread:
        """As :meth:`read`, but once the body passes ``max_bytes`` (or its ``Content-Length``
        says it will), no more of it is held: the response comes back still open, what was read
        of it first, to be relayed (:func:`~proxy.upstream.body.read_body`)."""
        return await read_body(response, self._errors, max_bytes)

    async def iter_raw(self, response: UpstreamResponse) -> AsyncIterator[bytes]:
        with self.errors():
            async for chunk in response.aiter_raw():
                yield chunk

    def errors(self) -> ErrorMap:
        """``with upstream.errors():`` turns httpx's transport errors into UpstreamErrors."""
        return self._errors


_DROP = frozenset(name.encode() for name in HOP_BY_HOP)
_FORBIDDEN = re.compile(rb"[\r\n\0]")


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> tuple[str, str]:
    """Scheme and host[:port] of ``url``, lower-cased (its default port left implied)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2].lower()
    default = {"http": ":80", "https": ":443"}.get(parts.scheme.lower(), "")
    return parts.scheme.lower(), host.removesuffix(default) if default else host


@functools.lru_cache(maxsize=256)
def _parsed(url: str) -> httpx.URL:
    """The chat URL repeats: parsed once (``httpx.Request`` copies a given URL cheaply)."""
    return httpx.URL(url)


class _HttpxResponse:
    """The transport's answer. Its body is read straight from the transport's stream: what
    ``httpx.Response.aiter_raw`` adds (byte counts, re-chunking) costs time on every miss and
    serves nothing here."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        assert isinstance(response.stream, httpx.AsyncByteStream), "an async transport's body"
        self._stream = response.stream
        self.status_code = response.status_code
        self.headers: Headers = [(name.lower(), value) for name, value in response.headers.raw]

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self._stream])

    async def aclose(self) -> None:
        await self._response.aclose()


# uvicorn adds its own Date; a response has one (RFC 9110 §6.6.1).
_DROP_RESPONSE = _DROP | {b"date"}


OWN_COOKIE_PREFIX = b"semcache_"
"""The names of the cookies semcache sets (the dashboard's session) begin so."""


def _without_own_cookies(value: bytes) -> bytes:
    """A ``Cookie`` header's pairs (``a=1; b=2``) but semcache's own."""
    pairs = [p for p in value.split(b";") if not p.strip().startswith(OWN_COOKIE_PREFIX)]
    return b";".join(pairs).strip(b" ;")


def _nothing() -> None:
    return None


class _SlotResponse:
    """The upstream answer, giving its inflight slot back when closed (read, relayed or not)."""

    def __init__(self, inner: UpstreamResponse, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release
        self.status_code = inner.status_code
        self.headers = inner.headers

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self._inner.aiter_raw()

    async def aread(self) -> bytes:
        return await self._inner.aread()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


def header(response: UpstreamResponse, name: bytes) -> bytes | None:
    """The first value of the (lower-case) ``name``, or None."""
    for key, value in response.headers:
        if key == name:
            return value
    return None


def response_headers(response: UpstreamResponse, *, decoded: bool) -> Headers:
    """Upstream response headers to relay: hop-by-hop removed; ``content-encoding`` removed
    when semcache decoded the body."""
    return [
        (name, value)
        for name, value in response.headers
        if name not in _DROP_RESPONSE and not (decoded and name == b"content-encoding")
    ]
