"""The admin API under ``/cache/...``: behind ``SEMCACHE_ADMIN_TOKEN``, off without it.

POST /cache/explain   what a chat request would get, and why (:mod:`proxy.cache.explain`)
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.cache.answers import JSON, raw_response
from proxy.cache.catalog import ROUTES
from proxy.cache.explain import explain
from proxy.cache.policy import cache_control
from proxy.errors import BadRequestError, HTTPError
from proxy.http.handlers import Services, header_fields, read_body, require_admin, services
from proxy.http.validate import chat_request
from proxy.requests import json_or_none, parse_object
from proxy.settings_checks import MAX_TTL_SECONDS
from proxy.stores import Entry
from proxy.upstream import CREDENTIAL_HEADERS, completion_is_storable


async def cache_explain(request: Request) -> Response:
    """Body: ``{"request": <a chat completions body>, "api_key": "sk-..." (the caller's, if
    any), "headers": {"cache-control": "max-age=60", ...} (its cache controls, if any),
    "query": "api-version=..." (its URL query, if any)}``."""
    svc = services(request)
    require_admin(request, svc, required=True)
    fields = header_fields(request.scope)
    asked = parse_object(await read_body(request, svc.settings.max_body_bytes, fields))
    chat = chat_request(orjson.dumps(_field(asked, "request", dict, required=True)))
    api_key = _field(asked, "api_key", str)
    headers = {k.lower(): v for k, v in _field(asked, "headers", dict, default={}).items()}
    if not all(isinstance(v, str) for v in headers.values()):
        raise BadRequestError("'headers' values must be strings", param="headers")
    query = _field(asked, "query", str, default="").encode()
    try:
        svc.tenancy.authorize(api_key)
        control = cache_control(
            headers,
            default_ttl_seconds=svc.settings.ttl_seconds,
            temperature=chat.temperature,
            max_temperature=svc.settings.max_temperature,
        )
    except HTTPError as exc:  # what the caller would get: explained, not raised at the admin
        refused = {"decision": "REFUSED", "status": exc.status_code, "error": exc.message}
        return raw_response(orjson.dumps(refused), 200, [JSON])
    # Who asks, as the proxy would see it: the key, and the headers' credentials and account.
    sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if api_key is not None and not any(k in CREDENTIAL_HEADERS for k, _ in sent):
        sent.insert(0, (b"authorization", b"Bearer " + api_key.encode("latin-1")))
    namespace = svc.tenancy.request_namespace(sent, query)
    answer = await explain(
        chat,
        namespace=namespace,
        api_key=api_key,
        control=control,
        cache=svc.cache,
        semantic=svc.semantic,
    )
    return raw_response(orjson.dumps(answer), 200, [JSON])


def _field(
    body: dict[str, Any], name: str, kind: type, *, required: bool = False, default: Any = None
) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequestError(f"'{name}' is required", param=name)
        return default
    if not isinstance(value, kind):
        raise BadRequestError(f"'{name}' must be a {kind.__name__}", param=name)
    return value


MAX_LINE_BYTES = 4 * 1024 * 1024
ERRORS_LISTED = 5


async def cache_import(request: Request) -> Response:
    """JSON Lines, one ``{"request": <chat body>, "response": <chat completion>, "api_key":
    "sk-..." (the tenant; absent = requests without a key), "ttl_seconds": N}`` per line, read
    as it arrives (a file of any size never sits in memory). Each line is stored as a miss would
    store it (same key, vector, storability rules) or counted as failed with its reason."""
    svc = services(request)
    require_admin(request, svc, required=True)
    counts = {"imported": 0, "failed": 0, "expired": 0}
    errors: list[str] = []
    number = 0
    pending = b""
    async for chunk in request.stream():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE_BYTES:
            raise BadRequestError(f"line {number + len(lines) + 1} is over {MAX_LINE_BYTES} bytes")
        for line in lines:
            number += 1
            await _import_line(svc, line, number, counts, errors)
    if pending.strip():
        number += 1
        await _import_line(svc, pending, number, counts, errors)
    body = {**counts, "lines": number, "errors": errors}
    return raw_response(orjson.dumps(body), 200, [JSON])


async def _import_line(
    svc: Services, line: bytes, number: int, counts: dict[str, int], errors: list[str]
) -> None:
    if not line.strip():
        return
    try:
        row = parse_object(line)
        if "entry" in row:
            counts["imported" if await _restore(svc, row) else "expired"] += 1
            return
        chat = chat_request(orjson.dumps(_field(row, "request", dict, required=True)))
        completion = _field(row, "response", dict, required=True)
        api_key = _field(row, "api_key", str)
        ttl = _field(row, "ttl_seconds", int, default=svc.settings.ttl_seconds)
        if not 1 <= ttl <= MAX_TTL_SECONDS:
            raise BadRequestError(f"'ttl_seconds' must be 1 to {MAX_TTL_SECONDS}")
        if not completion_is_storable(200, completion):
            raise BadRequestError("'response' is not a complete chat completion (see README)")
        svc.tenancy.authorize(api_key)
    except HTTPError as exc:
        counts["failed"] += 1
        if len(errors) < ERRORS_LISTED:
            errors.append(f"line {number}: {exc.message}")
        return
    namespace = svc.tenancy.namespace(api_key)
    entry = await svc.chat.seed(
        chat, completion, namespace=namespace, api_key=api_key, ttl_seconds=ttl
    )
    if entry is None:
        counts["failed"] += 1
        if len(errors) < ERRORS_LISTED:
            errors.append(f"line {number}: not stored (too large, or the store failed)")
    else:
        counts["imported"] += 1


async def _restore(svc: Services, row: dict[str, Any]) -> bool:
    """A line of ``GET /cache/export``: the entry back under its own key (the same deployment's
    secret makes the same namespaces), with the ref its id is found by (``/cache/entries/{id}``,
    ``POST /cache/feedback``), as a miss leaves one for every route but embeddings. Its
    semantic vector is not restored, so the ref names no partition. It expires when it would
    have: False, and nothing stored, for an entry whose lifetime ended since the export."""
    key = _field(row, "key", str, required=True)
    if not key.startswith(tuple(ROUTES.values())) or key.count(":") < 2:
        raise BadRequestError("'key' is not an entry key", param="key")
    fields = _field(row, "entry", dict, required=True)
    try:
        body = fields["body"]
        data = (
            orjson.dumps(body) if fields.get("body_encoding") == "json"
            else base64.b64decode(body, validate=True)
        )  # fmt: skip
        entry = Entry(
            id=str(fields["id"]),
            body=data,
            created_at=float(fields["created_at"]),
            tokens=int(fields.get("tokens", 0)),
            replay=base64.b64decode(fields.get("replay", ""), validate=True),
            completion_tokens=int(fields.get("completion_tokens", 0)),
            meta=orjson.dumps(_unindexed(fields.get("meta"))),
        )
        bytes.fromhex(entry.id)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BadRequestError(f"'entry' is not an exported entry: {exc}", param="entry") from exc
    ttl = row.get("ttl_seconds")
    ttl_seconds = svc.settings.ttl_seconds if not isinstance(ttl, int | float) else float(ttl)
    age = row.get("age_seconds")
    if isinstance(ttl, int | float) and isinstance(age, int | float):
        # The export's ttl_seconds was what was left then (at created_at + age_seconds): the
        # time since counts too, or each restore would lengthen the entry's life.
        exported_at = entry.created_at + float(age)
        ttl_seconds -= max(0.0, svc.cache.clock() - exported_at)
        if ttl_seconds <= 0:
            return False
    # Within what a request's X-Cache-TTL may ask: Redis refuses an expiry past its integers
    # (a hand-edited 1e20), which the memory store would have kept.
    ttl_seconds = min(float(MAX_TTL_SECONDS), max(1.0, ttl_seconds))
    if not await svc.cache.put(key, entry, ttl_seconds, kind="import"):
        raise BadRequestError("not stored (too large, or the store failed)")
    if not key.startswith(ROUTES["embeddings"]):
        await svc.feedback.remember(
            entry, key=key, partition="", ttl_seconds=ttl_seconds, kept_as=_kept_as(key, entry)
        )
    return True


def _unindexed(meta: object) -> object:
    """An exported entry's meta as restored: no vector comes back with it, so semantic lookups
    cannot find it and it is listed as ``exact`` (``/cache/entries?lookup=``, ``semcache ls``)."""
    if not isinstance(meta, dict):
        return meta or {}
    return {**meta, "lookup": "exact"} if meta.get("lookup") == "semantic" else meta


def _kept_as(key: str, entry: Entry) -> str | None:
    """The id the upstream may keep a restored chat completion or response by, so a client's
    ``DELETE`` of it still removes the entry. The export does not say whether the request asked
    the upstream to keep it; the ref is written either way: a delete removes an entry only when
    the upstream answers 2xx, which it does only for an object it kept."""
    if not key.startswith((ROUTES["chat"], ROUTES["responses"])):
        return None
    answer = json_or_none(entry.body)
    found = answer.get("id") if isinstance(answer, dict) else None
    return found if isinstance(found, str) and found else None
