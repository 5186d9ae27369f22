"""``POST /cache/feedback``: an application reports a served answer wrong.

Every stored chat entry leaves a small record beside it (``Store.put_ref``) of where it lives (its
tenant's namespace, its key, its semantic partition), with the entry's lifetime. Feedback names
the ``X-Cache-Entry-Id`` of the answer; it is taken from the entry's own tenant (the same API
key) or the admin token; anyone else gets the 404 an unknown id gets. Then:

- the entry stops being served semantically (its vector is removed; exact hits go on);
- with ``"scope": "all"`` it is deleted, so the next identical request asks the upstream;
- when this process served it as a semantic hit (the last ``SERVED_KEPT`` of them are kept
  with their margins), the verdict counts as an audit result for its group: a wrong hit seen;
  at most ``EVIDENCE_PER_TENANT`` of one tenant's reports an hour (the admin's: all).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.cache.keys import namespace_of
from proxy.errors import BadRequestError, NotFoundError
from proxy.requests import json_or_none, parse_object
from proxy.semantic import SemanticCache
from proxy.stores import Cache, Entry

SERVED_KEPT = 10_000
SCOPES = ("semantic", "all")
EVIDENCE_PER_TENANT = 10
"""Reports of one tenant counted as wrong hits per ``EVIDENCE_WINDOW_SECONDS``: the evidence is
pooled per model across tenants, and a report is the tenant's word, not an upstream answer, so
one key cannot switch semantic hits off for everyone. Reports past it still stop the entry."""
EVIDENCE_WINDOW_SECONDS = 3600.0
TENANTS_KEPT = 10_000


KEPT_REF = "kept:"
"""Refs by the id of an object the upstream keeps (``kept:resp_...``); entry ids are hex."""
KEPT_PATH = re.compile(r"/(?:responses|chat/completions)/([^/]+)")
"""Where a client deletes such an object (``DELETE /v1/responses/{id}``, and a stored chat
completion's ``DELETE /v1/chat/completions/{id}``)."""


def kept_id(route: str, body: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """The id of the object the upstream keeps for ``answer``, if it keeps one: a response
    unless the request said ``"store": false``; a chat completion only with ``"store": true``."""
    if route == "responses":
        kept = body.get("store") is not False
    else:
        kept = route == "chat" and body.get("store") is True
    found = answer.get("id")
    return found if kept and isinstance(found, str) and found else None


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
    def __init__(
        self, cache: Cache, semantic: SemanticCache, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cache = cache
        self._semantic = semantic
        self._served: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._clock = clock
        self._counted: OrderedDict[str, deque[float]] = OrderedDict()
        """namespace -> when its last reports were counted (the newest ``TENANTS_KEPT``)."""

    async def remember(
        self,
        entry: Entry,
        *,
        key: str,
        partition: str,
        ttl_seconds: float,
        kept_as: str | None = None,
    ) -> None:
        """Where a stored entry lives, by its id: for reports, and ``/cache/entries/{id}``; and
        by ``kept_as``, the id of the object the upstream keeps for the answer (a stored
        response or chat completion), so that deleting that object forgets the entry."""
        # With the entry's id: a refresh may replace it under the key.
        where = {"n": namespace_of(key), "k": key, "p": partition, "i": entry.id}
        await self._cache.put_ref(entry.id, orjson.dumps(where), ttl_seconds)
        if kept_as is not None:
            await self._cache.put_ref(KEPT_REF + kept_as, orjson.dumps(where), ttl_seconds)

    async def deleted_upstream(self, kept_as: str) -> bool:
        """The upstream deleted the object ``kept_as`` (a client's 2xx ``DELETE``): the entry
        that serves its id is deleted too; it would hand out an id nobody can continue or fetch.
        The upstream's own answer says the caller could delete it, so whose entry it is does not
        matter (and a deleted entry exposes nothing)."""
        ref = await self._cache.get_ref(KEPT_REF + kept_as)
        where = json_or_none(ref) if ref is not None else None
        if not isinstance(where, dict) or not isinstance(where.get("k"), str):
            return False
        entry = await self._cache.get(where["k"])
        if entry is None or entry.id != where.get("i"):
            return False  # gone already, or a newer answer (a refresh) lives at that key now
        if where.get("p"):
            await self._cache.remove_vector(str(where["p"]), where["k"])
        await self._cache.delete(where["k"])
        return True

    def served(self, entry_id: str, group: str, margin: float | None) -> None:
        """A semantic hit on this entry was served here (bounded memory)."""
        self._served[entry_id] = (group, margin)
        self._served.move_to_end(entry_id)
        if len(self._served) > SERVED_KEPT:
            self._served.popitem(last=False)

    async def report(
        self, report: Report, *, namespace: str | None, reporters: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """``namespace``: the caller's; None for the admin token (any tenant's entry).
        ``reporters``: whom the report is charged to (the namespace of each credential the
        request carried, :meth:`proxy.cache.tenancy.Tenancy.credentials`); the namespace when
        empty."""
        ref = await self._cache.get_ref(report.entry_id)
        where = json_or_none(ref) if ref is not None else None
        owner = where.get("n") if isinstance(where, dict) else None
        if not isinstance(owner, str) or not _owns(namespace, owner):
            raise NotFoundError(f"no entry {report.entry_id} for this API key")
        assert isinstance(where, dict)
        key, partition = str(where.get("k")), str(where.get("p") or "")
        # A refresh may have stored a newer answer under the key since: that one is not the
        # answer reported, and stays (a ref written before ids were kept in it: as it says).
        current = await self._cache.get(key) if "i" in where else None
        replaced = current is not None and current.id != report.entry_id
        if not replaced:
            if partition:
                await self._cache.remove_vector(partition, key)
            if report.scope == "all":
                await self._cache.delete(key)
        counted = False
        seen = self._served.pop(report.entry_id, None)
        adaptive = self._semantic.adaptive
        auditor = self._semantic.auditor
        if (
            seen is not None
            and adaptive is not None
            and self._may_count(namespace, reporters)
            and (auditor is None or auditor.count_once(report.entry_id))  # not if an audit did
        ):
            group, margin = seen
            adaptive.observed(group, margin, wrong=True)
            adaptive.count(group, "feedback_wrong")
            counted = True
        return {
            "entry_id": report.entry_id,
            "semantic": "stopped",
            "deleted": report.scope == "all" and not replaced,
            "counted_as_wrong_hit": counted,
        }

    def _may_count(self, namespace: str | None, reporters: frozenset[str]) -> bool:
        """The admin's reports always count; a tenant's, ``EVIDENCE_PER_TENANT`` an hour, for
        every credential it carried: extra headers beside a key never buy it more reports."""
        if namespace is None:
            return True
        now = self._clock()
        charged = []
        for who in sorted(reporters or {namespace}):
            times = self._counted.pop(who, None) or deque()
            self._counted[who] = times
            while times and times[0] <= now - EVIDENCE_WINDOW_SECONDS:
                times.popleft()
            charged.append(times)
        while len(self._counted) > TENANTS_KEPT:
            self._counted.popitem(last=False)
        if any(len(times) >= EVIDENCE_PER_TENANT for times in charged):
            return False
        for times in charged:
            times.append(now)
        return True


def _owns(namespace: str | None, owner: str) -> bool:
    return namespace is None or owner == namespace or owner.startswith(namespace + "~")


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
