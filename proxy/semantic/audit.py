"""What semantic matching gets right on live traffic: answers compared in the background.

Three kinds of comparison, all off the client's path (a bounded queue, ``concurrency``
workers; when the queue is full a comparison is dropped and counted, never waited for):

- **Free**: a lookup's best candidate was not served (below the line, or shadow mode), so the
  request went upstream anyway; once its answer is stored, the candidate's cached answer is
  compared with it. No extra upstream call.
- **Audits** (``SEMCACHE_AUDIT_RATE``): that share of served semantic hits is also asked
  upstream (``stream: false``, the client's own headers), and the fresh answer compared with
  the one served. A hit found wrong stops its entry being served semantically. Audit requests
  take no ``SEMCACHE_MAX_INFLIGHT`` slot, and a 429 pauses audits for ``PAUSE_SECONDS``.
- **Exact audits**: the same share of exact hits at temperature 0: the upstream's own answers
  must agree, so their disagreement measures the upstream's variability plus the judge's error.

Free comparisons and audits feed the group's evidence (:mod:`proxy.semantic.adaptive`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import UpstreamError
from proxy.metrics import Metrics
from proxy.requests import json_or_none
from proxy.semantic.adaptive import Adaptive
from proxy.semantic.judge import AnswerJudge
from proxy.stores import Cache, Entry
from proxy.upstream import DECODABLE_ENCODINGS, Upstream, completion_is_storable

log = logging.getLogger("semcache.audit")
QUEUE_SIZE = 1000
COUNTED_KEPT = 10_000
PAUSE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A lookup's best candidate, served or not."""

    group: str
    margin: float | None
    partition: str
    key: str
    entry: Entry | None = None
    """Fetched when the candidate was (or in shadow mode would have been) served."""


@dataclass(frozen=True, slots=True)
class _Job:
    candidate: Candidate
    kind: str
    """``free``, ``shadow``, ``audit`` or ``exact``."""
    fresh: Any = None
    """The fresh completion (free, shadow); audits fetch theirs."""
    url: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


class Auditor:
    def __init__(
        self,
        cache: Cache,
        upstream: Upstream,
        adaptive: Adaptive,
        judge: AnswerJudge,
        metrics: Metrics,
        *,
        rate: float,
        concurrency: int,
    ) -> None:
        self._cache = cache
        self._upstream = upstream
        self._adaptive = adaptive
        self._judge = judge
        self._metrics = metrics
        self.rate = rate
        self._concurrency = concurrency
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(QUEUE_SIZE)
        self._credit = {"audit": 0.0, "exact": 0.0}
        self._paused_until = 0.0
        self.counted: OrderedDict[str, None] = OrderedDict()
        """Entries whose served hit is already a wrong answer in the evidence (an audit's or a
        report's, :mod:`proxy.cache.feedback`): the other never counts it a second time."""

    def compare(self, candidate: Candidate, fresh: Any, *, shadow: bool) -> None:
        """Compare a candidate that was not served with the answer the upstream just gave."""
        self._put(_Job(candidate, "shadow" if shadow else "free", fresh=fresh))

    def maybe_audit(
        self,
        candidate: Candidate,
        *,
        exact: bool,
        url: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: dict[str, Any],
    ) -> bool:
        """Audit this served hit if the budget allows: at most ``rate`` of hits (a credit
        of ``rate`` per hit, one spent per audit), and none while paused after a 429."""
        kind = "exact" if exact else "audit"
        if self.rate <= 0:
            return False
        # Credit is capped at one audit: hits during a pause (or a dropped audit) never add up
        # to a burst of audits right after it.
        self._credit[kind] = min(self._credit[kind] + self.rate, 1.0)
        if self._credit[kind] < 1.0 or time.monotonic() < self._paused_until:
            return False
        self._credit[kind] -= 1.0
        fresh_body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        job = _Job(candidate, kind, url=url, headers=tuple(headers), body=orjson.dumps(fresh_body))
        return self._put(job)

    def _put(self, job: _Job) -> bool:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._metrics.audits[(job.kind, "dropped")] += 1
            return False
        return True

    async def run(self) -> None:
        """The workers; run in the app's task group until it is cancelled."""
        workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    async def drain(self) -> None:
        """Wait until every queued comparison is done (tests, benches)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._do(job)
            except Exception:
                log.exception("a %s comparison failed", job.kind)
                self._metrics.audits[(job.kind, "error")] += 1
            finally:
                self._queue.task_done()

    async def _do(self, job: _Job) -> None:
        candidate = job.candidate
        entry = candidate.entry or await self._cache.get(candidate.key)
        cached = json_or_none(entry.body) if entry is not None else None
        if cached is None:
            self._metrics.audits[(job.kind, "gone")] += 1
            return
        fresh = job.fresh if job.kind in ("free", "shadow") else await self._ask(job)
        if fresh is None:
            return
        same = await self._judge.same(cached, fresh)
        verdict = "same" if same else "different"
        self._metrics.audits[(job.kind, verdict)] += 1
        self._adaptive.count(candidate.group, f"{job.kind}_{verdict}")
        if job.kind == "exact":
            return  # the upstream's own variability: not evidence about matching
        assert entry is not None  # it had a body
        if job.kind == "audit" and not same and not self.count_once(entry.id):
            return  # reported wrong already, and counted then
        self._adaptive.observed(candidate.group, candidate.margin, wrong=not same)
        if job.kind == "audit" and not same:
            # This entry answered a question it does not answer: no more semantic hits on it.
            await self._cache.remove_vector(candidate.partition, candidate.key)

    def count_once(self, entry_id: str) -> bool:
        """Whether a wrong answer served from ``entry_id`` is still to be counted (and now is)."""
        if entry_id in self.counted:
            return False
        self.counted[entry_id] = None
        if len(self.counted) > COUNTED_KEPT:
            self.counted.popitem(last=False)
        return True

    async def _ask(self, job: _Job) -> Any:
        if time.monotonic() < self._paused_until:
            # Queued before a 429 came back for another: the pause holds for it too.
            self._metrics.audits[(job.kind, "paused")] += 1
            return None
        try:
            response = await self._upstream.send(
                "POST",
                job.url,
                headers=self._upstream.forward_headers(
                    job.headers, accept_encoding=DECODABLE_ENCODINGS
                ),
                content=job.body,
                background=True,
            )
            body = await self._upstream.read(response)
        except UpstreamError:
            self._metrics.audits[(job.kind, "upstream_error")] += 1
            return None
        if response.status_code == 429:
            self._paused_until = time.monotonic() + PAUSE_SECONDS
        fresh = json_or_none(body) if response.status_code == 200 else None
        if not completion_is_storable(response.status_code, fresh):
            # An error (even one sent with 200), a cut or empty answer: nothing to compare the
            # served answer with, and no evidence that it was wrong.
            self._metrics.audits[(job.kind, "upstream_error")] += 1
            return None
        return fresh
