"""This process's counters sampled over time, for the dashboard's charts (the last hour)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from proxy.metrics import Metrics

SAMPLE_SECONDS = 5.0
SAMPLES_KEPT = 720
"""An hour at one sample every five seconds."""


class History:
    def __init__(self, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._clock = clock
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES_KEPT)

    def sample(self) -> dict[str, Any]:
        """The cumulative counters now: a chart plots the differences of neighbours."""
        m = self._metrics
        hits = sum(n for (_, outcome), n in m.requests.items() if outcome == "hit")
        misses = sum(n for (_, outcome), n in m.requests.items() if outcome == "miss")
        point: dict[str, Any] = {
            "t": round(self._clock(), 3),
            "exact": m.hits["exact"],
            "semantic": m.hits["semantic"],
            "coalesced": m.hits["coalesced"],
            "hits": hits,
            "misses": misses,
            "tokens_saved": m.tokens_saved,
        }
        for state in ("HIT", "MISS"):
            histogram = m.response_latency.get(state)
            point[f"{state.lower()}_seconds"] = 0.0 if histogram is None else histogram.sum
            point[f"{state.lower()}_count"] = 0 if histogram is None else histogram.count
        return point

    def record(self) -> None:
        self.samples.append(self.sample())

    async def run(self) -> None:
        while True:
            self.record()
            await anyio.sleep(SAMPLE_SECONDS)
