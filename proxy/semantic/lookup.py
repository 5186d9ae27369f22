"""Semantic lookup: embed the last user message, search only its context partition, and serve
a neighbour only when the verifier accepts it (:mod:`proxy.semantic.verifier`).

Any failure here (embedder or reader down or slow, store error) means "no semantic hit", never
an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from proxy.metrics import Metrics
from proxy.requests import CacheControl, is_fresh
from proxy.semantic.adaptive import Adaptive
from proxy.semantic.audit import Auditor, Candidate
from proxy.semantic.embedders import LOCAL_INSTALL, Embedder, EmbedderError, Reader, Vector
from proxy.semantic.partition import semantic_partition, semantic_text
from proxy.semantic.sketch import Sketch
from proxy.semantic.verifier import SAME_WORDS_MARGIN, Verdict, Verifier
from proxy.stores import Cache, Entry, Neighbor

log = logging.getLogger("semcache.semantic")

CANDIDATES = 5
"""Neighbours checked per lookup: the best one may be refused where the next is accepted."""


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    text: str
    partition: str
    vector: Vector
    sketch: Sketch | None


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry: Entry
    similarity: float


@dataclass(frozen=True, slots=True)
class Judged:
    """One neighbour and the verifier's verdict on it, for ``POST /cache/explain``."""

    neighbor: Neighbor
    verdict: Verdict
    line: float
    """The margin the group's line asks for (adaptive; 0 = the calibrated threshold)."""


@dataclass(frozen=True, slots=True)
class Lookup:
    hit: SemanticHit | None = None
    """What to serve; never set in shadow mode."""
    candidate: Candidate | None = None
    """The best candidate, served or not: not served, its answer is compared with the fresh
    one; served, it may be audited."""
    shadow_hit: bool = False
    """Shadow mode: the candidate would have been served."""
    reason: str = "no-entry"
    """Why nothing was served (``X-Cache-Reason``): ``no-entry`` (nothing in the caller's
    partition above the retrieval floor), ``below-threshold <similarity>``,
    ``rejected:<rule>``, ``stale``, ``shadow``. Only the caller's own partition is searched, so
    it tells nothing of other tenants' entries."""


class SemanticCache:
    def __init__(
        self,
        cache: Cache,
        embedder: Embedder | None,
        metrics: Metrics,
        *,
        verifier: Verifier,
        reader: Reader | None,
        fallback: Verifier,
        min_similarity: float,
        max_age_seconds: int | None,
        max_chars: int,
        timeout_seconds: float,
        adaptive: Adaptive | None = None,
        auditor: Auditor | None = None,
        mode: str = "on",
    ) -> None:
        """``reader``: the local model that sketches prompts for ``verifier`` (the embedder
        itself when it is that model). When it cannot start, ``fallback`` (which reads
        nothing) judges instead."""
        self._cache = cache
        self._embedder = embedder
        self._metrics = metrics
        self.verifier = verifier
        self._reader = reader
        self._one_pass = reader is not None and id(reader) == id(embedder)
        """The embedder is the reader: one pass of the model gives vector and sketch."""
        self._fallback = fallback
        self._min_similarity = min_similarity
        self._max_age_seconds = max_age_seconds
        self._max_chars = max_chars
        self._timeout_seconds = timeout_seconds
        self.adaptive = adaptive
        """Moves the line per group from audited evidence; None: the calibrated line."""
        self.auditor = auditor
        self.mode = mode
        """``on``, ``shadow`` (judge, never serve) or ``off``."""
        self.enabled = False
        """Set at startup once the embedder is loaded and the store can search vectors."""
        self.state = "off: not started"
        """One line for the start-up log: on or off, with what or why."""

    async def start(self) -> None:
        if self._embedder is None:
            self.state = "off: SEMCACHE_EMBED_MODEL is unset (exact caching only)"
            return
        if self.mode == "off":
            self.state = "off: SEMCACHE_SEMANTIC_MODE=off"
            return
        if await self._cache.supports_vectors() is False:
            self.state = "off: the store has no vector search (Redis 8 vector sets)"
            log.warning(
                "the store has no vector search (Redis 8 vector sets, allowed by its ACL): "
                "semantic lookup is off, exact caching works as usual"
            )
            return
        try:
            await self._embedder.start()
        except EmbedderError as exc:
            self.state = f"off: embedder {self.name} failed to start"
            log.warning("embedder %s failed to start, semantic lookup is off: %s", self.name, exc)
            return
        if self.verifier.reads and self._reader is not None and not self._one_pass:
            try:
                await self._reader.start()
            except EmbedderError as exc:
                log.warning("the verifier's reader %s failed to start: %s", self._reader.name, exc)
                self._reader = None
        if self.verifier.reads and self._reader is None:
            log.warning(
                "no local reader for the learned verifier (%s): semantic hits are judged by "
                "cosine alone",
                LOCAL_INSTALL,
            )
            self.verifier = self._fallback
        self.enabled = True
        self.state = f"{self.mode}: embedder {self.name}, verifier {self.verifier.name}"

    def group(self, model: str) -> str:
        """What adaptive thresholds and audits count together: one model's lookups whose margins
        are on one scale (the verifier and its calibrated line; for the cosine fallback, the
        embedder whose cosines they are). Another embedder, calibration or wrong-hit rate starts
        again from the calibrated line. The model as :func:`model_label` writes it."""
        scale = self.verifier.scale
        if not self.verifier.reads:
            scale = f"{scale}[{self.name}]"
        return f"{scale}|{model_label(model)}"

    @property
    def name(self) -> str:
        return "off" if self._embedder is None else self._embedder.name

    async def query(
        self,
        body: dict[str, Any] | None,
        *,
        namespace: str,
        api_key: str | None,
        count: bool = True,
        api: str | None = None,
    ) -> SemanticQuery | None:
        """Embed (and sketch) the request's last user message; None when it has none to
        compare, or the embedder failed (the request then goes on exact-only), or when there
        is no ``body`` to read (a request matched exactly only, nothing counted). ``count``:
        off for a dry run (``POST /cache/explain``). ``api``: the API of a body read as chat
        messages (:func:`~proxy.semantic.partition.semantic_partition`); None for chat
        completions."""
        if not self.enabled or self._embedder is None or body is None:
            return None
        text = semantic_text(body, max_chars=self._max_chars)
        if text is None:
            self._tally(count, "ineligible")
            return None
        sketch = None
        try:
            async with asyncio.timeout(self._timeout_seconds):  # cheaper than anyio's scope
                if not self.verifier.reads:
                    vector = await self._embedder.embed(text, namespace=namespace, api_key=api_key)
                elif self._one_pass:
                    assert self._reader is not None
                    vector, sketch = await self._reader.read(text)
                else:
                    assert self._reader is not None
                    vector = await self._embedder.embed(text, namespace=namespace, api_key=api_key)
                    _, sketch = await self._reader.read(text)
        except (EmbedderError, TimeoutError) as exc:
            self._tally(count, "embedder_errors")
            log.warning("embedder failed, serving exact-only: %s", exc or "timeout")
            return None
        space = f"{self.name}|{self.verifier.name}"
        partition = semantic_partition(namespace, body, space, api=api)
        return SemanticQuery(text=text, partition=partition, vector=vector, sketch=sketch)

    def skipped(self, body: dict[str, Any]) -> str:
        """Why :meth:`query` gave no query for ``body`` (``X-Cache-Reason``)."""
        if not self.enabled:
            return "semantic-off"
        if semantic_text(body, max_chars=self._max_chars) is not None:
            return "semantic-unavailable"  # the embedder failed or timed out
        if semantic_text(body, max_chars=1 << 62) is not None:
            return "too-long"
        return "no-user-text"

    async def lookup(
        self,
        query: SemanticQuery,
        control: CacheControl,
        *,
        model: str = "",
        trace: list[Judged] | None = None,
    ) -> Lookup:
        """Judge every neighbour above the floor; the one with the best margin is served when
        its margin reaches the group's line (0, the calibrated threshold, until evidence moves
        it). A refusal by a rule or for the language is final, whatever the line.

        ``trace``: a dry run (``POST /cache/explain``): each judged neighbour is appended to
        it, and nothing is counted, learned or removed."""
        record = trace is None
        floor = self._min_similarity
        if control.min_similarity is not None:
            floor = control.min_similarity
        self._tally(record, "lookups")
        neighbors = await self._cache.nearest(
            query.partition, query.vector, k=CANDIDATES, min_similarity=floor
        )
        group = self.group(model)
        offset = 0.0 if self.adaptive is None else self.adaptive.offset(group)
        best: tuple[tuple[float, bool], Neighbor] | None = None
        refusal = "no-entry"
        for neighbor in neighbors:
            verdict = self.verifier.judge(
                query.text, query.sketch, neighbor, floor=floor, requested=control.min_similarity
            )
            if trace is not None:
                trace.append(Judged(neighbor, verdict, offset))
            margin = verdict.margin
            if margin is None and verdict.accepted:
                margin = SAME_WORDS_MARGIN  # accepted on grounds no line moves
            # The request's own threshold decides where it set one; else the line does.
            ok = margin is not None and (
                verdict.accepted if verdict.requested else margin >= offset
            )
            if not ok:
                line = margin is not None and not verdict.requested and margin >= 0
                reason = "adaptive" if line else verdict.reason
                if record:
                    self._metrics.semantic_rejections[reason or "verifier"] += 1
                if refusal == "no-entry":  # neighbours come best first: say the first's
                    refusal = _refusal(reason, neighbor.similarity)
            if margin is not None and (best is None or margin > best[0][0]):
                best = ((margin, ok), neighbor)
        if record and self.adaptive is not None:
            self.adaptive.looked_up(group, None if best is None else best[0][0])
        if best is None:
            self._tally(record, "no_match")
            return Lookup(reason=refusal)
        (margin, ok), neighbor = best
        candidate = Candidate(group, margin, query.partition, neighbor.id)
        if not ok:
            self._tally(record, "no_match")
            return Lookup(candidate=candidate, reason=refusal)
        entry = await self._cache.get(neighbor.id)
        if entry is None:
            if record:  # the entry expired or was evicted before its vector: drop the orphan
                await self._cache.remove_orphan(query.partition, neighbor.id)
            self._tally(record, "no_match")
            return Lookup()
        age = self._cache.clock() - entry.created_at
        too_old = self._max_age_seconds is not None and age > self._max_age_seconds
        if too_old or not is_fresh(age, control):
            self._tally(record, "too_old")
            return Lookup(reason="stale")
        candidate = Candidate(group, margin, query.partition, neighbor.id, entry)
        if self.mode == "shadow":
            self._tally(record, "shadow_hits")
            if record and self.adaptive is not None:
                self.adaptive.count(group, "shadow_hits")
            return Lookup(candidate=candidate, shadow_hit=True, reason="shadow")
        return Lookup(SemanticHit(entry=entry, similarity=neighbor.similarity), candidate)

    def _tally(self, record: bool, outcome: str) -> None:
        if record:
            self._metrics.semantic[outcome] += 1

    async def remember(self, query: SemanticQuery, key: str, ttl_seconds: float) -> None:
        sketch = b"" if query.sketch is None else query.sketch.pack()
        await self._cache.add_vector(
            query.partition, key, query.vector, query.text, ttl_seconds, sketch=sketch
        )


_PLAIN_LABEL = re.compile(r"[A-Za-z0-9._:/@+\-]{1,100}")


def model_label(model: str) -> str:
    """A model name fit for a metric label, a log line and a bounded map: as it is when it is
    at most 100 plain characters (letters, digits, ``. _ : / @ + -``), else ``~`` and a digest.
    Model names come from request bodies: a quote or a newline in one must not write lines
    into /metrics or the log, nor a megabyte name fill memory."""
    if _PLAIN_LABEL.fullmatch(model):
        return model
    return "~" + hashlib.sha256(model.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _refusal(reason: str | None, similarity: float) -> str:
    """``X-Cache-Reason`` of a refused neighbour: below a threshold on cosine (the retrieval
    floor, the cosine verifier's line or the adaptive line) with the neighbour's cosine, or
    refused by the learned verifier (``rejected:verifier``) or a rule (``rejected:negation``)."""
    if reason in (None, "below_threshold", "adaptive"):
        return f"below-threshold {similarity:.4f}"
    return f"rejected:{reason.replace('_', '-')}"
