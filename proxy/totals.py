"""Whole-cache request counts: what every process sharing the store has served, added up there.

:class:`~proxy.metrics.Metrics` counts what this process served (``/metrics`` stays per process,
as Prometheus expects: it sums the replicas itself). For ``/cache/stats`` each process also adds
its counts to one group of counters in the store (``HINCRBY`` on Redis, so replicas add up)
every ``FLUSH_SECONDS``, when stats are asked for, and when it stops; the totals read back are
the same on every replica. A replica killed outright loses at most its last ``FLUSH_SECONDS``
of counts. The counters live as long as the store keeps them (``DELETE /cache`` leaves them).
"""

from __future__ import annotations

import logging

import anyio

from proxy.metrics import Metrics
from proxy.stores import Cache

log = logging.getLogger("semcache.totals")

COUNTERS = "requests"
"""The store's counter group (``<prefix>counters:requests`` on Redis)."""
FLUSH_SECONDS = 1.0
_REQUESTS = "requests:"
_HITS = "hits:"
_TOKENS = "tokens_saved"


class Totals:
    def __init__(self, cache: Cache, metrics: Metrics) -> None:
        self._cache = cache
        self._metrics = metrics
        self._sent: dict[str, int] = {}
        """What this process has added to the store so far."""

    def _counts(self) -> dict[str, int]:
        m = self._metrics
        counts = {f"{_REQUESTS}{route}:{outcome}": n for (route, outcome), n in m.requests.items()}
        counts.update({_HITS + lookup: n for lookup, n in m.hits.items()})
        counts[_TOKENS] = m.tokens_saved
        return counts

    async def flush(self) -> bool:
        """Add what was counted since the last flush; False when the store failed (the counts
        are then sent with the next flush)."""
        counts = self._counts()
        deltas = {k: n - self._sent.get(k, 0) for k, n in counts.items()}
        deltas = {k: d for k, d in deltas.items() if d}
        if not deltas:
            return True
        # Marked sent before the await, so that a flush running meanwhile sends only the rest.
        for k, d in deltas.items():
            self._sent[k] = self._sent.get(k, 0) + d
        if await self._cache.incr_counters(COUNTERS, deltas):
            return True
        for k, d in deltas.items():
            self._sent[k] -= d
        return False

    async def read(self) -> dict[str, object] | None:
        """This process's counts flushed, then the totals of every process; None when the
        store failed."""
        await self.flush()
        stored = await self._cache.read_counters(COUNTERS)
        return None if stored is None else summary(stored)

    async def keep_flushing(self) -> None:
        while True:
            await anyio.sleep(FLUSH_SECONDS)
            await self.flush()  # a failure is logged by the store wrapper and retried


def summary(stored: dict[str, int]) -> dict[str, object]:
    """The ``/cache/stats`` view of the stored counters, shaped as the per-process figures."""
    requests = {
        k.removeprefix(_REQUESTS).replace(":", " ", 1): n
        for k, n in sorted(stored.items())
        if k.startswith(_REQUESTS)
    }
    hits = sum(n for k, n in requests.items() if k.endswith(" hit"))
    misses = sum(n for k, n in requests.items() if k.endswith(" miss"))
    looked_up = hits + misses
    return {
        "requests": requests,
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / looked_up, 4) if looked_up else 0.0,
        "hits_by_lookup": {
            k.removeprefix(_HITS): n for k, n in sorted(stored.items()) if k.startswith(_HITS)
        },
        "tokens_saved": stored.get(_TOKENS, 0),
    }
