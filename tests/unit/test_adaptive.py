"""Adaptive thresholds from evidence: where the line goes, and where it must not."""

from __future__ import annotations

import pytest

from proxy.metrics import Metrics
from proxy.semantic.adaptive import (
    DEFAULT_BIN,
    MIN_EVIDENCE,
    NEVER,
    Adaptive,
    Group,
    bin_of,
    choose,
    edge,
)
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio
TARGET = 0.005


def evidence(*rows: tuple[float, int, int, int], lookups: int) -> Group:
    """rows: (margin, lookups with that margin, compared, wrong)."""
    group = Group("g")
    group.counters["n"] = lookups
    for margin, seen, compared, wrong in rows:
        b = bin_of(margin)
        group.counters.update({f"l{b}": seen, f"o{b}": compared, f"w{b}": wrong})
    return group


def test_bins_and_edges_agree() -> None:
    assert edge(DEFAULT_BIN) == 0.0
    assert bin_of(0.0) == DEFAULT_BIN
    assert bin_of(-0.0001) == DEFAULT_BIN - 1
    assert bin_of(-5) == 0
    assert bin_of(5) == NEVER - 1


def test_too_little_evidence_keeps_the_calibrated_line() -> None:
    group = evidence((0.1, 100, MIN_EVIDENCE - 1, 0), lookups=1000)
    assert choose(group, TARGET) == (DEFAULT_BIN, None)


def test_clean_evidence_below_the_line_lowers_it() -> None:
    group = evidence(
        (0.1, 100, 100, 0),  # served region, well observed, never wrong
        (-0.05, 100, 100, 0),  # just below the line: compared for free, never wrong
        (-0.3, 400, 400, 120),  # far below: often wrong
        lookups=2000,
    )
    index, estimate = choose(group, TARGET)
    assert index == bin_of(-0.05)
    assert estimate is not None
    assert estimate.low <= estimate.rate <= estimate.high <= TARGET


def test_wrong_answers_above_the_line_raise_it() -> None:
    group = evidence((0.02, 100, 100, 10), (0.2, 100, 100, 0), lookups=1000)
    index, _ = choose(group, TARGET)
    assert index > bin_of(0.02)
    assert index <= bin_of(0.2)


def test_the_line_never_moves_into_bins_nobody_compared() -> None:
    group = evidence((0.1, 50, 50, 0), (-0.1, 300, 0, 0), lookups=1000)
    index, _ = choose(group, TARGET)
    assert index > bin_of(-0.1)


def test_when_nothing_fits_nothing_is_served() -> None:
    group = evidence((0.3, 500, 100, 50), lookups=600)
    assert choose(group, TARGET)[0] == NEVER


async def test_the_offset_follows_synced_evidence() -> None:
    cache = Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics())
    adaptive = Adaptive(cache, TARGET)
    assert adaptive.offset("g") == 0.0
    for _ in range(1000):
        adaptive.looked_up("g", -0.05)
        adaptive.observed("g", -0.05, wrong=False)
    await adaptive.sync()
    assert adaptive.offset("g") == edge(bin_of(-0.05))  # 1,000 clean: its bound is 0.19 %
    assert Adaptive(cache, TARGET, enabled=False).offset("g") == 0.0
