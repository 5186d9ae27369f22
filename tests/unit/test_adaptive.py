"""Adaptive thresholds from evidence: where the line goes, and where it must not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from proxy.metrics import Metrics
from proxy.semantic.adaptive import (
    CENTERS,
    CONFIDENCE,
    COUNTER_PREFIX,
    DEFAULT_BIN,
    MAX_GROUPS,
    MIN_EVIDENCE,
    NEVER,
    Adaptive,
    Floats,
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
    assert adaptive.offset("g") == edge(bin_of(-0.05))  # 1,000 clean: its bound is 0.22 %
    assert Adaptive(cache, TARGET, enabled=False).offset("g") == 0.0


def test_one_margin_of_clean_comparisons_is_bounded_as_jeffreys_bounds_a_rate() -> None:
    """The curve's posterior, where it has one margin to go on, is the Jeffreys posterior of
    that margin's share (the check that the importance sampling is right)."""
    group = evidence((-0.05, 1000, 1000, 0), lookups=1000)
    index, estimate = choose(group, TARGET)
    assert index == bin_of(-0.05)
    assert estimate is not None
    jeffreys = beta.ppf([0.5, 0.975], 0.5, 1000.5)
    assert estimate.high == pytest.approx(jeffreys[1], rel=0.15)
    assert estimate.rate == pytest.approx(0.5 / 1001, rel=0.25)  # the posterior mean


def test_a_sampled_served_region_is_bounded_by_the_comparisons_below_it() -> None:
    """Above the line only a sampled few are compared (audits), below it all: the curve uses
    both at their own margins, so the many clean comparisons just below the line lower it,
    where a share pooled over the region would be dominated by the far, often wrong ones."""
    group = evidence(
        (0.05, 2000, 100, 0),  # served: 5 % audited, never wrong
        (-0.03, 300, 300, 1),  # just below the line: all compared, one wrong
        (-0.4, 600, 600, 180),  # far below: all compared, often wrong
        lookups=20000,
    )
    index, estimate = choose(group, TARGET)
    assert index == bin_of(-0.03)
    assert estimate is not None
    assert estimate.high <= TARGET


def test_the_line_keeps_the_true_rate_under_the_target() -> None:
    """Must NOT over-serve: evidence drawn from a known curve (one wrong in ten at the
    calibrated line, fewer above) as the proxy gathers it (all compared below the line, 5 %
    above), in 100 seeded draws; the rate at each chosen line, computed from the truth, is over
    the target at most as often as a 95 % bound allows, and never by much."""
    truth = 1 / (1 + np.exp(-(-2.2 - 8.0 * CENTERS)))
    rates = []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        lookups = rng.multinomial(3000, _margins())
        compared = np.where(CENTERS < 0, lookups, rng.binomial(lookups, 0.05))
        wrong = rng.binomial(compared, truth)
        group = Group("g")
        group.counters["n"] = 20000
        for b in np.flatnonzero(lookups):
            group.counters.update({f"l{b}": int(lookups[b]), f"o{b}": int(compared[b]),
                                   f"w{b}": int(wrong[b])})  # fmt: skip
        index, _ = choose(group, TARGET)
        assert index < DEFAULT_BIN  # the evidence lowers the line...
        rates.append(float((lookups[index:] * truth[index:]).sum() / 20000))
    assert CONFIDENCE == 0.95
    assert sum(rate > TARGET for rate in rates) <= 5  # ...and its bound holds
    assert max(rates) <= 1.2 * TARGET


def _margins() -> Floats:
    """Where best candidates fall: many far below the line, few above it."""
    weights: Floats = np.exp(-((CENTERS + 0.3) ** 2) / (2 * 0.25**2))
    weights[CENTERS > 0.2] = 0
    share: Floats = weights / weights.sum()
    return share


async def test_a_new_wrong_answer_is_weighed_at_the_next_sync() -> None:
    """The line is chosen again when the evidence grew 2 %, and at once on any wrong answer."""
    cache = Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics())
    adaptive = Adaptive(cache, TARGET)
    for _ in range(3000):
        adaptive.looked_up("g", -0.05)
        adaptive.observed("g", -0.05, wrong=False)
    await adaptive.sync()
    lowered = adaptive.offset("g")
    assert lowered == edge(bin_of(-0.05))
    chosen = adaptive.group("g").chosen_from
    for _ in range(10):  # under 2 % more lookups: not weighed again
        adaptive.looked_up("g", -0.05)
    await adaptive.sync()
    assert adaptive.group("g").chosen_from == chosen
    adaptive.observed("g", -0.05, wrong=True)  # one wrong answer: weighed at once
    await adaptive.sync()
    assert adaptive.group("g").chosen_from != chosen
    for _ in range(300):
        adaptive.observed("g", -0.05, wrong=True)
    await adaptive.sync()
    assert adaptive.offset("g") > lowered


async def test_a_group_evicted_before_its_sync_keeps_its_evidence() -> None:
    """Groups are kept per model, up to MAX_GROUPS, and model names are the client's: lookups
    under a thousand made-up names evicted a group with its unsynced wrong answers."""
    cache = Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics())
    adaptive = Adaptive(cache, TARGET)
    for _ in range(200):
        adaptive.observed("victim", 0.02, wrong=True)
    for i in range(MAX_GROUPS + 5):
        adaptive.looked_up(f"made-up-{i}", None)
    assert "victim" not in [g.name for g in adaptive.groups()]
    await adaptive.sync()
    stored = await cache.read_counters(COUNTER_PREFIX + "victim")
    assert stored is not None
    assert stored[f"w{bin_of(0.02)}"] == 200


async def test_a_group_evicted_by_made_up_names_keeps_a_raised_line() -> None:
    """A group's line raised by wrong answers (or closed: nothing served) must not fall back
    to the calibrated one because a client's made-up model names pushed the group out of
    memory: it did until the next sync re-read the store, and made-up names can go on."""
    cache = Cache(MemoryStore(max_entries=100, max_bytes=1 << 20), Metrics())
    adaptive = Adaptive(cache, TARGET)
    for name, line in (("raised", DEFAULT_BIN + 8), ("closed", NEVER)):
        adaptive.group(name).offset_bin = line
    raised, closed = adaptive.offset("raised"), adaptive.offset("closed")
    for i in range(MAX_GROUPS + 5):
        adaptive.looked_up(f"made-up-{i}", None)
    assert "raised" not in [g.name for g in adaptive.groups()]
    assert (adaptive.offset("raised"), adaptive.offset("closed")) == (raised, closed)
