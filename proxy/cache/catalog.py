"""What the admin API lists of the cache: entries filtered by tenant, route, model and age, one
page at a time, described without their bodies (``GET /cache/entries``), or whole
(``GET /cache/export``).

Keys name their route and tenant (``chat:<namespace>:<sha256>``, ``emb:...``), and each entry
carries its model and the start of its prompt (:func:`proxy.cache.miss.entry_meta`), so a
filter needs no body parsing. A page is a store ``scan`` of one route's keys; the cursor says
which route and where in it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel

from proxy.cache.keys import namespace_of
from proxy.errors import BadRequestError
from proxy.requests import json_or_none
from proxy.stores import Listed, Store

ROUTES = {"chat": "chat:", "embeddings": "emb:", "completions": "cmpl:", "responses": "resp:",
          "ollama": "oll:"}  # fmt: skip
MAX_PAGE = 500
MAX_SCANS = 100
"""Store scans one page may make before it answers, full or not."""
ANSWER_PREVIEW_CHARS = 300


@dataclass(frozen=True, slots=True)
class Filters:
    namespace: str | None = None
    """One tenant's entries (its requests with a URL query too), or one scope of them as the
    listing names it (``<namespace>~<hmac>``: an ``X-Cache-Namespace``); None: every tenant's."""
    route: str | None = None
    model: str | None = None
    lookup: str | None = None
    """``semantic``: entries semantic lookups can find (indexed); ``exact``: the others."""
    min_age_seconds: float | None = None
    max_age_seconds: float | None = None

    def routes(self) -> list[str]:
        return [self.route] if self.route is not None else list(ROUTES)

    def matches(self, listed: Listed, now: float) -> bool:
        if self.namespace is not None and not _within(namespace_of(listed.key), self.namespace):
            return False
        age = now - listed.entry.created_at
        if self.min_age_seconds is not None and age < self.min_age_seconds:
            return False
        if self.max_age_seconds is not None and age > self.max_age_seconds:
            return False
        meta = meta_of(listed)
        if self.lookup is not None and meta.get("lookup", "exact") != self.lookup:
            return False
        return self.model is None or meta.get("model") == self.model

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.namespace,
                self.route,
                self.model,
                self.lookup,
                self.min_age_seconds,
                self.max_age_seconds,
            )
        )


def filters(query: dict[str, str], namespace: str | None) -> Filters:
    route = query.get("route")
    if route is not None and route not in ROUTES:
        raise BadRequestError(f"route must be one of {', '.join(ROUTES)}", param="route")
    lookup = query.get("lookup")
    if lookup not in (None, "semantic", "exact"):
        raise BadRequestError("lookup must be semantic or exact", param="lookup")
    return Filters(
        namespace=namespace,
        route=route,
        model=query.get("model"),
        lookup=lookup,
        min_age_seconds=_seconds(query, "older_than"),
        max_age_seconds=_seconds(query, "newer_than"),
    )


async def page(
    store: Store, f: Filters, cursor: str, limit: int, now: float
) -> tuple[list[Listed], str]:
    """Up to ``limit`` matching entries from ``cursor``, and the next cursor (``""``: done).
    Store scans are repeated until the page is full or ``MAX_SCANS`` were made (a Redis
    ``SCAN`` step may match nothing while more follow), so a page may still be short while more
    follow: keep going until the cursor is empty."""
    routes = f.routes()
    found: list[Listed] = []
    for _ in range(MAX_SCANS):
        route, _, inner = cursor.partition("|") if cursor else (routes[0], "", "")
        if route not in routes:
            raise BadRequestError("cursor is not one this route gave", param="cursor")
        prefix = ROUTES[route] + ("" if f.namespace is None else f.namespace)
        nxt, listed = await store.scan(inner, prefix=prefix, count=min(limit, MAX_PAGE))
        await anyio.lowlevel.checkpoint()  # the memory store never suspends: let others run
        found += [item for item in listed if f.matches(item, now)]
        if nxt:
            cursor = f"{route}|{nxt}"
        else:
            later = routes[routes.index(route) + 1 :]
            cursor = f"{later[0]}|" if later else ""
        if not cursor or len(found) >= limit:
            break
    return found, cursor


async def every(store: Store, f: Filters, now: float) -> AsyncIterator[Listed]:
    cursor = ""
    while True:
        found, cursor = await page(store, f, cursor, MAX_PAGE, now)
        for item in found:
            yield item
        if not cursor:
            return


def describe(listed: Listed, now: float, hits: int | None = None) -> dict[str, Any]:
    entry, meta = listed.entry, meta_of(listed)
    return {
        "id": entry.id,
        "key": listed.key,
        "route": next(r for r, p in ROUTES.items() if listed.key.startswith(p)),
        "namespace": namespace_of(listed.key),
        "model": meta.get("model", ""),
        "prompt": meta.get("prompt", ""),
        "lookup": meta.get("lookup", "exact"),
        "created_at": entry.created_at,
        "age_seconds": round(now - entry.created_at, 1),
        "ttl_seconds": None if listed.ttl_seconds is None else round(listed.ttl_seconds, 1),
        "bytes": entry.size(),
        "tokens": entry.tokens,
        "hits": hits,
    }


def inspect(listed: Listed, now: float, hits: int | None) -> dict[str, Any]:
    out = describe(listed, now, hits)
    completion = json_or_none(listed.entry.body)
    if isinstance(completion, dict):
        out["answer_preview"] = _answer_text(completion)[:ANSWER_PREVIEW_CHARS]
        out["streamed"] = bool(listed.entry.replay)
    return out


def exported(listed: Listed, now: float) -> dict[str, Any]:
    """An entry whole: what ``POST /cache/import`` restores (same key, same body)."""
    entry = listed.entry
    out = describe(listed, now)
    body = json_or_none(entry.body) if out["route"] != "embeddings" else None
    out["entry"] = {
        "id": entry.id,
        "created_at": entry.created_at,
        "tokens": entry.tokens,
        "completion_tokens": entry.completion_tokens,
        "body": body if body is not None else base64.b64encode(entry.body).decode(),
        "body_encoding": "json" if body is not None else "base64",
        "replay": base64.b64encode(entry.replay).decode(),
        "meta": json_or_none(entry.meta) or {},
    }
    return out


def _within(owner: str, namespace: str) -> bool:
    """Whether an entry made in ``owner`` is one of ``namespace``'s: that namespace itself, or
    a tenant's (no ``~``) scoped one."""
    return owner == namespace or owner.split("~")[0] == namespace


def meta_of(listed: Listed) -> dict[str, Any]:
    meta = json_or_none(listed.entry.meta) if listed.entry.meta else None
    return meta if isinstance(meta, dict) else {}


def _answer_text(completion: dict[str, Any]) -> str:
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _seconds(query: dict[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a number of seconds", param=name) from None
    if not value >= 0:
        raise BadRequestError(f"{name} must be a number of seconds", param=name)
    return value
