"""How the adaptive thresholds (:mod:`proxy.semantic.adaptive`) are shown: per group, for
``/cache/stats`` and the dashboard (:func:`report`), and as Prometheus gauges for ``/metrics``
(:func:`render`)."""

from __future__ import annotations

import numpy as np

from proxy.semantic.adaptive import BINS, NEVER, SAMPLES, Adaptive


def report(adaptive: Adaptive) -> list[dict[str, object]]:
    """Per group, for ``/cache/stats`` and ``/metrics``: the line, the evidence, the estimated
    wrong-hit rate per lookup at the line (95 % interval), and what shadow mode saw."""
    out: list[dict[str, object]] = []
    for group in adaptive.groups():
        c = group.counters
        n = c["n"]
        observed = sum(c[f"o{b}"] for b in range(BINS))
        wrong = sum(c[f"w{b}"] for b in range(BINS))
        estimate = group.estimate
        shadow_wrong = c["shadow_different"]
        shadow_judged = c["shadow_same"] + shadow_wrong
        out.append(
            {
                "group": group.name,
                "lookups": n,
                "threshold_offset": group.offset if group.offset_bin < NEVER else None,
                "serving": group.offset_bin < NEVER,
                "evidence": {"compared": observed, "different": wrong},
                "wrong_hit_rate": None
                if estimate is None
                else {"estimate": estimate.rate, "low95": estimate.low, "high95": estimate.high},
                "shadow": {
                    "would_be_hits": c["shadow_hits"],
                    "hit_rate": c["shadow_hits"] / n if n else 0.0,
                    "judged": shadow_judged,
                    "judged_wrong": shadow_wrong,
                    "wrong_hit_rate": _shadow_rate(
                        c["shadow_hits"], shadow_judged, shadow_wrong, n
                    ),
                },
                "verdicts": {
                    k: v
                    for k, v in sorted(c.items())
                    if k.endswith(("_same", "_different")) or k == "feedback_wrong"
                },
            }
        )
    return out


def _shadow_rate(hits: int, judged: int, wrong: int, n: int) -> dict[str, float] | None:
    """Wrong would-be hits per lookup. Every would-be hit judged (chat completions): wrong of
    ``n``. Some not judged (a request that stores nothing, a route without comparisons): the
    hit rate times the wrong share of those judged, with the interval of that product; None
    while none was judged. Unjudged would-be hits are never counted as right."""
    if judged >= hits:
        return _interval(wrong, n)
    if judged == 0 or n <= 0:
        return None
    rng = np.random.default_rng(0)
    rate = rng.beta(hits + 0.5, n - hits + 0.5, size=SAMPLES)
    share = rng.beta(wrong + 0.5, judged - wrong + 0.5, size=SAMPLES)
    low, high = np.quantile(rate * share, [0.025, 0.975])
    return {
        "estimate": hits / n * wrong / judged,
        "low95": 0.0 if wrong == 0 else float(low),
        "high95": float(high),
    }


def _interval(events: int, trials: int) -> dict[str, float] | None:
    """Rate with its 95 % Jeffreys interval."""
    if trials <= 0:
        return None
    draws = np.random.default_rng(0).beta(events + 0.5, trials - events + 0.5, size=SAMPLES)
    low, high = np.quantile(draws, [0.025, 0.975])
    low = 0.0 if events == 0 else float(low)  # the usual ends of the Jeffreys interval
    high = 1.0 if events == trials else float(high)
    return {"estimate": events / trials, "low95": low, "high95": high}


def _escaped(value: object) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(groups: list[dict[str, object]]) -> str:
    """The report as Prometheus gauges."""
    lines = [
        "# HELP semcache_semantic_wrong_hit_rate Estimated wrong semantic hits per lookup at "
        "the current line, from audits and comparisons (estimate, low95, high95).",
        "# TYPE semcache_semantic_wrong_hit_rate gauge",
    ]
    for g in groups:
        rate = g["wrong_hit_rate"]
        if isinstance(rate, dict):
            label = _escaped(g["group"])
            for bound, value in rate.items():
                lines.append(
                    f'semcache_semantic_wrong_hit_rate{{group="{label}",value="{bound}"}} {value}'
                )
    lines += [
        "# HELP semcache_semantic_threshold_offset Margin a candidate needs above the "
        "calibrated threshold (0 = calibrated; +Inf = none served).",
        "# TYPE semcache_semantic_threshold_offset gauge",
    ]
    for g in groups:
        offset = g["threshold_offset"]
        value = "+Inf" if offset is None else str(offset)
        label = _escaped(g["group"])
        lines.append(f'semcache_semantic_threshold_offset{{group="{label}"}} {value}')
    lines += [
        "# HELP semcache_shadow_hit_rate Semantic hits shadow mode would have served, per lookup.",
        "# TYPE semcache_shadow_hit_rate gauge",
    ]
    for g in groups:
        shadow = g["shadow"]
        assert isinstance(shadow, dict)
        label = _escaped(g["group"])
        lines.append(f'semcache_shadow_hit_rate{{group="{label}"}} {shadow["hit_rate"]}')
    return "\n".join(lines) + "\n"
