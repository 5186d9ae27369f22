"""Semantic matching quality on labelled pairs, through the proxy's own matching code.

    python bench/quality.py --data FILE.tsv [--data FILE2.tsv ...] [--json]
        [--max-wrong-hit-rate R] [--no-png]
    python bench/quality.py --cross-domain [--json]

FILE.tsv: ``q1<TAB>q2<TAB>label`` with a header line and no quoting; label 1 = same meaning.

**Default mode** measures the *shipped* verifier (``proxy/semantic/verifier.npz``) at the
shipped default (``SEMCACHE_MAX_WRONG_HIT_RATE`` 0.005 unless ``--max-wrong-hit-rate``); it
fits nothing to the file. For each pair, q1 is stored as a cached chat answer in a partition of
its own and q2 is looked up through :class:`proxy.semantic.SemanticCache` (the local
all-MiniLM-L6-v2 embedder and reader, retrieval floor, rules and model, on the memory store).
Prints precision, recall, wrong-hit rate (share of label-0 pairs that hit) and what plain cosine
reaches at the same wrong-hit rate and at the same precision; ``--json`` prints one object per
file with the keys ``precision``, ``recall``, ``wrong_hit_rate``, ``threshold`` (the retrieval
floor), ``pairs``, ``hits``, ``wrong_hits``, ``cosine_recall_at_same_wrong_hit_rate``,
``recall_gain_vs_cosine_at_same_wrong_hit_rate``, ``cosine_recall_at_same_precision``,
``recall_gain_vs_cosine``, ``rejections``, ``model_scores`` (per label, the least, median and
largest score of the pairs the model scored, beside the bucket thresholds in force), and with
``--sweep 0.85,0.8`` ``threshold_sweep`` (the rates were every bucket's threshold at most each
value: a reading of the shipped model's scores, nothing chosen from the file) ...
Writes a precision/recall curve to ``docs/quality-<file>.png``.

**Cross-domain mode** (``--cross-domain``) measures how the *method* transfers to a domain it
never saw: for each training domain of ``bench/train_verifier.py`` (quora, news, llm, medical,
support) it trains and calibrates a model on the other four, then measures the left-out domain
(and ``qqp-dev.tsv`` / ``traps-dev.tsv``, never trained on) with it. Slow: five trainings.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import train_verifier as tv  # noqa: E402
from proxy.cache.keys import chat_key  # noqa: E402
from proxy.metrics import Metrics  # noqa: E402
from proxy.requests import CacheControl  # noqa: E402
from proxy.semantic.embedders import READER_MODEL, LocalEmbedder, Vector  # noqa: E402
from proxy.semantic.lookup import SemanticCache  # noqa: E402
from proxy.semantic.sketch import Sketch  # noqa: E402
from proxy.semantic.verifier import (  # noqa: E402
    SAME_WORDS_MARGIN,
    CosineVerifier,
    LearnedVerifier,
    VerifierModel,
    load_model,
    model_from_arrays,
)
from proxy.settings import Settings  # noqa: E402
from proxy.stores.guard import Cache  # noqa: E402
from proxy.stores.memory import MemoryStore  # noqa: E402
from proxy.stores.similarity import Neighbor  # noqa: E402

Bools = npt.NDArray[np.bool_]


class PrecomputedReader:
    """The local model's vectors and sketches, computed in one batch up front (same model,
    same outputs); both the embedder and the reader of the SemanticCache under test."""

    def __init__(self, name: str, read: dict[str, tuple[Vector, Sketch]]) -> None:
        self.name = name
        self._read = read

    async def start(self) -> None:
        return None

    async def embed(self, text: str, *, namespace: str, api_key: str | None) -> Vector:
        return self._read[text][0]

    async def read(self, text: str) -> tuple[Vector, Sketch]:
        return self._read[text]


def body(text: str) -> dict[str, Any]:
    return {"model": "bench", "messages": [{"role": "user", "content": text}]}


async def run_pairs(
    q1: list[str], q2: list[str], reader: PrecomputedReader, verifier: LearnedVerifier
) -> tuple[list[bool], Counter[str]]:
    """Whether each q2 hits its q1, through SemanticCache exactly as the proxy runs it."""
    metrics = Metrics()
    cache = Cache(MemoryStore(max_entries=10 * len(q1), max_bytes=1 << 33), metrics)
    semantic = SemanticCache(
        cache,
        reader,
        metrics,
        verifier=verifier,
        reader=reader,
        fallback=CosineVerifier(1.0),
        min_similarity=verifier.model.min_similarity,
        max_age_seconds=None,
        max_chars=Settings().semantic_max_chars,
        timeout_seconds=60,
    )
    await semantic.start()
    control = CacheControl(lookup=True, store=True, ttl_seconds=3600)
    hits = []
    for i, (a, b) in enumerate(zip(q1, q2, strict=True)):
        namespace = f"pair{i}"
        stored = await semantic.query(body(a), namespace=namespace, api_key=None)
        key = chat_key(namespace, body(a))
        await cache.put(key, cache.new_entry(b"{}"), 3600, kind="chat")
        if stored is not None:
            await semantic.remember(stored, key, 3600)
        asked = await semantic.query(body(b), namespace=namespace, api_key=None)
        hit = asked is not None and (await semantic.lookup(asked, control)).hit is not None
        hits.append(hit)
    return hits, metrics.semantic_rejections


def rates(predicted: Bools, labels: npt.NDArray[Any]) -> dict[str, float]:
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    positives, negatives = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / positives if positives else 0.0,
        "wrong_hit_rate": fp / negatives if negatives else 0.0,
    }


def cosine_recall_at_precision(
    sims: npt.NDArray[Any], labels: npt.NDArray[Any], precision: float
) -> tuple[float, float]:
    """Best recall plain cosine reaches with precision >= ``precision``, and its threshold."""
    best = (0.0, 1.0)
    for t in np.unique(sims):
        r = rates(sims >= t, labels)
        if r["precision"] >= precision and r["recall"] > best[0]:
            best = (r["recall"], float(t))
    return best


@dataclass
class Measured:
    result: dict[str, Any]
    sims: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int8]


def read_all(texts: list[str], reader: LocalEmbedder) -> dict[str, tuple[Vector, Sketch]]:
    out = reader.read_many(texts)
    return dict(zip(texts, out, strict=True))


def measure(
    path: Path,
    model: VerifierModel,
    max_wrong_hit_rate: float,
    reader: LocalEmbedder,
    sweep: tuple[float, ...] = (),
) -> Measured:
    q1, q2, labels = tv.read_pairs(path)
    read = read_all(sorted(set(q1) | set(q2)), reader)
    verifier = LearnedVerifier(model, max_wrong_hit_rate)
    pre = PrecomputedReader(reader.name, read)
    hit_list, rejections = anyio.run(run_pairs, q1, q2, pre, verifier)
    hits = np.array(hit_list)
    sims = np.array([float(read[a][0] @ read[b][0]) for a, b in zip(q1, q2, strict=True)])
    # The same decisions recomputed from the verifier alone prove the figures below are the
    # proxy's own (the store's search returns each pair's one stored prompt).
    verdicts = [
        verifier.judge(
            b,
            read[b][1],
            Neighbor("x", float(s), a, read[a][1].pack()),
            floor=model.min_similarity,
            requested=None,
        )
        for a, b, s in zip(q1, q2, sims, strict=True)
    ]
    decided = np.array([v.accepted for v in verdicts])
    scores = np.array([-1.0 if v.score is None else v.score for v in verdicts])
    result: dict[str, Any] = {**rates(hits, labels), "pairs": len(labels)}
    result["threshold"] = model.min_similarity
    result["max_wrong_hit_rate"] = max_wrong_hit_rate
    result["verifier"] = verifier.name
    result["decisions_consistent"] = bool(np.all(decided == hits))
    wrong = result["wrong_hit_rate"]
    cos_same = tv.cosine_recall_at(sims, labels, wrong)
    result["cosine_recall_at_same_wrong_hit_rate"] = cos_same
    result["recall_gain_vs_cosine_at_same_wrong_hit_rate"] = (
        result["recall"] / cos_same if cos_same else None
    )
    cos_recall, cos_threshold = cosine_recall_at_precision(sims, labels, result["precision"])
    result["cosine_recall_at_same_precision"] = cos_recall
    result["cosine_threshold_at_same_precision"] = cos_threshold
    result["recall_gain_vs_cosine"] = result["recall"] / cos_recall if cos_recall else None
    result["cosine_at_threshold"] = rates(sims >= model.min_similarity, labels)
    result["hits"] = int(hits.sum())
    result["wrong_hits"] = int(np.sum(hits & (labels == 0)))
    result["rejections"] = dict(rejections)
    result["embedder"] = f"local:{READER_MODEL}"
    scored = np.array([v.score is not None and v.margin != SAME_WORDS_MARGIN for v in verdicts])
    result["model_scores"] = model_scores(scores, labels, scored, verifier)
    if sweep:
        # What the shipped model's own verdicts give with every bucket's threshold at most t:
        # a reading of its scores, not a threshold fitted to the file (nothing is chosen here).
        result["threshold_sweep"] = [
            {"at_most": t, **rates(decided | (scored & (scores >= t)), labels)} for t in sweep
        ]
    return Measured(result, sims.astype(np.float32), scores, labels)


def model_scores(
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[Any],
    scored: Bools,
    verifier: LearnedVerifier,
) -> dict[str, Any]:
    """How the model's scores of each label sit against the thresholds in force: the pairs it
    scored (past the floor, the rules and the same-words shortcut), their least, median and
    largest score per label. Where every look-alike is below every paraphrase, the ranking is
    right and the threshold alone decides the recall."""
    row = verifier.model.threshold_row(verifier.max_wrong_hit_rate)
    out: dict[str, Any] = {"thresholds": [round(float(t), 4) for t in row]}
    for label in (0, 1):
        chosen = scores[scored & (labels == label)]
        out[f"label_{label}"] = {
            "scored": int(chosen.size),
            **(
                {
                    "min": round(float(chosen.min()), 4),
                    "median": round(float(np.median(chosen)), 4),
                    "max": round(float(chosen.max()), 4),
                }
                if chosen.size
                else {}
            ),
        }
    return out


def curve_png(path: Path, m: Measured, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    for label, score in (("plain cosine", m.sims), ("verifier (rules + model)", m.scores)):
        points = [rates(score >= t, m.labels) for t in np.unique(score)[::-1]]
        ax.plot([p["wrong_hit_rate"] for p in points], [p["recall"] for p in points], label=label)
    ax.scatter(
        [m.result["wrong_hit_rate"]],
        [m.result["recall"]],
        color="red",
        zorder=3,
        label=f"semcache default (max wrong-hit rate {m.result['max_wrong_hit_rate']})",
    )
    ax.set_xscale("symlog", linthresh=0.001)
    ax.set_xlim(0, 0.2)
    ax.set_xlabel("wrong-hit rate (share of different-meaning pairs that hit)")
    ax.set_ylabel("recall (share of same-meaning pairs that hit)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def cross_domain(data_dir: Path, held_out: list[Path]) -> list[dict[str, Any]]:
    """Leave one training domain out: train and calibrate on the others, measure it."""
    paths = tv.training_paths(data_dir)
    rows = []
    for left_out, path in paths.items():
        others = {name: p for name, p in paths.items() if name != left_out}
        built = tv.build(others, quiet=True)
        model = model_from_arrays(built.arrays, f"without-{left_out}")
        reader = LocalEmbedder(READER_MODEL, projection=model.projection)
        for target in (path, *held_out):
            m = measure(target, model, 0.005, reader)
            rows.append({"left_out": left_out, "data": target.name, **m.result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="TSV of pairs")
    parser.add_argument("--max-wrong-hit-rate", type=float, default=Settings().max_wrong_hit_rate)
    parser.add_argument("--cross-domain", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-png", action="store_true", help="skip the curve PNG")
    parser.add_argument(
        "--sweep",
        default="",
        help="comma-separated thresholds: also report the rates if every bucket's threshold "
        "were at most each (threshold_sweep)",
    )
    args = parser.parse_args()
    if args.cross_domain:
        held = args.data or [args.data_dir / "qqp-dev.tsv", args.data_dir / "traps-dev.tsv"]
        rows = cross_domain(args.data_dir, held)
        if args.json:
            print(orjson.dumps(rows).decode())
            return
        for r in rows:
            cos = r["cosine_recall_at_same_wrong_hit_rate"]
            print(
                f"without {r['left_out']:8} on {r['data']:18} wrong {r['wrong_hit_rate']:.4f}"
                f" recall {r['recall']:.3f} cosine@same {cos:.3f}"
            )
        return
    if not args.data:
        parser.error("--data FILE.tsv (or --cross-domain)")
    model = load_model()
    reader = LocalEmbedder(READER_MODEL, projection=model.projection)
    results = []
    for path in args.data:
        sweep = tuple(float(t) for t in args.sweep.split(",") if t.strip())
        m = measure(path, model, args.max_wrong_hit_rate, reader, sweep)
        if not args.no_png:
            out = ROOT / "docs" / f"quality-{path.stem}.png"
            curve_png(out, m, f"{path.name}: {m.result['pairs']} pairs")
            m.result["curve_png"] = str(out.relative_to(ROOT))
        results.append(m.result)
    if args.json:
        print(orjson.dumps(results[0] if len(results) == 1 else results).decode())
        return
    for path, r in zip(args.data, results, strict=True):
        gain = r["recall_gain_vs_cosine_at_same_wrong_hit_rate"]
        print(
            f"{path.name}: {r['pairs']} pairs, verifier {r['verifier']},"
            f" max wrong-hit rate {r['max_wrong_hit_rate']}, floor {r['threshold']}"
        )
        print(
            f"  precision {r['precision']:.4f}  recall {r['recall']:.4f}"
            f"  wrong-hit rate {r['wrong_hit_rate']:.4f} ({r['wrong_hits']} wrong hits)"
        )
        print(
            f"  plain cosine at the same wrong-hit rate: recall"
            f" {r['cosine_recall_at_same_wrong_hit_rate']:.4f}"
            f" (gain x{gain:.2f})"
            if gain
            else "  plain cosine: no recall at that rate"
        )
        print(f"  refused: {r['rejections']}")


if __name__ == "__main__":
    main()
