"""What a run of ``bench/run.py`` covers and is held to: the stores, the store sizes, ``Plan``
(rounds, load lengths, sizes per store) and ``Target`` (a limit on one figure of the results)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STORES = ("memory", "redis")
SIZES = (1_000, 10_000, 100_000, 1_000_000)


def size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int
    """Interleaved rounds of exact-hit loads (each target once per round)."""
    hit_seconds: float
    c1_seconds: float
    miss_seconds: float
    semantic_seconds: float
    ttfb_requests: int
    memory_sizes: tuple[int, ...]
    redis_sizes: tuple[int, ...]
    redis_vector_build_max: int
    """Larger Redis vector sets come only from a snapshot of an earlier run (HNSW is slow to
    fill: minutes at 100k on this machine)."""
    queries: int = 300


@dataclass
class Target:
    key: str
    label: str
    limit: float
    higher_is_better: bool = False

    def check(self, results: dict[str, Any]) -> dict[str, Any]:
        value = results.get(self.key)
        if not isinstance(value, int | float):
            return {"value": None, "limit": self.limit, "met": None}
        met = value >= self.limit if self.higher_is_better else value <= self.limit
        return {"value": value, "limit": self.limit, "met": met}
