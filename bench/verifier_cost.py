"""What the learned verifier costs: time per candidate beyond the embedding pass, and the bytes
stored per entry for it.

    python -m bench.verifier_cost [--pairs N] [--json]

Reads the prompts of ``bench/data/{llm-prompts,medical,support}.tsv`` with the local reader
(all-MiniLM-L6-v2), then times :meth:`LearnedVerifier.judge` on each pair as the proxy calls it
(the candidate's sketch unpacked from bytes, rules, features, trees), warm, one pair at a time.
Keys: ``verify_p50_ms``, ``verify_p99_ms`` (pairs the model scores; ``verify_all_p50_ms`` over
every pair, rules' early refusals included), ``read_p50_ms`` and ``embed_p50_ms`` (one prompt
read with its sketch vs embedded alone), ``sketch_bytes_mean``, ``sketch_bytes_max`` (over the
prompts read) and ``sketch_bytes_bound`` (the most a sketch can take).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_verifier import OWN_FILES, read_pairs  # noqa: E402
from proxy.semantic.embedders import READER_MODEL, LocalEmbedder  # noqa: E402
from proxy.semantic.sketch import max_packed_bytes  # noqa: E402
from proxy.semantic.verifier import LearnedVerifier, load_model  # noqa: E402
from proxy.stores.similarity import Neighbor  # noqa: E402


def measure(pairs: int) -> dict[str, float]:
    model = load_model()
    reader = LocalEmbedder(READER_MODEL, projection=model.projection)
    q1: list[str] = []
    q2: list[str] = []
    for file in OWN_FILES.values():
        first, second, _ = read_pairs(ROOT / "bench" / "data" / file)
        q1 += first
        q2 += second
    q1, q2 = q1[:pairs], q2[:pairs]
    texts = sorted(set(q1) | set(q2))
    read = dict(zip(texts, reader.read_many(texts), strict=True))
    verifier = LearnedVerifier(model, 0.005)
    scored: list[float] = []
    every: list[float] = []
    for _ in range(2):  # the first round warms caches up
        scored.clear()
        every.clear()
        for a, b in zip(q1, q2, strict=True):
            vector, sketch = read[b]
            neighbor = Neighbor("k", float(read[a][0] @ vector), a, read[a][1].pack())
            start = time.perf_counter()
            verdict = verifier.judge(b, sketch, neighbor, floor=0.0, requested=None)
            took = time.perf_counter() - start
            every.append(took)
            if verdict.score is not None:
                scored.append(took)
    sizes = [len(s.pack()) for _, s in read.values()]
    one = texts[:200]
    reads, embeds = [], []
    for text in one:
        start = time.perf_counter()
        reader.read_many([text])
        reads.append(time.perf_counter() - start)
        start = time.perf_counter()
        reader.encode([text])
        embeds.append(time.perf_counter() - start)
    ms = 1000.0
    return {
        "verify_p50_ms": float(np.percentile(scored, 50)) * ms,
        "verify_p99_ms": float(np.percentile(scored, 99)) * ms,
        "verify_all_p50_ms": float(np.percentile(every, 50)) * ms,
        "verify_pairs_scored": len(scored),
        "read_p50_ms": float(np.percentile(reads, 50)) * ms,
        "embed_p50_ms": float(np.percentile(embeds, 50)) * ms,
        "sketch_bytes_mean": float(np.mean(sizes)),
        "sketch_bytes_max": float(max(sizes)),
        "sketch_bytes_bound": float(max_packed_bytes(model.projection.basis.shape[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1080)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.pairs)
    if args.json:
        print(orjson.dumps(figures).decode())
        return
    for key, value in figures.items():
        print(f"{key:22} {value:,.3f}")


if __name__ == "__main__":
    main()
