"""Should a semantic neighbour answer the query? The verifier decides, for a wrong-hit rate the
operator chooses.

- :class:`LearnedVerifier` (with the local all-MiniLM-L6-v2 reader, ``semcache[local]``): the
  narrow rules of :mod:`proxy.semantic.rules`, then a boosted-tree model over
  :mod:`proxy.semantic.features`, accepted above the threshold the calibration table gives for
  ``SEMCACHE_MAX_WRONG_HIT_RATE`` in the pair's bucket. Model, table and their provenance are in
  ``verifier.npz`` beside this file, built by ``bench/train_verifier.py``.
- :class:`CosineVerifier` (no local reader: an HTTP or hash embedder alone): the same rules, then
  the embedder's own cosine against the threshold of its calibration file
  (``SEMCACHE_CALIBRATION``, from ``bench/calibrate.py``), else :data:`UNCALIBRATED_COSINE`.

Both are pure: they return a :class:`Verdict` naming why a pair was refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from proxy.errors import SettingsError
from proxy.semantic.features import BUCKETS, NAMES, Vocabulary, bucket, features
from proxy.semantic.language import is_english
from proxy.semantic.rules import objection, screen
from proxy.semantic.sketch import Projection, Sketch, unpack
from proxy.semantic.trees import Trees
from proxy.stores import Neighbor

log = logging.getLogger("semcache.verifier")

MODEL_FILE = Path(__file__).with_name("verifier.npz")
UNCALIBRATED_COSINE = 0.95
"""Cosine an embedder with no calibration needs. Not a safe rule, only a strict one: at 0.95
all-MiniLM-L6-v2 still serves wrong hits to 1.7 % of qqp-dev's look-alikes and 15 % of
traps-dev's; calibrate the embedder (``bench/calibrate.py``) for a rate you choose."""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None
    """Why not: ``below_threshold``, a rule's name, ``verifier``, ``language``, ``too_long``,
    ``unreadable``."""
    score: float | None = None
    """The learned model's probability, when it ran."""
    margin: float | None = None
    """How far the decision was above (+) or below (-) the calibrated threshold, on the scale
    the verifier decides on; None for a refusal no threshold can lift (a rule, the language).
    Adaptive thresholds (:mod:`proxy.semantic.adaptive`) move the line on this scale."""
    requested: bool = False
    """Decided on the request's own threshold (``X-Cache-Threshold``), which the adaptive line
    does not override (``accepted`` says how); ``margin`` is still measured from the calibrated
    threshold, so that the evidence of every request lands on one scale."""


class Verifier(Protocol):
    name: str
    """Names what its decisions depend on (entries are partitioned by it)."""
    reads: bool
    """It needs sketches of the prompts (the local reader)."""
    scale: str
    """Names the scale its margins are on: the verifier and the calibrated line they are
    measured from (the row of SEMCACHE_MAX_WRONG_HIT_RATE, or the cosine)."""

    def judge(
        self,
        text: str,
        sketch: Sketch | None,
        neighbor: Neighbor,
        *,
        floor: float,
        requested: float | None,
    ) -> Verdict:
        """``floor``: the retrieval floor in force; ``requested``: the request's own threshold
        (``X-Cache-Threshold``), if any."""


@dataclass(frozen=True, slots=True)
class VerifierModel:
    projection: Projection
    vocabulary: Vocabulary
    trees: Trees
    risks: npt.NDArray[np.float64]
    """Wrong-hit rates the table was calibrated for, ascending."""
    thresholds: npt.NDArray[np.float64]
    """(risks, buckets): the least score accepted."""
    min_similarity: float
    """The retrieval floor the model was trained above."""
    meta: dict[str, Any]

    def threshold_row(self, max_wrong_hit_rate: float) -> npt.NDArray[np.float64]:
        """Thresholds per bucket for the largest calibrated rate not above the one asked (the
        strictest row when it is below every calibrated rate)."""
        row = fitting_rate(self.risks.tolist(), max_wrong_hit_rate)
        out: npt.NDArray[np.float64] = self.thresholds[0 if row is None else row]
        return out


def load_model(path: Path = MODEL_FILE) -> VerifierModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {name: z[name] for name in z.files}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read the verifier model {path}: {exc}") from exc
    model_id = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    model = model_from_arrays(data, model_id)
    if tuple(model.meta["features"]) != NAMES:
        raise SettingsError(f"{path} was trained on other features; rebuild it")
    return model


def model_from_arrays(data: Mapping[str, npt.NDArray[Any]], model_id: str) -> VerifierModel:
    """The model from the arrays ``bench/train_verifier.py`` writes."""
    meta = json.loads(str(data["meta"]))
    meta["id"] = model_id
    return VerifierModel(
        projection=Projection(data["proj_mean"], data["proj_basis"]),
        vocabulary=Vocabulary(data["idf"].astype(np.float32), data["punctuation"], data["digit"]),
        trees=trees_from_arrays(data, int(meta["depth"])),
        risks=data["risks"].astype(np.float64),
        thresholds=data["thresholds"].astype(np.float64),
        min_similarity=float(meta["min_similarity"]),
        meta=meta,
    )


def trees_from_arrays(data: Mapping[str, npt.NDArray[Any]], depth: int) -> Trees:
    return Trees(
        feature=data["tree_feature"].astype(np.intp),
        threshold=data["tree_threshold"].astype(np.float64),
        left=data["tree_left"].astype(np.intp),
        right=data["tree_right"].astype(np.intp),
        leaf=data["tree_leaf"],
        value=data["tree_value"].astype(np.float64),
        baseline=float(data["baseline"]),
        depth=depth,
    )


SAME_WORDS_MARGIN = 1.0
"""The same word pieces: accepted above any threshold the evidence could move to."""


class LearnedVerifier:
    reads = True

    def __init__(self, model: VerifierModel, max_wrong_hit_rate: float) -> None:
        self.name = f"learned:{model.meta['id']}"
        self.model = model
        self.max_wrong_hit_rate = max_wrong_hit_rate
        self.scale = f"{self.name}@{max_wrong_hit_rate:g}"
        self._thresholds = model.threshold_row(max_wrong_hit_rate)
        assert self._thresholds.shape == (BUCKETS,)
        strictest = float(model.risks.min())
        if max_wrong_hit_rate < strictest:
            log.warning(
                "SEMCACHE_MAX_WRONG_HIT_RATE %g is below the verifier's strictest calibrated "
                "rate, %g: its thresholds are used, so expect up to %g",
                max_wrong_hit_rate, strictest, strictest,
            )  # fmt: skip

    def judge(
        self,
        text: str,
        sketch: Sketch | None,
        neighbor: Neighbor,
        *,
        floor: float,
        requested: float | None,
    ) -> Verdict:
        """A request's threshold moves the floor; the model and its table still decide."""
        if neighbor.similarity < floor:
            return Verdict(False, "below_threshold")
        candidate = unpack(neighbor.sketch) if neighbor.sketch else None
        if sketch is None or candidate is None:
            return Verdict(False, "unreadable")
        if not (sketch.english and candidate.english):
            return Verdict(False, "language")
        if sketch.truncated or candidate.truncated:
            return Verdict(False, "too_long")
        # The rules first: a number written otherwise (1,000 vs 1.000) is no spelling variant.
        reason, same = screen(text, neighbor.text, english=True)
        if reason is not None:
            return Verdict(False, reason)
        if same:
            return Verdict(True, None, 1.0, SAME_WORDS_MARGIN)
        row = features(sketch, candidate, self.model.vocabulary)
        score = self.model.trees.score(row)
        margin = score - float(self._thresholds[bucket(text, neighbor.text, row)])
        if margin < 0:
            return Verdict(False, "verifier", score, margin)
        return Verdict(True, None, score, margin)


class CosineVerifier:
    name = "cosine"
    reads = False

    def __init__(self, min_cosine: float) -> None:
        self.min_cosine = min_cosine
        self.scale = f"cosine@{min_cosine:g}"

    def judge(
        self,
        text: str,
        sketch: Sketch | None,
        neighbor: Neighbor,
        *,
        floor: float,
        requested: float | None,
    ) -> Verdict:
        """The cosine must reach the request's threshold when it sets one, else the calibrated
        one (or the floor, if higher); the rules run where both prompts are English."""
        if neighbor.similarity < floor:
            return Verdict(False, "below_threshold")
        # The rules judge every candidate a line could serve, not only those above the
        # calibrated one: a refusal of theirs is final (no margin).
        english = is_english(text) and is_english(neighbor.text)
        reason = objection(text, neighbor.text, english=english)
        if reason is not None:
            return Verdict(False, reason)
        margin = neighbor.similarity - max(self.min_cosine, floor)
        if requested is not None:
            # The request's own cosine decides; the margin stays on the calibrated scale (from
            # the calibrated cosine alone: ``floor`` is the request's here).
            margin = neighbor.similarity - self.min_cosine
            accepted = neighbor.similarity >= requested
            return Verdict(accepted, None if accepted else "below_threshold", margin=margin,
                           requested=True)  # fmt: skip
        return Verdict(margin >= 0, None if margin >= 0 else "below_threshold", margin=margin)


def calibrated_cosine(path: Path, embedder: str, max_wrong_hit_rate: float) -> float:
    """The cosine threshold a calibration file (``bench/calibrate.py --write``) gives
    ``embedder`` for ``max_wrong_hit_rate``: that of the largest calibrated rate not above it."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        rows = sorted((float(r), float(t)) for r, t in table["thresholds"])
        fitted_for = str(table["embedder"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"SEMCACHE_CALIBRATION {path}: not a calibration file ({exc})") from exc
    if fitted_for != embedder:
        raise SettingsError(
            f"SEMCACHE_CALIBRATION {path} was fitted for {fitted_for}, not {embedder}"
        )
    row = fitting_rate([r for r, _ in rows], max_wrong_hit_rate)
    return max(t for _, t in rows) if row is None else rows[row][1]


def fitting_rate(rates: list[float], asked: float) -> int | None:
    """Index of the largest of the ascending calibrated ``rates`` not above ``asked``; None
    when every one is (the caller then takes its strictest)."""
    at_most = [i for i, rate in enumerate(rates) if rate <= asked + 1e-12]
    return at_most[-1] if at_most else None
