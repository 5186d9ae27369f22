"""Thin endpoints: read and validate the request, hand it to a pipeline, respond."""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope

from proxy.cache.answers import cache_headers, error_response, relay
from proxy.cache.embeddings import EmbeddingPipeline
from proxy.cache.exact import ExactPipeline
from proxy.cache.feedback import KEPT_PATH, Feedback
from proxy.cache.keys import api_key_from
from proxy.cache.ollama import OllamaPipeline
from proxy.cache.pipeline import ChatPipeline
from proxy.cache.policy import cache_control
from proxy.cache.responses import kept_no_longer, not_cacheable
from proxy.cache.tenancy import Tenancy
from proxy.errors import (
    BadRequestError,
    ForbiddenError,
    HTTPError,
    NotImplementedByProxyError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from proxy.http.readiness import UpstreamProbe
from proxy.http.validate import (
    chat_request,
    completion_request,
    embedding_request,
    responses_request,
    said_json,
    said_utf8,
    unkeyable,
)
from proxy.metrics import Metrics
from proxy.requests import CacheControl, ChatRequest, EmbeddingRequest
from proxy.semantic import SemanticCache
from proxy.settings import Settings
from proxy.stores import Cache
from proxy.totals import Totals
from proxy.upstream import Headers, Upstream

log = logging.getLogger("semcache.handlers")
PASSTHROUGH_HEADERS = cache_headers("BYPASS", reason="not-cacheable:route")
"""Every route semcache forwards without caching says so."""
V1 = "/v1"
"""The prefix of the OpenAI-compatible routes; the rest of the path goes on under the upstream's
base URL, which names its own (``https://api.openai.com/v1``)."""


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    cache: Cache
    upstream: Upstream
    metrics: Metrics
    chat: ChatPipeline
    embeddings: EmbeddingPipeline
    completions: ExactPipeline
    responses: ExactPipeline
    ollama: OllamaPipeline | None
    semantic: SemanticCache
    tenancy: Tenancy
    feedback: Feedback
    probe: UpstreamProbe
    totals: Totals


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


@dataclass(frozen=True, slots=True)
class Asked:
    """A cached route's request once read: what every driver is handed."""

    raw: bytes
    namespace: str
    api_key: str | None
    control: CacheControl
    headers: list[tuple[bytes, bytes]]
    query: bytes


async def chat_completions(request: Request) -> Response:
    async def handle(svc: Services, chat: ChatRequest, asked: Asked) -> Response:
        control = asked.control
        if chat.body.get("data_sources") is not None:
            # Azure OpenAI "On Your Data": the answer is grounded in a search index the
            # account keeps and may change (as the Responses API's file_search).
            control = control.bypassed("server-state")
        elif svc.settings.shared_cache and chat.body.get("store") is True:
            # Its id is a stored completion of the asking key's project: with tenants sharing
            # entries, another key would be served an id it cannot fetch (as on Responses).
            control = control.bypassed("stored-response")
        return await svc.chat.handle(
            chat, namespace=asked.namespace, api_key=asked.api_key, control=control,
            headers=asked.headers, query=asked.query,
        )  # fmt: skip

    return await _cached(request, "chat", chat_request, handle, sampled=True)


async def completions(request: Request) -> Response:
    async def handle(svc: Services, parsed: ChatRequest, asked: Asked) -> Response:
        return await svc.completions.handle(
            parsed, namespace=asked.namespace, control=asked.control, headers=asked.headers,
            query=asked.query,
        )  # fmt: skip

    return await _cached(request, "completions", completion_request, handle, sampled=True)


async def responses(request: Request) -> Response:
    async def handle(svc: Services, parsed: ChatRequest, asked: Asked) -> Response:
        control = kept_no_longer(parsed.body, asked.control)
        why = not_cacheable(parsed.body, shared=svc.settings.shared_cache)
        if why is not None:
            control = control.bypassed(why)
        return await svc.responses.handle(
            parsed, namespace=asked.namespace, control=control, headers=asked.headers,
            query=asked.query, api_key=asked.api_key,
        )  # fmt: skip

    return await _cached(request, "responses", responses_request, handle, sampled=True)


async def embeddings(request: Request) -> Response:
    async def handle(svc: Services, parsed: EmbeddingRequest, asked: Asked) -> Response:
        control = asked.control
        if parsed.passthrough is not None and not control.bypass:
            control = control.bypassed(parsed.passthrough)
        return await svc.embeddings.handle(
            parsed, asked.raw, namespace=asked.namespace, control=control,
            headers=asked.headers, query=asked.query,
        )  # fmt: skip

    return await _cached(request, "embeddings", embedding_request, handle, sampled=False)


P = TypeVar("P", ChatRequest, EmbeddingRequest)


async def _cached(
    request: Request,
    route: str,
    parse: Callable[[bytes], P],
    handle: Callable[[Services, P, Asked], Awaitable[Response]],
    *,
    sampled: bool,
) -> Response:
    """A cached route: who asks, the body, the cache controls, then the driver; its time to
    the response head is measured by ``X-Cache``."""
    started = time.perf_counter()
    svc = services(request)
    scope = request.scope
    fields = header_fields(scope)
    try:
        # What the headers decide comes first: a client that sends its body after its head
        # (most do) lets this run while the body is on its way.
        api_key = api_key_from(fields)
        svc.tenancy.authorize(api_key)
        namespace = svc.tenancy.request_namespace(scope["headers"], scope["query_string"])
        raw = await read_body(request, svc.settings.max_body_bytes, fields)
        if fields.get("content-encoding", "identity").strip().lower() != "identity":
            return await _encoded(svc, route, scope, raw, ENCODED)
        content_type = fields.get("content-type")
        if raw[:1] in _NOT_UTF8_START or b"\0" in raw[:4] or not said_utf8(content_type):
            return await _encoded(svc, route, scope, raw, CHARSET)
        if not said_json(content_type):
            return await _encoded(svc, route, scope, raw, CONTENT_TYPE)
        parsed = parse(raw)
        temperature = parsed.temperature if isinstance(parsed, ChatRequest) else None
        control = cache_control(
            fields,
            default_ttl_seconds=svc.settings.ttl_seconds,
            temperature=temperature,
            max_temperature=svc.settings.max_temperature if sampled else None,
        )
        if (why := unkeyable(raw, parsed.body)) is not None:
            control = control.bypassed(why)
        asked = Asked(raw, namespace, api_key, control, scope["headers"], scope["query_string"])
        response = await handle(svc, parsed, asked)
    except HTTPError as exc:
        svc.metrics.request(route, _error_outcome(exc))
        return error_response(exc)
    _timed(svc.metrics, response, started)
    return response


ENCODED = "bypass:content-encoding"
CHARSET = "bypass:charset"
CONTENT_TYPE = "bypass:content-type"
_NOT_UTF8_START = (b"\xef", b"\xfe", b"\xff")
"""How a body begins that has a byte order mark (UTF-8's, UTF-16's or UTF-32's); a UTF-16 or
UTF-32 body without one has a NUL in its first four bytes. JSON text is UTF-8 without a BOM
(RFC 8259 §8.1), and semcache reads only that, but Python's reader (FastAPI's: vLLM and most
Python servers) takes all of these."""


async def _encoded(svc: Services, route: str, scope: Scope, raw: bytes, reason: str) -> Response:
    """A body semcache does not read: compressed (``Content-Encoding: gzip``, ``zstd``: Codex
    compresses large ones), JSON in another encoding than UTF-8 (or said to be, by a
    ``charset``), or with a BOM, or a body not
    said to be JSON (:func:`~proxy.http.validate.said_json`). Whether the upstream reads it is
    the upstream's to say: sent on as it came, never cached (a 400 here would refuse what the
    upstream may accept, a hit would answer what it may refuse)."""
    svc.metrics.request(route, "bypass")
    svc.metrics.miss_reasons[reason] += 1
    response = await svc.upstream.send(
        "POST",
        svc.upstream.url(scope["path"].removeprefix(V1), scope["query_string"]),
        headers=svc.upstream.forward_headers(scope["headers"]),
        content=raw,
    )
    return relay(svc.upstream, response, extra_headers=cache_headers("BYPASS", reason=reason))


def sent_path(scope: Scope) -> str:
    """The path as the client wrote it, percent-escapes kept (``scope["path"]`` is decoded: in
    it ``/v1/chat%2Fcompletions`` reads as ``/v1/chat/completions``)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return str(scope["path"])
    return raw.partition(b"?")[0].decode("latin-1")  # httpx's ASGI transport adds the query


def as_routed(scope: Scope) -> bool:
    """Whether the path was sent as it reads: only then is it one of semcache's own routes. A
    path with an escape (``chat%2Fcompletions``, ``%63ompletions``) is the upstream's to read
    (an escaped slash is no separator to most) and goes on as sent, never cached."""
    raw: bytes | None = scope.get("raw_path")
    return raw is None or raw.partition(b"?")[0] == scope["path"].encode()


async def passthrough(request: Request) -> Response:
    """Any other ``/v1/*`` request goes upstream untouched and streams back as it arrives."""
    svc = services(request)
    path = sent_path(request.scope)
    body, framing = forwarded_body(request)
    try:
        svc.tenancy.authorize(api_key_from(request.headers))
        if not path.startswith(V1 + "/"):  # an escaped /v1 (``/%761/``): no base to map it on
            raise BadRequestError("the path must begin with /v1/ as sent, not percent-encoded")
        path = path.removeprefix(V1)
        check_path(path)
        _check_not_an_upgrade(request.headers)
        response = await svc.upstream.send(
            request.method,
            svc.upstream.url(path, request.scope["query_string"]),
            headers=[*svc.upstream.forward_headers(request.headers.raw), *framing],
            content=body,
        )
    except HTTPError as exc:
        svc.metrics.request("passthrough", _error_outcome(exc))
        return error_response(exc)
    except ClientDisconnect:
        # The client left while its body was being forwarded: nobody is left to answer.
        svc.metrics.request("passthrough", "client_gone")
        return error_response(BadRequestError("the client went away while sending the body"))
    svc.metrics.request("passthrough", "relayed")
    if request.method == "DELETE" and 200 <= response.status_code < 300:
        kept = KEPT_PATH.fullmatch(path)
        if kept is not None:  # a stored response or chat completion: its entry goes too
            await svc.feedback.deleted_upstream(unquote(kept[1]))
    return relay(
        svc.upstream, response, extra_headers=PASSTHROUGH_HEADERS, head=request.method == "HEAD"
    )


def _check_not_an_upgrade(fields: Mapping[str, str]) -> None:
    """A WebSocket (the Realtime API's ``/v1/realtime``) is not proxied: its upgrade would reach
    the upstream as a plain request and come back as something else than a 101; the client is
    told at once where to connect instead."""
    if "websocket" in fields.get("upgrade", "").lower():  # not h2c: that one is ignorable
        raise NotImplementedByProxyError(
            "semcache does not proxy WebSocket connections (the Realtime API): connect to the "
            "upstream directly for them"
        )


def forwarded_body(request: Request) -> tuple[AsyncIterator[bytes] | None, Headers]:
    """A passed-through request's body, streamed as it arrives, and its framing as the client
    sent it: its ``Content-Length`` kept (re-chunked, a known length would be refused by an
    upstream that takes no chunked upload: 411 from nginx Unit, lighttpd, some gateways), and
    no body at all when the client sent none (a ``DELETE`` or ``OPTIONS``), not an empty
    chunked one. Only a chunked upload goes on chunked."""
    if request.method in ("GET", "HEAD"):
        return None, []
    length = request.headers.get("content-length")
    if "transfer-encoding" in request.headers:
        return request.stream(), []
    if length is None:
        return None, []
    return request.stream(), [(b"content-length", length.encode("latin-1"))]


def is_admin(request: Request, svc: Services) -> bool:
    """Whether the request presents ``SEMCACHE_ADMIN_TOKEN`` (never when it is unset or empty)."""
    token = svc.settings.admin_token
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    given = value.strip()
    if not token or not given:  # an empty token matches no one: a bare `Bearer` is not admin
        return False
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.encode("latin-1"), token.encode()
    )


def require_admin(request: Request, svc: Services, *, required: bool) -> None:
    """Ops routes that show or change cache data need ``SEMCACHE_ADMIN_TOKEN`` when it is set;
    routes that change data are off without it."""
    token = svc.settings.admin_token
    if token is None:
        if required:
            raise ForbiddenError(
                "admin routes are off on this server: start semcache serve with "
                "SEMCACHE_ADMIN_TOKEN (or --admin-token) to use them"
            )
        return
    if not is_admin(request, svc):
        raise UnauthorizedError("this route needs the admin token (Authorization: Bearer ...)")


def _timed(metrics: Metrics, response: Response, started: float) -> None:
    # A relayed upstream error builds its head only when sent: not timed.
    for name, value in getattr(response, "raw_headers", ()):
        if name == b"x-cache":
            metrics.answered(value.decode("latin-1"), time.perf_counter() - started)
            return


def header_fields(scope: Scope) -> dict[str, str]:
    """The request's header fields by name (ASGI gives them lower-cased), read once; of a
    repeated field the first, as Starlette's ``Headers.get`` would give."""
    fields: dict[str, str] = {}
    for name, value in reversed(scope["headers"]):
        fields[name.decode("latin-1")] = value.decode("latin-1")
    return fields


async def read_body(request: Request, limit: int, fields: Mapping[str, str]) -> bytes:
    length = fields.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
    # Straight from ASGI messages: Request.stream() is an async generator, dearer per request.
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequestError("the client went away while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)  # one chunk: join returns it, no copy


def check_path(path: str) -> None:
    """Dot segments would let a request leave the upstream's base path (``/v1/../admin``): one
    written plainly or escaped (``%2e%2e``), or inside a segment whose escaped slashes a gateway
    in front of the upstream may decode first (``..%2F..%2Fadmin``; nginx does, and then
    resolves the dots)."""
    for segment in path.split("/"):
        decoded = unquote(segment)
        if any(part in (".", "..") for part in _SLASHES.split(decoded)):
            raise BadRequestError("the path must not contain '.' or '..' segments")


_SLASHES = re.compile(r"[/\\]")
"""What a server may read as a path separator once decoded: ``/``, and ``\\`` (IIS, Windows)."""


def _error_outcome(exc: HTTPError) -> str:
    return "upstream_error" if exc.status_code >= 500 else "bad_request"
