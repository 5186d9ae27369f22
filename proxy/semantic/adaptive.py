"""Adaptive thresholds: evidence from the operator's own traffic moves the line semantic hits
must clear, per group (the model asked, under one verifier), so that the wrong-hit rate's upper
95 % bound stays under ``SEMCACHE_MAX_WRONG_HIT_RATE``.

The verifier gives each candidate a *margin*: how far it is above (+) or below (-) the
calibrated threshold. A group serves the candidates whose margin reaches its *offset* (0: the
calibrated default). The evidence, per margin bin of width ``BIN_WIDTH``:

- ``l<b>``: lookups whose best candidate fell in bin b (``n``: all lookups, with or without one);
- ``o<b>``, ``w<b>``: candidates whose cached answer was compared with a fresh one, and how many
  of those the judge found different (:mod:`proxy.semantic.audit`). A candidate that was not
  served went upstream anyway, so it is compared at no extra cost; a served one only when
  audited (a sampled share), or when a client reports it wrong.

A line at bin k serves every candidate from bin k up; its wrong-hit rate per lookup is
``sum(l_b * q(b), b >= k) / n``, with ``q(b)`` the chance that a candidate at bin b's margin is
wrong. ``q`` is a logistic curve of the margin, fitted to every comparison (as vCache models a
cached answer's correctness as a sigmoid of similarity). Why a curve rather than each bin's own
share: comparisons are made at very different rates on either side of the line (all below it,
a sampled few above), which a pooled share mixes up and which leaves each bin with too few
wrong answers to bound on its own; a logistic regression is unbiased when the chance of being
observed depends on the margin alone, and it borrows strength across margins, so hundreds of
comparisons below the line bound the rate above it. Its posterior is sampled in
:mod:`proxy.semantic.logistic` (``SAMPLES`` seeded draws).

The line moves down to the lowest edge, among bins that had comparisons, whose rate's 95th
percentile is at most the target: it never moves into margins nobody compared. It moves up only
on evidence that the calibrated line is too loose (the rate's 5th percentile there is over the
target), to the lowest edge that fits, or to serving nothing when none does (every candidate is
then compared for free until one fits). Evidence that is merely thin keeps the calibrated line,
as does a group with under ``MIN_EVIDENCE`` comparisons. Replicas reading the same counters
agree.

Counters live in the store (one hash per group on Redis: replicas add up, a restart keeps them);
each process adds its deltas and re-reads every ``SYNC_SECONDS``. At most ``MAX_GROUPS`` groups are
kept in memory.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import anyio
import numpy as np
import numpy.typing as npt

from proxy.semantic import logistic
from proxy.stores import Cache

log = logging.getLogger("semcache.adaptive")
Floats = npt.NDArray[np.float64]

LOW = -1.0
BIN_WIDTH = 0.005
BINS = 280
"""Bins cover margins [-1.0, 0.4); a margin outside goes to the nearest end bin."""
DEFAULT_BIN = 200
"""The bin starting at margin 0: the calibrated threshold."""
NEVER = BINS
"""An offset bin past the last: no candidate is served."""
CENTERS = LOW + (np.arange(BINS) + 0.5) * BIN_WIDTH
MIN_EVIDENCE = 30
CONFIDENCE = 0.95
"""The line keeps this one-sided upper bound of the wrong-hit rate under the target."""
SAMPLES = 4000
FIT_BINS = 4
"""Bins counted together to fit the curve (0.02 of margin)."""
SYNC_SECONDS = 2.0
RECHOOSE_GROWTH = 0.02
MAX_GROUPS = 1000
RAISED_KEPT = 100_000
"""Lines above the calibrated one (or closed) of groups evicted from memory, kept until the
group comes back: made-up model names must not lower a line for the seconds to its sync."""
COUNTER_PREFIX = "adapt2:"
"""``adapt2``: bins 0.005 wide (``adapt:`` counted 0.02-wide bins; that evidence is not read)."""


def bin_of(margin: float) -> int:
    return min(BINS - 1, max(0, math.floor((margin - LOW) / BIN_WIDTH + 1e-9)))


def edge(index: int) -> float:
    """The least margin of bin ``index`` (the offset when the line is there)."""
    return math.inf if index >= NEVER else round(LOW + index * BIN_WIDTH, 6)


@dataclass
class Estimate:
    rate: float
    low: float
    high: float
    """Posterior mean and 95 % interval of the wrong-hit rate per lookup at the offset."""


@dataclass
class Group:
    name: str
    counters: Counter[str] = field(default_factory=Counter)
    """What the store holds (as last read) plus what this process added since."""
    pending: Counter[str] = field(default_factory=Counter)
    """Added here, not yet written to the store."""
    offset_bin: int = DEFAULT_BIN
    estimate: Estimate | None = None
    chosen_from: tuple[int, int, int] | None = None
    """Lookups, comparisons and wrong answers when the offset was last chosen (see
    :func:`_moved`)."""

    def add(self, deltas: dict[str, int]) -> None:
        self.counters.update(deltas)
        self.pending.update(deltas)

    @property
    def offset(self) -> float:
        return edge(self.offset_bin)

    def arrays(self) -> tuple[int, Floats, Floats, Floats]:
        c = self.counters
        lookups = np.array([c[f"l{b}"] for b in range(BINS)], dtype=np.float64)
        observed = np.array([c[f"o{b}"] for b in range(BINS)], dtype=np.float64)
        wrong = np.array([c[f"w{b}"] for b in range(BINS)], dtype=np.float64)
        return c["n"], lookups, observed, np.minimum(wrong, observed)


def choose(group: Group, target: float) -> tuple[int, Estimate | None]:
    """The offset bin and the estimate there, from the group's counters (see the module)."""
    n, lookups, observed, wrong = group.arrays()
    if n <= 0 or observed.sum() < MIN_EVIDENCE:
        return DEFAULT_BIN, None
    thetas, weights = _posterior(observed, wrong)
    seen = np.flatnonzero(lookups)  # bins the rate sums over
    chance = logistic.expit(thetas[:, :1] + thetas[:, 1:] * CENTERS[seen])  # (draws, seen bins)
    from_top = np.cumsum((chance * (lookups[seen] / n))[:, ::-1], axis=1)[:, ::-1]

    def rate(k: int) -> Floats:
        """Each draw's wrong-hit rate per lookup of a line at bin k."""
        first = int(np.searchsorted(seen, k))
        return from_top[:, first] if first < seen.size else np.zeros(len(weights))

    def upper(k: int) -> float:
        return logistic.quantile(rate(k), weights, CONFIDENCE)

    # A draw's rate only falls as the line rises, so its bound does too: the lowest line that
    # fits is found by bisection, then raised to the lower edge of a bin with comparisons.
    low, high = 0, NEVER
    while low < high:
        middle = (low + high) // 2
        if upper(middle) <= target:
            high = middle
        else:
            low = middle + 1
    compared = np.flatnonzero(observed[low:]) + low
    lowest = int(compared[0]) if compared.size else NEVER
    # When the calibrated line does not fit the bound, leave it only on evidence that it is too
    # loose (even the optimistic bound is over the target), not for want of evidence.
    if lowest > DEFAULT_BIN and (
        logistic.quantile(rate(DEFAULT_BIN), weights, 1 - CONFIDENCE) <= target
    ):
        lowest = DEFAULT_BIN
    if lowest >= NEVER:
        return NEVER, Estimate(0.0, 0.0, 0.0)
    at = rate(lowest)
    mean = float(np.average(at, weights=weights))
    return lowest, Estimate(
        mean, logistic.quantile(at, weights, 0.025), logistic.quantile(at, weights, 0.975)
    )


def _posterior(observed: Floats, wrong: Floats) -> tuple[Floats, Floats]:
    """The curve fitted on the comparisons counted ``FIT_BINS`` bins together (fewer terms to
    weigh each draw with; two parameters need no finer margins)."""
    observed = observed.reshape(-1, FIT_BINS).sum(axis=1)
    wrong = wrong.reshape(-1, FIT_BINS).sum(axis=1)
    centers = CENTERS.reshape(-1, FIT_BINS).mean(axis=1)
    used = np.flatnonzero(observed)
    return logistic.posterior(centers[used], observed[used], wrong[used], samples=SAMPLES)


class Adaptive:
    def __init__(self, cache: Cache, target: float, *, enabled: bool = True) -> None:
        self._cache = cache
        self.target = target
        self.enabled = enabled
        self._groups: OrderedDict[str, Group] = OrderedDict()
        self._unsynced: dict[str, Counter[str]] = {}
        """Deltas of groups evicted before their next sync: written at that sync, not lost."""
        self._raised: OrderedDict[str, int] = OrderedDict()
        """Offset bins above the calibrated one of evicted groups (:data:`RAISED_KEPT`)."""

    def group(self, name: str) -> Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = Group(name)
            group.pending.update(self._unsynced.pop(name, Counter()))
            # Back from eviction: its raised line holds until the next sync chooses again.
            group.offset_bin = self._raised.pop(name, DEFAULT_BIN)
            if len(self._groups) > MAX_GROUPS:
                _, evicted = self._groups.popitem(last=False)
                if evicted.pending:
                    self._unsynced.setdefault(evicted.name, Counter()).update(evicted.pending)
                if evicted.offset_bin > DEFAULT_BIN:
                    self._raised[evicted.name] = evicted.offset_bin
                    if len(self._raised) > RAISED_KEPT:
                        self._raised.popitem(last=False)
        else:
            self._groups.move_to_end(name)
        return group

    def groups(self) -> list[Group]:
        return list(self._groups.values())

    def offset(self, name: str) -> float:
        """The least margin a candidate of this group needs to be served."""
        return self.group(name).offset if self.enabled else 0.0

    def looked_up(self, name: str, margin: float | None) -> None:
        """One semantic lookup; ``margin``: its best candidate's, None when it had none."""
        deltas = {"n": 1}
        if margin is not None:
            deltas[f"l{bin_of(margin)}"] = 1
        self.group(name).add(deltas)

    def observed(self, name: str, margin: float | None, *, wrong: bool) -> None:
        """A candidate's cached answer compared with a fresh one."""
        if margin is None:
            return
        b = bin_of(margin)
        self.group(name).add({f"o{b}": 1, f"w{b}": int(wrong)})

    def count(self, name: str, counter: str, delta: int = 1) -> None:
        """Any other tally kept with the group (audit verdicts, shadow hits...)."""
        self.group(name).add({counter: delta})

    async def sync(self) -> None:
        """Write this process's deltas, read every group's totals back, move the lines."""
        unsynced, self._unsynced = self._unsynced, {}
        for name, orphan in unsynced.items():
            if not await self._cache.incr_counters(COUNTER_PREFIX + name, dict(orphan)):
                self._unsynced.setdefault(name, Counter()).update(orphan)  # the store is down
        for group in self.groups():
            if group.pending:
                deltas, group.pending = dict(group.pending), Counter()
                if not await self._cache.incr_counters(COUNTER_PREFIX + group.name, deltas):
                    group.pending.update(deltas)  # the store is down: keep them for later
                    continue
            stored = await self._cache.read_counters(COUNTER_PREFIX + group.name)
            if stored is not None:
                group.counters = Counter(stored) + group.pending
            totals = _totals(group.counters)
            if not _moved(group.chosen_from, totals):
                continue
            group.chosen_from = totals
            before = group.offset_bin
            # Some milliseconds of numpy: off the event loop, on a copy of the counters.
            snapshot = Group(group.name, counters=Counter(group.counters))
            group.offset_bin, group.estimate = await anyio.to_thread.run_sync(
                choose, snapshot, self.target
            )
            if group.offset_bin != before:
                log.info(
                    "semantic threshold of %s moved: margin %+.2f -> %+.2f",
                    group.name,
                    edge(before),
                    group.offset,
                )


def _totals(counters: Counter[str]) -> tuple[int, int, int]:
    observed = wrong = 0
    for name, value in counters.items():
        if name[1:].isdigit():
            if name[0] == "o":
                observed += value
            elif name[0] == "w":
                wrong += value
    return counters["n"], observed, wrong


def _moved(before: tuple[int, int, int] | None, now: tuple[int, int, int]) -> bool:
    """Whether the evidence changed enough to choose the line again: any new wrong answer, any
    count going down (the store lost its counters), or lookups or comparisons up by
    ``RECHOOSE_GROWTH``. A busy group is then weighed every few thousand lookups, not on
    every sync."""
    if before is None:
        return True
    (n0, o0, w0), (n1, o1, w1) = before, now
    if w1 != w0 or n1 < n0 or o1 < o0:
        return True
    return n1 >= n0 * (1 + RECHOOSE_GROWTH) + 1 or o1 >= o0 * (1 + RECHOOSE_GROWTH) + 1
