"""``/api/*``: Ollama's native API, for clients that speak it (the ``ollama`` libraries, Open
WebUI in Ollama mode). Chat, generate and the embeddings routes go to
:class:`~proxy.cache.ollama.OllamaPipeline`; every other route is passed through. Errors keep
Ollama's shape, ``{"error": "..."}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from proxy.cache.answers import cache_headers, raw_response, relay
from proxy.cache.catalog import Filters, meta_of
from proxy.cache.keys import api_key_from
from proxy.cache.ollama import KINDS
from proxy.cache.ollama_stream import LineParser
from proxy.cache.policy import cache_control
from proxy.errors import BadRequestError, HTTPError
from proxy.http.entries import remove_matching
from proxy.http.handlers import (
    as_routed,
    check_path,
    forwarded_body,
    header_fields,
    read_body,
    sent_path,
    services,
)
from proxy.http.validate import unkeyable
from proxy.requests import json_or_none, loggable, parse_object

log = logging.getLogger("semcache.ollama")

NEEDS = {"chat": "messages", "generate": "prompt", "embed": "input", "embeddings": "prompt"}
CHANGES_A_MODEL = {
    ("POST", "/api/create"): ("model", "name"),
    ("POST", "/api/pull"): ("model", "name"),
    ("POST", "/api/copy"): ("destination",),
    ("DELETE", "/api/delete"): ("model", "name"),
}
"""Routes after whose success a model name answers differently (or not at all), and the body
fields that name it: entries are keyed by the name, so that model's entries go."""
PASSED = cache_headers("BYPASS", reason="not-cacheable:route")
LONG_RUNNING = frozenset({"/api/pull", "/api/push", "/api/create"})
"""Routes whose answer may rightly take longer than ``SEMCACHE_UPSTREAM_TIMEOUT`` to begin: a
pull, push or create with ``"stream": false`` (the ``ollama`` libraries' default) says nothing
until the model is moved or made, and Ollama cancels it when the connection closes."""


async def ollama_api(request: Request) -> Response:
    svc = services(request)
    pipeline = svc.ollama
    if pipeline is None:
        return _error(404, "no Ollama API behind this proxy: set SEMCACHE_OLLAMA_URL")
    path = "/api/" + request.path_params["path"]
    # Sent on as the client wrote it; an escaped path is never a cached route (as_routed).
    sent = sent_path(request.scope)
    query: bytes = request.scope["query_string"]
    # Its query too, as the client sent it, on every route (it scopes the entries too).
    target = _with_query(sent, query)
    url = pipeline.base + target
    kind = KINDS.get(path) if request.method == "POST" and as_routed(request.scope) else None
    fields = header_fields(request.scope)
    try:
        api_key = api_key_from(fields)
        svc.tenancy.authorize(api_key)
        check_path(sent)  # ``/api/%2e%2e/``: no climbing out of SEMCACHE_OLLAMA_URL's path
        if (request.method, path) in CHANGES_A_MODEL:
            raw = await read_body(request, svc.settings.max_body_bytes, fields)
            names = _model_names(raw, CHANGES_A_MODEL[request.method, path])
            return await _send_raw(request, url, raw, changes=names)
        if kind is None:
            return await _pass(request, url)
        raw = await read_body(request, svc.settings.max_body_bytes, fields)
        body = _checked(kind, raw)
        if body is None:  # e.g. generate without a prompt: loads a model, nothing to cache
            return await _send_raw(request, url, raw)
        options = body.get("options")
        temperature = options.get("temperature") if isinstance(options, dict) else None
        control = cache_control(
            fields,
            default_ttl_seconds=svc.settings.ttl_seconds,
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            max_temperature=svc.settings.max_temperature,
        )
        if (why := unkeyable(raw, body)) is not None:
            control = control.bypassed(why)
        namespace = svc.tenancy.request_namespace(request.scope["headers"], query)
        return await pipeline.handle(
            kind, body, raw, namespace=namespace, control=control,
            headers=request.scope["headers"], target=target,
        )  # fmt: skip
    except HTTPError as exc:  # in Ollama's shape, with its headers (a 503's Retry-After)
        return _error(exc.status_code, exc.message, exc.headers)
    except ClientDisconnect:
        return _error(400, "the client went away while sending the body")


def _checked(kind: str, raw: bytes) -> dict[str, Any] | None:
    body = parse_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequestError("model is required")
    needed = body.get(NEEDS[kind])
    if needed is None or needed == "" or needed == []:
        return None  # chat without messages loads the model (Ollama's docs/api.md)
    if kind == "chat" and not isinstance(needed, list):
        raise BadRequestError("messages must be an array")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BadRequestError("stream must be a boolean")
    return body


async def _pass(request: Request, url: str) -> Response:
    body, framing = forwarded_body(request)
    svc = services(request)
    response = await svc.upstream.send(
        request.method,
        url,
        headers=[*svc.upstream.forward_headers(request.headers.raw, to=url), *framing],
        content=body,
        patient=_sent_path_is(request, LONG_RUNNING),
    )
    return relay(
        svc.upstream, response, extra_headers=PASSED, openai_errors=False,
        head=request.method == "HEAD",
    )  # fmt: skip


async def _send_raw(
    request: Request, url: str, raw: bytes, *, changes: tuple[str, ...] = ()
) -> Response:
    """``raw`` sent on; when it ``changes`` models (and the upstream said 2xx), their entries
    are removed once the answer ended cleanly (a pull streams its progress until it is done)."""
    svc = services(request)
    response = await svc.upstream.send(
        request.method,
        url,
        headers=svc.upstream.forward_headers(request.headers.raw, to=url),
        content=raw,
        patient=_sent_path_is(request, LONG_RUNNING),
    )
    forget: Callable[[], Awaitable[None]] | None = None
    observe: Callable[[bytes], bool] | None = None
    if changes and 200 <= response.status_code < 300:
        changed = {model_id(name) for name in changes} - {None}
        # A streamed pull or create says 200 with its first progress line; a failure after
        # that is an ``{"error": ...}`` line (Ollama's server/routes.go ``streamResponse``),
        # and the model is as it was.
        lines, failed = LineParser(), False

        def watch(chunk: bytes) -> bool:
            nonlocal failed
            for line in lines.feed(chunk):
                part = json_or_none(line)
                failed = failed or (isinstance(part, dict) and "error" in part)
            return False

        async def forget_changed() -> None:
            if failed:
                return
            # One walk of the store for every spelling; it pauses between pages, and this
            # answer ends when it is done (the client's next request sees the new model).
            try:
                removed = await remove_matching(
                    svc, Filters(), lambda item: model_id(meta_of(item).get("model")) in changed
                )
            except HTTPError:  # the store failed: the entries stay, the answer stands
                log.warning(
                    "entries of model %s not removed: the store failed", loggable(changes[0])
                )
                return
            if removed:
                log.info(
                    "model %s changed upstream: %d entries removed", loggable(changes[0]), removed
                )

        forget, observe = forget_changed, watch

    return relay(
        svc.upstream, response, extra_headers=PASSED, observe=observe, on_complete=forget,
        openai_errors=False,
    )  # fmt: skip


def _sent_path_is(request: Request, paths: frozenset[str]) -> bool:
    return request.method == "POST" and "/api/" + request.path_params["path"] in paths


def _model_names(raw: bytes, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The model names a management request's body gives (each compared as :func:`model_id`
    reads it: ``llama3.2`` is ``llama3.2:latest``)."""
    body = json_or_none(raw)
    names: list[str] = []
    for field in fields:
        name = body.get(field) if isinstance(body, dict) else None
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
    return tuple(dict.fromkeys(names))


OLLAMA_NAME_DEFAULTS = ("registry.ollama.ai", "library", "latest")


def model_id(name: object) -> str | None:
    """The model a name is to Ollama: ``[host/][namespace/]model[:tag]`` with the parts left out
    filled in (``tutor`` is ``registry.ollama.ai/library/tutor:latest``) and case folded, since
    Ollama finds a model whatever the case of each part (types/model ``ParseName``;
    server/routes.go ``getExistingName``, which every route resolves a name with). None for
    what is no name."""
    if not isinstance(name, str) or not name.strip():
        return None
    rest, tag = name.strip(), ""
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
    rest, _, model = rest.rpartition("/")  # no "/": rest is ""
    rest, _, namespace = rest.rpartition("/")
    host = rest.partition("://")[2] if "://" in rest else rest
    default_host, default_namespace, default_tag = OLLAMA_NAME_DEFAULTS
    parts = (host or default_host, namespace or default_namespace, model, tag or default_tag)
    return "{}/{}/{}:{}".format(*parts).casefold()


def _with_query(url: str, query: bytes) -> str:
    return f"{url}?{query.decode('latin-1')}" if query else url


def _error(status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return raw_response(
        orjson.dumps({"error": message}), status,
        [(b"content-type", b"application/json"), *headers],
    )  # fmt: skip
