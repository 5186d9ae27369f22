"""Wrong hits on live traffic: shadow mode's estimate, and the adaptive line with audits.

    python bench/audit.py --data FILE.tsv [--json] [--learn 1000] [--audit-rate 0.05]

A labelled pair file (``q1<TAB>q2<TAB>label``) is replayed as traffic, its pairs in one seeded
order, through a running ``semcache serve`` (local all-MiniLM-L6-v2, memory store): pair i under
its own API key, q1 asked (a miss, stored; ``X-Cache-Semantic: off``, so that every semantic
lookup is a q2 and the proxy's rates per lookup are rates per q2), then q2. The upstream
answers by meaning (``tests/support/meaning_upstream.py``): a paraphrase pair's q2 gets the
same fact as its q1, worded anew; a look-alike's another fact. Nothing is fitted to the file:
the proxy learns only from the traffic, as it would in production, and the labels are read
only to score it afterwards.

1. **Shadow** (``SEMCACHE_SEMANTIC_MODE=shadow``): every q2 goes upstream; the proxy judges
   each would-be hit against the fresh answer. Its estimate of the wrong-hit rate (judged
   wrong would-be hits per q2, with a 95 % Jeffreys interval) is set against the true one.
2. **Live** (``on``, ``SEMCACHE_AUDIT_RATE``): a fresh proxy serves hits on the adaptive line.
   Scored over the pairs after the first ``--learn``: the true wrong-hit rate per q2 (with its
   one-sided 95 % Clopper-Pearson upper bound) and recall, against ``oracle_recall``: the best
   recall of one fixed line on the verifier's margin with at most 0.5 % wrong hits on those
   same pairs, chosen after the fact with the labels.

Also measured: the judge's own error on this traffic's answers (same fact worded twice vs two
facts) and the share of served hits the audits sent upstream again.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import numpy.typing as npt
from scipy.stats import beta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.train_verifier as tv  # noqa: E402
from proxy.semantic.embedders import READER_MODEL, LocalEmbedder  # noqa: E402
from proxy.semantic.judge import AnswerJudge  # noqa: E402
from proxy.semantic.verifier import LearnedVerifier, load_model  # noqa: E402
from proxy.settings import DEFAULT_JUDGE_SIMILARITY, DEFAULT_SIMILARITY  # noqa: E402
from proxy.stores.similarity import Neighbor  # noqa: E402
from tests.support.meaning_upstream import KEY_PREFIX, MeaningUpstream, wording  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

TARGET = 0.005
MODEL = "bench-chat"


def ask(client: httpx.Client, pair: int, text: str, *, lookup: bool) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    headers = {"authorization": f"Bearer {KEY_PREFIX}{pair}"}
    if not lookup:
        headers["x-cache-semantic"] = "off"  # stored as usual, but not a semantic lookup
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    response.raise_for_status()
    return response


def replay(proxy: ProxyProcess, q1: list[str], q2: list[str]) -> tuple[list[str], int]:
    """Each q2's outcome (``hit``, ``shadow`` or ``miss``) and how many answers were misses."""
    outcomes, misses = [], 0
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for i, (a, b) in enumerate(zip(q1, q2, strict=True)):
            first = ask(client, i, a, lookup=False)
            second = ask(client, i, b, lookup=True)
            misses += (first.headers["x-cache"] == "MISS") + (second.headers["x-cache"] == "MISS")
            if second.headers.get("x-cache-lookup") == "semantic":
                outcomes.append("hit")
            elif second.headers.get("x-cache-shadow") == "HIT":
                outcomes.append("shadow")
            else:
                outcomes.append("miss")
    return outcomes, misses


def settled_stats(proxy: ProxyProcess) -> dict[str, Any]:
    """/cache/stats once the background comparisons have stopped moving and synced."""
    last: Any = None
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for _ in range(120):
            stats = client.get("/cache/stats").json()
            now = (stats["audits"], stats["groups"])
            if now == last:
                return dict(stats)
            last = now
            time.sleep(2.5)  # longer than the proxy's sync period
    return dict(stats)


def group_of(stats: dict[str, Any]) -> dict[str, Any]:
    found = [g for g in stats["groups"] if str(g["group"]).endswith("|" + MODEL)]
    return dict(found[0]) if found else {}


def jeffreys(events: int, trials: int) -> tuple[float, float]:
    """95 % Jeffreys interval, with its usual ends: 0 when no event, 1 when all."""
    low, high = beta.ppf([0.025, 0.975], events + 0.5, trials - events + 0.5)
    return (0.0 if events == 0 else float(low)), (1.0 if events == trials else float(high))


def margins(q1: list[str], q2: list[str], rate: float) -> npt.NDArray[np.float64]:
    """Each pair's margin under the shipped verifier (-inf where it refuses outright)."""
    model = load_model()
    reader = LocalEmbedder(READER_MODEL, projection=model.projection)
    texts = sorted(set(q1) | set(q2))
    read = dict(zip(texts, reader.read_many(texts), strict=True))
    verifier = LearnedVerifier(model, rate)
    out = []
    for a, b in zip(q1, q2, strict=True):
        sim = float(read[a][0] @ read[b][0])
        neighbor = Neighbor("x", sim, a, read[a][1].pack())
        verdict = verifier.judge(b, read[b][1], neighbor, floor=DEFAULT_SIMILARITY, requested=None)
        margin = (
            verdict.margin if verdict.margin is not None else (1.0 if verdict.accepted else None)
        )
        out.append(-np.inf if margin is None else margin)
    return np.array(out)


def oracle_recall(m: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> float:
    """Best recall of one fixed line on the margin with at most TARGET wrong hits per pair."""
    positives = int((labels == 1).sum())
    best = 0.0
    for line in np.unique(m[np.isfinite(m)]):
        served = m >= line
        if (served & (labels == 0)).sum() / len(labels) <= TARGET and positives:
            best = max(best, float((served & (labels == 1)).sum() / positives))
    return best


def judge_error(labels: npt.NDArray[np.int8]) -> float:
    """The judge on this traffic's answers: one fact worded twice, or two facts."""
    reader = LocalEmbedder(READER_MODEL)

    async def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        return reader.encode(texts)

    judge = AnswerJudge(embed, min_similarity=DEFAULT_JUDGE_SIMILARITY)
    rng = random.Random(1)

    async def run() -> int:
        errors = 0
        for i, label in enumerate(labels):
            a = {"choices": [{"message": {"content": wording(i, 0, rng)}}]}
            b = {"choices": [{"message": {"content": wording(i, int(label == 0), rng)}}]}
            errors += int(await judge.same(a, b) != bool(label))
        return errors

    return anyio.run(run) / len(labels)


def serve(upstream: MeaningUpstream, mode: str, audit_rate: float) -> ProxyProcess:
    env = {
        "SEMCACHE_EMBED_MODEL": f"local:{READER_MODEL}",
        "SEMCACHE_SEMANTIC_MODE": mode,
        "SEMCACHE_AUDIT_RATE": str(audit_rate),
        "SEMCACHE_MAX_WRONG_HIT_RATE": str(TARGET),
        "SEMCACHE_COALESCE_TIMEOUT": "0",
    }
    return ProxyProcess(upstream.url, env=env, ready_timeout=180)


def measure(path: Path, learn: int, audit_rate: float) -> dict[str, Any]:
    started = time.monotonic()
    q1, q2, labels = traffic(path)
    n = len(labels)
    learn = min(learn, n // 2)
    upstream = MeaningUpstream(q1, [int(x) for x in labels])
    upstream.start()
    try:
        with serve(upstream, "shadow", 0.0) as proxy:
            shadow, _ = replay(proxy, q1, q2)
            shadow_stats = settled_stats(proxy)
        upstream.reset()
        with serve(upstream, "on", audit_rate) as proxy:
            live, misses = replay(proxy, q1, q2)
            live_stats = settled_stats(proxy)
            chat_calls = upstream.calls()
    finally:
        upstream.stop()

    would = np.array([o == "shadow" for o in shadow])
    judged_wrong = int(group_of(shadow_stats).get("shadow", {}).get("judged_wrong", 0))
    estimate = judged_wrong / n
    true_wrong = float((would & (labels == 0)).sum() / n)
    low, high = jeffreys(judged_wrong, n)

    served = np.array([o == "hit" for o in live])
    live_result = score_live(served, margins(q1, q2, TARGET), labels, learn)
    hits = int(served.sum())
    audit_calls = chat_calls - misses
    result: dict[str, Any] = {
        "data": str(path),
        "pairs": n,
        "shadow_hit_rate": float(would.mean()),
        "shadow_wrong_rate": estimate,
        "shadow_wrong_rate_low95": low,
        "shadow_wrong_rate_high95": high,
        "true_wrong_rate": true_wrong,
        "estimate_error": abs(estimate - true_wrong),
        "shadow_estimate_within_interval": low <= true_wrong <= high,
        **live_result,
        "adaptive_hits": hits,
        "audit_calls": audit_calls,
        "audit_upstream_share": audit_calls / hits if hits else 0.0,
        "audit_rate": audit_rate,
        "judge_error_rate": judge_error(labels),
        "audits": live_stats["audits"],
        "line": group_of(live_stats).get("threshold_offset"),
        "seconds": round(time.monotonic() - started, 1),
    }
    wrong, upper = result["adaptive_wrong_rate"], result["adaptive_wrong_rate_upper95"]
    result["targets"] = {
        "shadow_estimate_within_interval": result["shadow_estimate_within_interval"],
        "adaptive_wrong_rate<=0.005": wrong is not None and wrong <= TARGET,
        "adaptive_wrong_rate_upper95<=0.01": upper is not None and upper <= 0.01,
        "adaptive_recall>=0.8*oracle": result["adaptive_recall"] >= 0.8 * result["oracle_recall"],
        "audit_upstream_share<=audit_rate": result["audit_upstream_share"] <= audit_rate + 1e-9,
    }
    return result


def traffic(path: Path) -> tuple[list[str], list[str], npt.NDArray[np.int8]]:
    """The pairs in one seeded order: traffic comes mixed, files are often sorted by label."""
    q1, q2, labels = tv.read_pairs(path)
    order = np.random.default_rng(0).permutation(len(labels))
    return [q1[i] for i in order], [q2[i] for i in order], labels[order]


def score_live(
    served: npt.NDArray[np.bool_],
    m: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    learn: int,
) -> dict[str, Any]:
    """The pairs after the first ``learn``: wrong-hit rate (with its one-sided 95 %
    Clopper-Pearson bound) and recall of what was served; the oracle's and the calibrated
    line's recall on the same pairs."""
    after, after_labels = served[learn:], labels[learn:]
    n_after, positives = len(after_labels), int((after_labels == 1).sum())
    wrong = int((after & (after_labels == 0)).sum())

    def recall(hit: npt.NDArray[np.bool_]) -> float:
        return float((hit & (after_labels == 1)).sum() / positives) if positives else 0.0

    return {
        "learn_pairs": learn,
        "adaptive_wrong_rate": wrong / n_after if n_after else None,
        "adaptive_wrong_rate_upper95": float(beta.ppf(0.95, wrong + 1, n_after - wrong))
        if n_after
        else None,
        "adaptive_recall": recall(after),
        "oracle_recall": oracle_recall(m[learn:], after_labels),
        "calibrated_recall": recall(m[learn:] >= 0),
    }


def show(result: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:36} {value}")


def arguments(description: str) -> argparse.ArgumentParser:
    """The options both live-quality benches take."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--learn", type=int, default=1000)
    parser.add_argument("--audit-rate", type=float, default=0.05)
    return parser


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    show(measure(args.data, args.learn, args.audit_rate), as_json=args.json)


if __name__ == "__main__":
    main()
