"""The admin API's entries (admin token; off without it):

    GET    /cache/entries          list, filtered, a page at a time (cursor)
    GET    /cache/entries/{id}     one entry, with the start of its answer
    DELETE /cache/entries/{id}     remove it (and its vector)
    DELETE /cache/entries          remove every entry the filters match (one filter at least)
    GET    /cache/export           every matching entry whole, as JSON Lines, streamed

Filters (query): ``route`` (chat, embeddings), ``model``, ``older_than`` / ``newer_than``
(seconds), and one tenant: the header ``X-Cache-Tenant-Key`` (its API key) or ``namespace``.
Without a tenant the admin sees every tenant's entries. A store that cannot answer is a 503:
here a failure is news, not a miss.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.cache import catalog
from proxy.cache.answers import JSON, raw_response
from proxy.errors import BadRequestError, NotFoundError, StoreError, StoreUnavailableError
from proxy.http.handlers import Services, require_admin, services
from proxy.requests import json_or_none
from proxy.stores import Listed

DEFAULT_LIMIT = 50
TENANT_HEADER = "x-cache-tenant-key"


async def list_entries(request: Request) -> Response:
    svc = _admin(request)
    f = _filters(request, svc)
    limit = _limit(request.query_params.get("limit"))
    now = svc.cache.clock()
    try:
        found, cursor = await catalog.page(
            svc.cache.store, f, request.query_params.get("cursor", ""), limit, now
        )
    except StoreError as exc:
        raise _unavailable(exc) from exc
    hits = svc.metrics.entry_hits
    body = {
        "entries": [catalog.describe(item, now, hits.get(item.entry.id, 0)) for item in found],
        "next_cursor": cursor or None,
    }
    return raw_response(orjson.dumps(body), 200, [JSON])


async def show_entry(request: Request) -> Response:
    svc = _admin(request)
    listed, _ = await _find(svc, request.path_params["entry_id"])
    now = svc.cache.clock()
    body = catalog.inspect(listed, now, svc.metrics.entry_hits.get(listed.entry.id, 0))
    return raw_response(orjson.dumps(body), 200, [JSON])


async def delete_entry(request: Request) -> Response:
    svc = _admin(request)
    listed, partition = await _find(svc, request.path_params["entry_id"])
    await _remove(svc, listed.key, partition)
    return raw_response(orjson.dumps({"removed": 1}), 200, [JSON])


async def delete_entries(request: Request) -> Response:
    svc = _admin(request)
    f = _filters(request, svc)
    if not f.any:
        raise BadRequestError("give a filter (DELETE /cache removes everything)")
    removed = await remove_matching(svc, f)
    return raw_response(orjson.dumps({"removed": removed}), 200, [JSON])


async def remove_matching(
    svc: Services, f: catalog.Filters, where: Callable[[Listed], bool] | None = None
) -> int:
    """Remove every entry ``f`` (and ``where``) matches, with its vector; how many. A store
    failure is a 503."""
    removed = 0
    try:
        async for item in catalog.every(svc.cache.store, f, svc.cache.clock()):
            if where is not None and not where(item):
                continue
            await _remove(svc, item.key, await _partition(svc, item.entry.id))
            removed += 1
    except StoreError as exc:
        raise _unavailable(exc) from exc
    return removed


async def export(request: Request) -> Response:
    svc = _admin(request)
    f = _filters(request, svc)

    async def lines() -> AsyncIterator[bytes]:
        now = svc.cache.clock()
        try:
            async for item in catalog.every(svc.cache.store, f, now):
                yield orjson.dumps(catalog.exported(item, now)) + b"\n"
        except StoreError as exc:  # the head is sent: say so in the stream, then stop
            yield orjson.dumps({"error": f"the store failed: {exc}"}) + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


def _admin(request: Request) -> Services:
    svc = services(request)
    require_admin(request, svc, required=True)
    return svc


def _filters(request: Request, svc: Services) -> catalog.Filters:
    query = dict(request.query_params)
    namespace = query.get("namespace")
    tenant_key = request.headers.get(TENANT_HEADER)
    if tenant_key is not None:
        namespace = svc.tenancy.namespace(tenant_key.strip() or None)
    return catalog.filters(query, namespace)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= catalog.MAX_PAGE:
        raise BadRequestError(f"limit must be 1 to {catalog.MAX_PAGE}", param="limit")
    return int(raw)


async def _find(svc: Services, entry_id: str) -> tuple[Listed, str]:
    """An entry by id, through the record every chat entry leaves beside it."""
    where = await _where(svc, entry_id)
    try:
        listed = None if where is None else await svc.cache.store.listed(where["k"])
    except StoreError as exc:
        raise _unavailable(exc) from exc
    if listed is None or where is None or listed.entry.id != entry_id:
        raise NotFoundError(f"no entry {entry_id}")
    return listed, where["p"]


async def _partition(svc: Services, entry_id: str) -> str:
    where = await _where(svc, entry_id)
    return "" if where is None else where["p"]


async def _where(svc: Services, entry_id: str) -> dict[str, str] | None:
    try:
        ref = await svc.cache.store.get_ref(entry_id)
    except StoreError as exc:
        raise _unavailable(exc) from exc
    where: Any = json_or_none(ref) if ref is not None else None
    if not isinstance(where, dict) or not isinstance(where.get("k"), str):
        return None
    return {"k": where["k"], "p": str(where.get("p") or "")}


async def _remove(svc: Services, key: str, partition: str) -> None:
    try:
        if partition:
            await svc.cache.store.remove_vector(partition, key)
        await svc.cache.store.delete(key)
    except StoreError as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: StoreError) -> StoreUnavailableError:
    return StoreUnavailableError(f"the store failed: {exc}")
