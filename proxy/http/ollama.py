"""``/api/*``: Ollama's native API, for clients that speak it (the ``ollama`` libraries, Open
WebUI in Ollama mode). Chat, generate and the embeddings routes go to
:class:`~proxy.cache.ollama.OllamaPipeline`; every other route is passed through. Errors keep
Ollama's shape, ``{"error": "..."}``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from proxy.cache.keys import api_key_from, scoped_namespace
from proxy.cache.ollama import KINDS
from proxy.cache.policy import cache_control
from proxy.errors import BadRequestError, HTTPError
from proxy.http.handlers import header_fields, read_body, services
from proxy.http.responses import cache_headers, raw_response, relay
from proxy.http.validate import has_duplicate_keys, parse_object

NEEDS = {"chat": "messages", "generate": "prompt", "embed": "input", "embeddings": "prompt"}
PASSED = cache_headers("BYPASS", reason="not-cacheable:route")


async def ollama_api(request: Request) -> Response:
    svc = services(request)
    pipeline = svc.ollama
    if pipeline is None:
        return _error(404, "no Ollama API behind this proxy: set SEMCACHE_OLLAMA_URL")
    path = "/api/" + request.path_params["path"]
    kind = KINDS.get(path) if request.method == "POST" else None
    fields = header_fields(request.scope)
    try:
        api_key = api_key_from(fields)
        svc.tenancy.authorize(api_key)
        if kind is None:
            return await _pass(request, pipeline.base + path)
        raw = await read_body(request, svc.settings.max_body_bytes, fields)
        body = _checked(kind, raw)
        if body is None:  # e.g. generate without a prompt: loads a model, nothing to cache
            return await _send_raw(request, pipeline.base + path, raw)
        options = body.get("options")
        temperature = options.get("temperature") if isinstance(options, dict) else None
        control = cache_control(
            fields,
            default_ttl_seconds=svc.settings.ttl_seconds,
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            max_temperature=svc.settings.max_temperature,
        )
        if has_duplicate_keys(raw, body):
            control = control.bypassed("duplicate-keys")
        identity = svc.tenancy.identity(request.scope["headers"])
        namespace = scoped_namespace(svc.tenancy.namespace(identity), request.scope["query_string"])
        return await pipeline.handle(
            kind, body, raw, namespace=namespace, control=control,
            headers=request.scope["headers"], path=path,
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
    body = request.stream() if request.method not in ("GET", "HEAD") else None
    svc = services(request)
    response = await svc.upstream.send(
        request.method,
        _with_query(url, request.scope["query_string"]),
        headers=svc.upstream.forward_headers(request.headers.raw, to=url),
        content=body,
    )
    return relay(svc.upstream, response, extra_headers=PASSED, openai_errors=False)


async def _send_raw(request: Request, url: str, raw: bytes) -> Response:
    svc = services(request)
    response = await svc.upstream.send(
        "POST",
        url,
        headers=svc.upstream.forward_headers(request.headers.raw, to=url),
        content=raw,
    )
    return relay(svc.upstream, response, extra_headers=PASSED, openai_errors=False)


def _with_query(url: str, query: bytes) -> str:
    return f"{url}?{query.decode('latin-1')}" if query else url


def _error(status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    return raw_response(
        orjson.dumps({"error": message}), status,
        [(b"content-type", b"application/json"), *headers],
    )  # fmt: skip
