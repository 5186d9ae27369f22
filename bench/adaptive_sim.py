"""The adaptive line without the HTTP stack: a pair file's verifier margins replayed through the
proxy's own :class:`~proxy.semantic.adaptive.Adaptive`, in seconds instead of minutes.

    python bench/adaptive_sim.py --data FILE.tsv [--json] [--learn 1000] [--audit-rate 0.05]
                                 [--confidence 0.95] [--orders N]

Each pair, in one seeded order: q2's best candidate is its q1 at the margin the shipped
verifier gives (``bench/audit.py``'s ``margins``); served when it reaches the line; compared
for free when not served, audited at ``--audit-rate`` when served; the judge is taken as exact
(``bench/audit.py`` measures its error) and the evidence synced every 10 pairs. Scored like
``bench/audit.py``'s live phase. ``--confidence`` tries another bound than the shipped 95 %.
``--orders N`` also replays the pairs in N - 1 other seeded orders (``orders``: each one's
figures, and how many met the live targets): one order is one draw of traffic, and which pairs
come in the first 1,000 moves both the line and the oracle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.audit import TARGET, arguments, margins, score_live, show, traffic  # noqa: E402
from proxy.metrics import Metrics  # noqa: E402
from proxy.semantic import adaptive  # noqa: E402
from proxy.stores.guard import Cache  # noqa: E402
from proxy.stores.memory import MemoryStore  # noqa: E402

SYNC_EVERY = 10
GROUP = "bench"


def replay(
    m: npt.NDArray[np.float64], labels: npt.NDArray[np.int8], *, audit_rate: float
) -> npt.NDArray[np.bool_]:
    """Whether each pair's q2 was served."""
    lines = adaptive.Adaptive(
        Cache(MemoryStore(max_entries=1, max_bytes=1 << 20), Metrics()), TARGET
    )
    credit, served = 0.0, []
    for i, (margin, label) in enumerate(zip(m, labels, strict=True)):
        seen = float(margin) if np.isfinite(margin) else None
        lines.looked_up(GROUP, seen)
        serve = seen is not None and seen >= lines.offset(GROUP)
        served.append(serve)
        compare = seen is not None and not serve
        if serve:
            credit += audit_rate
            compare = credit >= 1.0
            credit -= float(compare)
        if compare:
            lines.observed(GROUP, seen, wrong=bool(label == 0))
        if i % SYNC_EVERY == 0:
            anyio.run(lines.sync)
    return np.array(served)


def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--confidence", type=float, default=adaptive.CONFIDENCE)
    parser.add_argument("--orders", type=int, default=1)
    args = parser.parse_args()
    adaptive.CONFIDENCE = args.confidence
    q1, q2, labels = traffic(args.data)
    m = margins(q1, q2, TARGET)
    learn = min(args.learn, len(labels) // 2)
    served = replay(m, labels, audit_rate=args.audit_rate)
    result = {"data": str(args.data), "pairs": len(labels), "confidence": args.confidence}
    result.update(score_live(served, m, labels, learn))
    if args.orders > 1:
        result["orders"] = other_orders(m, labels, args.orders, learn, args.audit_rate)
    show(result, as_json=args.json)


def other_orders(
    m: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    count: int,
    learn: int,
    audit_rate: float,
) -> dict[str, object]:
    """The replay in ``count`` - 1 more seeded orders (the first is the one above)."""
    runs = []
    for seed in range(1, count):
        order = np.random.default_rng(seed).permutation(len(labels))
        served = replay(m[order], labels[order], audit_rate=audit_rate)
        live = score_live(served, m[order], labels[order], learn)
        runs.append({"seed": seed, **{k: live[k] for k in LIVE_KEYS}})
    met = [
        r["adaptive_wrong_rate"] <= TARGET and r["adaptive_recall"] >= 0.8 * r["oracle_recall"]
        for r in runs
    ]
    return {"runs": runs, "met_both_targets": sum(met), "of": len(runs)}


LIVE_KEYS = ("adaptive_wrong_rate", "adaptive_wrong_rate_upper95", "adaptive_recall",
             "oracle_recall")  # fmt: skip


if __name__ == "__main__":
    main()
