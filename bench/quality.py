"""Semantic matching quality on labelled pairs, through the proxy's own matching code.

    python bench/quality.py --data FILE.tsv [--json] [--threshold T] [--embed-model local:NAME]

FILE.tsv: ``q1<TAB>q2<TAB>label`` with a header line and no quoting; label 1 = same meaning.
For each pair, q1 is stored as a cached chat answer in a partition of its own and q2 is looked
up through :class:`proxy.semantic.SemanticCache` (same embedder, threshold and guards as the
proxy, on the memory store). Prints precision, recall, wrong-hit rate (share of label-0 pairs
that hit) and what plain cosine reaches at the same precision; ``--json`` prints one object
``{"precision", "recall", "wrong_hit_rate", "threshold", "pairs", ...}``. Writes a
precision/recall curve to ``docs/quality-<file>.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.cache import Cache  # noqa: E402
from proxy.embedder import LocalEmbedder, Vector  # noqa: E402
from proxy.guards import verify  # noqa: E402
from proxy.keys import chat_key  # noqa: E402
from proxy.metrics import Metrics  # noqa: E402
from proxy.policy import CacheControl  # noqa: E402
from proxy.semantic import SemanticCache  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from proxy.stores.memory import MemoryStore  # noqa: E402

DEFAULT_MODEL = "local:all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Pair:
    q1: str
    q2: str
    label: int


def read_pairs(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Pair(r[0], r[1], int(r[2])) for r in rows[1:] if len(r) >= 3]


class PrecomputedEmbedder:
    """The local model's vectors, computed in one batch up front (same model, same vectors)."""

    def __init__(self, name: str, vectors: dict[str, Vector]) -> None:
        self.name = name
        self._vectors = vectors

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        return self._vectors[text]


def body(text: str) -> dict[str, Any]:
    return {"model": "bench", "messages": [{"role": "user", "content": text}]}


async def run_pairs(
    pairs: list[Pair], embedder: PrecomputedEmbedder, threshold: float
) -> list[bool]:
    """Whether each q2 hits its q1, through SemanticCache exactly as the proxy runs it."""
    metrics = Metrics()
    cache = Cache(MemoryStore(max_entries=10 * len(pairs), max_bytes=1 << 32), metrics)
    semantic = SemanticCache(
        cache, embedder, metrics, min_similarity=threshold, max_age_seconds=None,
        max_chars=Settings().semantic_max_chars, timeout_seconds=60,
    )  # fmt: skip
    await semantic.start()
    control = CacheControl(lookup=True, store=True, ttl_seconds=3600)
    hits = []
    for i, pair in enumerate(pairs):
        namespace = f"pair{i}"
        stored = await semantic.query(body(pair.q1), namespace=namespace, api_key=None)
        key = chat_key(namespace, body(pair.q1))
        await cache.put(key, cache.new_entry(b"{}"), 3600, kind="chat")
        if stored is not None:
            await semantic.remember(stored, key, 3600)
        asked = await semantic.query(body(pair.q2), namespace=namespace, api_key=None)
        hit = asked is not None and await semantic.lookup(asked, control) is not None
        hits.append(hit)
    return hits


def rates(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> dict[str, float]:
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    positives, negatives = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / positives if positives else 0.0,
        "wrong_hit_rate": fp / negatives if negatives else 0.0,
    }


def cosine_recall_at_precision(
    sims: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], precision: float
) -> tuple[float, float]:
    """Best recall plain cosine reaches with precision >= ``precision``, and its threshold."""
    best = (0.0, 1.0)
    for t in np.unique(sims):
        r = rates(sims >= t, labels)
        if r["precision"] >= precision and r["recall"] > best[0]:
            best = (r["recall"], float(t))
    return best


def curve_png(
    path: Path, sims: np.ndarray[Any, Any], passed: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any], chosen: dict[str, float], title: str,
) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.linspace(0.5, 1.0, 101)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    curves: tuple[tuple[str, Callable[[float], np.ndarray[Any, Any]]], ...] = (
        ("plain cosine", lambda t: sims >= t),
        ("cosine + guards", lambda t: (sims >= t) & passed),
    )
    for label, predicate in curves:
        points = [rates(predicate(t), labels) for t in thresholds]
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points], label=label)
    ax.scatter([chosen["recall"]], [chosen["precision"]], color="red", zorder=3,
               label=f"semcache default (threshold {chosen['threshold']:.2f})")  # fmt: skip
    ax.set_xlabel("recall (share of same-meaning pairs that hit)")
    ax.set_ylabel("precision (share of hits that are right)")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def evaluate(path: Path, threshold: float, model: str, png: bool) -> dict[str, Any]:
    pairs = read_pairs(path)
    local = LocalEmbedder(model.removeprefix("local:"))
    texts = sorted({p.q1 for p in pairs} | {p.q2 for p in pairs})
    from proxy.keys import normalize_text

    matrix = local.encode([normalize_text(t) for t in texts])
    vectors = {normalize_text(t): matrix[i] for i, t in enumerate(texts)}
    embedder = PrecomputedEmbedder(local.name, vectors)
    hits = np.array(anyio.run(run_pairs, pairs, embedder, threshold))
    labels = np.array([p.label for p in pairs])
    sims = np.array(
        [float(vectors[normalize_text(p.q1)] @ vectors[normalize_text(p.q2)]) for p in pairs]
    )
    passed = np.array([verify(normalize_text(p.q2), normalize_text(p.q1)) is None for p in pairs])
    result: dict[str, Any] = {**rates(hits, labels), "threshold": threshold, "pairs": len(pairs)}
    # The same decision recomputed from its parts proves the curve below uses the proxy's logic.
    recomputed = (sims >= threshold) & passed
    result["decisions_consistent"] = bool(np.all(recomputed == hits))
    cos_recall, cos_threshold = cosine_recall_at_precision(sims, labels, result["precision"])
    result["cosine_recall_at_same_precision"] = cos_recall
    result["cosine_threshold_at_same_precision"] = cos_threshold
    result["recall_gain_vs_cosine"] = result["recall"] / cos_recall if cos_recall else float("inf")
    result["cosine_at_threshold"] = rates(sims >= threshold, labels)
    result["hits"] = int(hits.sum())
    result["wrong_hits"] = int(np.sum(hits & (labels == 0)))
    result["embedder"] = model
    if png:
        out = ROOT / "docs" / f"quality-{path.stem}.png"
        curve_png(out, sims, passed, labels, result, f"{path.name}: {len(pairs)} pairs")
        result["curve_png"] = str(out.relative_to(ROOT))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="TSV of q1, q2, label")
    parser.add_argument("--threshold", type=float, default=Settings().similarity)
    parser.add_argument("--embed-model", default=DEFAULT_MODEL, help="local:<name or path>")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-png", action="store_true", help="skip the curve PNG")
    args = parser.parse_args()
    if not args.embed_model.startswith("local:"):
        parser.error("--embed-model must be local:<name or path>")
    result = evaluate(args.data, args.threshold, args.embed_model, png=not args.no_png)
    if args.json:
        print(orjson.dumps(result).decode())
        return
    print(f"{args.data.name}: {result['pairs']} pairs, threshold {result['threshold']}")
    for key in ("precision", "recall", "wrong_hit_rate"):
        print(f"  {key:<16}{result[key]:.4f}")
    cos_recall = result["cosine_recall_at_same_precision"]
    print(
        f"  plain cosine at the same precision: recall {cos_recall:.4f}"
        f" (threshold {result['cosine_threshold_at_same_precision']:.4f}),"
        f" gain x{result['recall_gain_vs_cosine']:.2f}"
    )
    c = result["cosine_at_threshold"]
    print(
        f"  plain cosine at {result['threshold']}: precision {c['precision']:.4f},"
        f" recall {c['recall']:.4f}, wrong-hit rate {c['wrong_hit_rate']:.4f}"
    )
    if "curve_png" in result:
        print(f"  curve: {result['curve_png']}")


if __name__ == "__main__":
    main()
