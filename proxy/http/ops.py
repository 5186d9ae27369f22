"""The ops routes: health and readiness, metrics and stats, feedback, and emptying the cache."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.cache.answers import JSON, error_response, raw_response
from proxy.cache.feedback import parse_report
from proxy.cache.keys import api_key_from
from proxy.errors import HTTPError, StoreUnavailableError
from proxy.http.handlers import (
    Services,
    header_fields,
    is_admin,
    read_body,
    require_admin,
    services,
)
from proxy.semantic import render as render_groups
from proxy.semantic import report

log = logging.getLogger("semcache.handlers")
FEEDBACK_MAX_BYTES = 4096
FAILING_AFTER = 10
"""Failed store operations in the last minute from which a store that answers pings is
``failing`` (``/healthz``, ``/readyz``)."""


async def healthz(request: Request) -> Response:
    """Liveness, and the store: ``unreachable`` when a ping fails, ``failing`` when it answers
    pings but ``FAILING_AFTER`` or more of its operations failed in the last minute (a cluster
    node answering MOVED, a full disk, a timeout on every search), else ``ok``."""
    svc = services(request)
    store, failures = await _store_state(svc)
    body = {
        "status": "ok" if store == "ok" else "degraded",
        "store": store,
        "store_errors_last_minute": failures,
    }
    # A store outage degrades to "no cache", so the proxy itself stays healthy (200).
    return raw_response(orjson.dumps(body), 200, [JSON])


async def readyz(request: Request) -> Response:
    """Readiness (:mod:`proxy.http.readiness`): 503 while the upstream does not answer, 200
    otherwise; ``degraded`` when the store or semantic matching is not working."""
    svc = services(request)
    store, failures = await _store_state(svc)
    probe = await svc.probe.check()
    semantic = svc.semantic.state.split(":", 1)[0]
    wanted = svc.settings.embed_model is not None and svc.semantic.mode != "off"
    if not probe.ok:
        status = "unready"
    elif store != "ok" or (wanted and not svc.semantic.enabled):
        status = "degraded"
    else:
        status = "ready"
    body = {
        "status": status,
        "upstream": {
            "status": probe.status,
            "detail": probe.detail,
            "checked_seconds_ago": round(svc.probe.age_seconds(probe), 1),
        },
        "store": store,
        "store_errors_last_minute": failures,
        "semantic": semantic,
        "semantic_detail": svc.semantic.state,
    }
    return raw_response(orjson.dumps(body), 200 if probe.ok else 503, [JSON])


async def _store_state(svc: Services) -> tuple[str, int]:
    reachable = await svc.cache.reachable()
    failures = svc.cache.recent_failures()
    store = "unreachable" if not reachable else "failing" if failures >= FAILING_AFTER else "ok"
    return store, failures


async def metrics(request: Request) -> Response:
    svc = services(request)
    require_admin(request, svc, required=False)
    text = svc.metrics.render(await svc.cache.stats())
    if svc.semantic.adaptive is not None:
        text += render_groups(report(svc.semantic.adaptive))
    return raw_response(text.encode(), 200, [(b"content-type", b"text/plain; version=0.0.4")])


async def cache_stats(request: Request) -> Response:
    svc = services(request)
    require_admin(request, svc, required=False)
    snapshot = svc.metrics.snapshot(await svc.cache.stats())
    # The figures above are this process's; these are every replica's on the store, added up.
    totals = await svc.totals.read()
    own = await svc.cache.census()  # under this proxy's prefix only (refreshed every 30 s)
    store = None if own is None else {"entries": own.entries, "bytes": own.bytes}
    snapshot["whole_cache"] = None if totals is None else {**totals, "store": store}
    snapshot["store_kind"] = "memory" if svc.settings.redis_url is None else "redis"
    snapshot["semantic_enabled"] = svc.semantic.enabled
    snapshot["embedder"] = svc.semantic.name
    snapshot["verifier"] = svc.semantic.verifier.name
    snapshot["max_wrong_hit_rate"] = svc.settings.max_wrong_hit_rate
    snapshot["semantic_mode"] = svc.semantic.mode
    snapshot["audit_rate"] = svc.settings.audit_rate
    snapshot["groups"] = [] if svc.semantic.adaptive is None else report(svc.semantic.adaptive)
    return raw_response(orjson.dumps(snapshot), 200, [JSON])


async def cache_feedback(request: Request) -> Response:
    """``POST /cache/feedback``: a served answer was wrong (see :mod:`proxy.cache.feedback`). The
    entry's own API key, or the admin token, which may report any tenant's entry."""
    svc = services(request)
    fields = header_fields(request.scope)
    try:
        namespace: str | None = None
        reporters: frozenset[str] = frozenset()
        if not is_admin(request, svc):
            svc.tenancy.authorize(api_key_from(fields))
            headers = request.scope["headers"]
            namespace = svc.tenancy.namespace(svc.tenancy.identity(headers))
            reporters = svc.tenancy.credentials(headers) or frozenset({namespace})
        raw = await read_body(request, FEEDBACK_MAX_BYTES, fields)
        result = await svc.feedback.report(
            parse_report(raw), namespace=namespace, reporters=reporters
        )
    except HTTPError as exc:
        return error_response(exc)
    log.info("feedback: entry %s reported wrong (%s)", result["entry_id"], result)
    return raw_response(orjson.dumps(result), 200, [JSON])


async def clear_cache(request: Request) -> Response:
    """``DELETE /cache``: remove every entry and vector under this proxy's prefix."""
    svc = services(request)
    require_admin(request, svc, required=True)
    removed = await svc.cache.clear()
    if removed is None:
        return error_response(StoreUnavailableError("the store is unreachable; nothing removed"))
    log.info("cache cleared by an admin request: %d keys", removed)
    return raw_response(orjson.dumps({"removed": removed}), 200, [JSON])
