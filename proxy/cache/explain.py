"""``POST /cache/explain``: what semcache would do with a chat request, and why, without doing it.

The same steps as :class:`~proxy.cache.pipeline.ChatPipeline` in the same order (exact key, the
semantic lookup through the same code in dry-run mode, the same miss reason), but nothing is
sent upstream, stored, counted, learned or removed. Only the asking key's namespace is looked
in, as for a real request: an explanation never shows another tenant's entries. (The prompt is
embedded as a real request's would be; an HTTP embedder may cache that embedding.)
"""

from __future__ import annotations

from typing import Any

from proxy.cache.keys import chat_key
from proxy.cache.miss import miss_reason
from proxy.cache.policy import chat_semantic_body
from proxy.requests import CacheControl, ChatRequest, is_fresh
from proxy.semantic import Judged, Lookup, SemanticCache
from proxy.stores import Cache


async def explain(
    chat: ChatRequest,
    *,
    namespace: str,
    api_key: str | None,
    control: CacheControl,
    cache: Cache,
    semantic: SemanticCache,
) -> dict[str, Any]:
    key = chat_key(namespace, chat.body)
    out: dict[str, Any] = {"namespace": namespace, "key": key}
    if control.bypass:
        return out | {"decision": "BYPASS", "reason": f"bypass:{control.reason}"}

    entry = await cache.get(key) if control.lookup else None
    stale = False
    exact: dict[str, Any] = {"looked_up": control.lookup, "found": entry is not None}
    if entry is not None:
        age = cache.clock() - entry.created_at
        stale = not is_fresh(age, control)
        exact |= {"entry_id": entry.id, "age_seconds": round(age, 1), "fresh": not stale}
    out["exact"] = exact

    looked_at = chat_semantic_body(chat.body)
    query = await semantic.query(looked_at, namespace=namespace, api_key=api_key, count=False)
    trace: list[Judged] = []
    found = Lookup()
    section: dict[str, Any] = {"state": semantic.state}
    if looked_at is None:
        section["skipped"] = "stored-response"
    elif query is None:
        section["skipped"] = semantic.skipped(looked_at)
    elif not (control.lookup and control.semantic):
        section["skipped"] = "semantic-off" if control.lookup else "no-cache"
    else:
        found = await semantic.lookup(query, control, model=chat.model, trace=trace)
        section |= {
            "text": query.text,
            "partition": query.partition,
            "candidates": [await _candidate(cache, judged) for judged in trace],
        }
    out["semantic"] = section

    if entry is not None and not stale:
        return out | {"decision": "HIT", "lookup": "exact", "entry_id": entry.id}
    if found.hit is not None:
        hit = found.hit
        return out | {
            "decision": "HIT",
            "lookup": "semantic",
            "entry_id": hit.entry.id,
            "similarity": round(hit.similarity, 4),
        }
    reason = miss_reason(semantic, looked_at, control, stale, query, found)
    return out | {"decision": "MISS", "reason": reason, "shadow_hit": found.shadow_hit}


async def _candidate(cache: Cache, judged: Judged) -> dict[str, Any]:
    neighbor, verdict = judged.neighbor, judged.verdict
    entry = await cache.get(neighbor.id)
    return {
        "key": neighbor.id,
        "entry_id": None if entry is None else entry.id,
        "text": neighbor.text,
        "similarity": round(neighbor.similarity, 4),
        "accepted": verdict.accepted and (verdict.margin is None or verdict.margin >= judged.line),
        "reason": verdict.reason,
        "score": verdict.score,
        "margin": verdict.margin,
        "line": judged.line,
    }
