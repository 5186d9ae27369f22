"""``POST /cache/feedback``: an application reports a served answer wrong.

Every stored chat entry leaves a small record beside it (``Store.put_ref``) of where it lives (its
tenant's namespace, its key, its semantic partition), with the entry's lifetime. Feedback names
the ``X-Cache-Entry-Id`` of the answer; it is taken from the entry's own tenant (the same API
key) or the admin token; anyone else gets the 404 an unknown id gets. Then:

- the entry stops being served semantically (its vector is removed; exact hits go on);
- with ``"scope": "all"`` it is deleted, so the next identical request asks the upstream;
- when this process served it as a semantic hit (the last ``SERVED_KEPT`` of them are kept
  with their margins), the verdict counts as an audit result for its group: a wrong hit seen.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.cache.keys import namespace_of
from proxy.errors import BadRequestError, NotFoundError
from proxy.http.validate import json_or_none, parse_object
from proxy.semantic.lookup import SemanticCache
from proxy.stores.base import Entry
from proxy.stores.guard import Cache

SERVED_KEPT = 10_000
SCOPES = ("semantic", "all")


@dataclass(frozen=True, slots=True)
class Report:
    entry_id: str
    scope: str


def parse_report(raw: bytes) -> Report:
    body = parse_object(raw)
    entry_id = body.get("entry_id")
    if not isinstance(entry_id, str) or len(entry_id) != 16 or not _is_hex(entry_id):
        raise BadRequestError(
            "'entry_id' must be the 16 hex digits of X-Cache-Entry-Id", param="entry_id"
        )
    scope = body.get("scope", "semantic")
    if scope not in SCOPES:
        raise BadRequestError("'scope' must be 'semantic' or 'all'", param="scope")
    return Report(entry_id.lower(), scope)


class Feedback:
    def __init__(self, cache: Cache, semantic: SemanticCache) -> None:
        self._cache = cache
        self._semantic = semantic
        self._served: OrderedDict[str, tuple[str, float | None]] = OrderedDict()

    async def remember(self, entry: Entry, *, key: str, partition: str, ttl_seconds: float) -> None:
        """Where a stored entry lives, by its id: for reports, and ``/cache/entries/{id}``."""
        data = orjson.dumps({"n": namespace_of(key), "k": key, "p": partition})
        await self._cache.put_ref(entry.id, data, ttl_seconds)

    def served(self, entry_id: str, group: str, margin: float | None) -> None:
        """A semantic hit on this entry was served here (bounded memory)."""
        self._served[entry_id] = (group, margin)
        self._served.move_to_end(entry_id)
        if len(self._served) > SERVED_KEPT:
            self._served.popitem(last=False)

    async def report(self, report: Report, *, namespace: str | None) -> dict[str, Any]:
        """``namespace``: the caller's; None for the admin token (any tenant's entry)."""
        ref = await self._cache.get_ref(report.entry_id)
        where = json_or_none(ref) if ref is not None else None
        owner = where.get("n") if isinstance(where, dict) else None
        if not isinstance(owner, str) or not _owns(namespace, owner):
            raise NotFoundError(f"no entry {report.entry_id} for this API key")
        assert isinstance(where, dict)
        key, partition = str(where.get("k")), str(where.get("p") or "")
        if partition:
            await self._cache.remove_vector(partition, key)
        if report.scope == "all":
            await self._cache.delete(key)
        counted = False
        seen = self._served.pop(report.entry_id, None)
        adaptive = self._semantic.adaptive
        if seen is not None and adaptive is not None:
            group, margin = seen
            adaptive.observed(group, margin, wrong=True)
            adaptive.count(group, "feedback_wrong")
            counted = True
        return {
            "entry_id": report.entry_id,
            "semantic": "stopped",
            "deleted": report.scope == "all",
            "counted_as_wrong_hit": counted,
        }


def _owns(namespace: str | None, owner: str) -> bool:
    return namespace is None or owner == namespace or owner.startswith(namespace + "~")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
