"""Fit any embedder's cosine calibration table from labelled pairs: what semantic matching uses
when the learned verifier cannot run (an HTTP embedder without ``semcache[local]``).

    python bench/calibrate.py --data FILE.tsv [--data FILE2.tsv ...] \
        [--embed-model local:all-MiniLM-L6-v2 | hash:256 | nomic-embed-text] \
        [--embed-url http://127.0.0.1:11434/v1] [--api-key KEY] [--write config/cal.json]

Each data file is a TSV with a header and no quoting: ``q1  q2  label  [kind]``, label 1 when an
answer to q1 also answers q2. Both prompts are embedded with the embedder the proxy would use
(``--embed-model`` as ``SEMCACHE_EMBED_MODEL``; an upstream model is asked through
``--embed-url``'s ``/embeddings``), then, as :class:`proxy.semantic.verifier.CosineVerifier`
judges: a pair hits when its cosine reaches the threshold and no narrow rule objects.

For each wrong-hit rate of :data:`RISKS`, the least cosine at which the wrong-hit rate (share of
label-0 pairs that hit) stays under it on **every** file given, with 95 % confidence (the same
binomial bound as the verifier's table): give files of the kinds of traffic you serve. Prints
the table with each file's recall; ``--write`` saves it for
``SEMCACHE_CALIBRATION``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_verifier import allowed_wrong_hits, read_pairs  # noqa: E402
from proxy.semantic.embedders import HashEmbedder, LocalEmbedder, unit  # noqa: E402
from proxy.semantic.language import is_english  # noqa: E402
from proxy.semantic.rules import objection  # noqa: E402

RISKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
Floats = npt.NDArray[np.float32]


def embed(texts: list[str], spec: str, url: str, api_key: str | None) -> tuple[str, Floats]:
    """(the embedder's name as the proxy reports it, unit vectors)."""
    kind, _, rest = spec.partition(":")
    if kind == "local" and rest:
        return f"local:{rest}", LocalEmbedder(rest).encode(texts)
    if kind == "hash":
        hashed = HashEmbedder(int(rest or 256))
        return hashed.name, np.array([hashed.encode(t) for t in texts])
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    rows: list[Floats] = []
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(texts), 64):
            batch = texts[start : start + 64]
            reply = client.post(f"{url.rstrip('/')}/embeddings", headers=headers,
                                json={"model": spec, "input": batch})  # fmt: skip
            reply.raise_for_status()
            data = sorted(reply.json()["data"], key=lambda d: d["index"])
            rows += [unit(d["embedding"]) for d in data]
    return f"http:{spec}", np.array(rows)


def table(
    sims: list[Floats], labels: list[npt.NDArray[np.int8]], refused: list[npt.NDArray[np.bool_]]
) -> list[tuple[float, float]]:
    out = []
    for risk in RISKS:
        least = 0.0
        for s, y, r in zip(sims, labels, refused, strict=True):
            negatives = np.sort(s[(y == 0) & ~r])[::-1]
            allowed = allowed_wrong_hits(int((y == 0).sum()), risk)
            if allowed < negatives.size:
                least = max(least, float(np.nextafter(negatives[allowed], np.float32(2))))
        out.append((risk, min(least, 1.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--embed-model", default="local:all-MiniLM-L6-v2")
    parser.add_argument("--embed-url", default="http://127.0.0.1:11434/v1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--write", type=Path, help="save the table as JSON")
    args = parser.parse_args()
    files = [read_pairs(path) for path in args.data]
    texts = sorted({t for q1, q2, _ in files for t in (*q1, *q2)})
    name, vectors = embed(texts, args.embed_model, args.embed_url, args.api_key)
    row = {t: i for i, t in enumerate(texts)}
    sims, labels, refused = [], [], []
    for q1, q2, label in files:
        sims.append(np.array([float(vectors[row[a]] @ vectors[row[b]])
                              for a, b in zip(q1, q2, strict=True)], dtype=np.float32))  # fmt: skip
        labels.append(label)
        refused.append(np.array([
            objection(b, a, english=is_english(a) and is_english(b)) is not None
            for a, b in zip(q1, q2, strict=True)
        ]))  # fmt: skip
    fitted = table(sims, labels, refused)
    print(f"{name}: cosine threshold per max wrong-hit rate (recall per file)")
    for risk, threshold in fitted:
        recalls = [float(np.mean(((s >= threshold) & ~r)[y == 1]))
                   for s, y, r in zip(sims, labels, refused, strict=True)]  # fmt: skip
        shown = "  ".join(f"{p.name} {x:.3f}" for p, x in zip(args.data, recalls, strict=True))
        print(f"  {risk:<6} {threshold:.4f}   {shown}")
    if args.write:
        payload = {"embedder": name, "thresholds": fitted, "data": [p.name for p in args.data]}
        args.write.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
