"""The admin API's answers as the lines the commands print: ``stats``' summary, ``explain``'s
verdict and its reasons, and ``ls``' line per entry."""

from __future__ import annotations

from typing import Any

from proxy.requests import loggable


def _semantic_line(figures: dict[str, Any]) -> str:
    if figures.get("semantic_enabled") is False:
        return "semantic: off (no embedder: SEMCACHE_EMBED_MODEL is unset or failed to start)"
    return (
        f"semantic: {figures.get('semantic_mode', '?')}, embedder {figures.get('embedder')}, "
        f"verifier {figures.get('verifier')}"
    )


def summary(figures: dict[str, Any]) -> list[str]:
    store = figures.get("store") or {}
    lines = [
        f"hits {figures['hits']}  misses {figures['misses']}  hit rate {figures['hit_rate']:.1%}",
        f"by lookup: {_pairs(figures.get('hits_by_lookup', {}))}",
        f"tokens saved: {figures.get('tokens_saved', 0)}",
        f"store ({figures.get('store_kind', '?')}): {store.get('entries', '?')} entries, "
        f"{'?' if store.get('bytes') is None else store['bytes']} bytes",
        _semantic_line(figures),
    ]
    if figures.get("miss_reasons"):
        lines.append(f"miss reasons: {_pairs(figures['miss_reasons'])}")
    if figures.get("audits"):
        lines.append(f"audits: {_pairs(figures['audits'])}")
    groups = figures.get("groups") or []
    if groups:
        lines.append("wrong hits per model (from audits, comparisons and reports):")
        lines += [line for group in groups for line in group_lines(group)]
    return lines


def group_lines(group: dict[str, Any]) -> list[str]:
    """One model group of ``/cache/stats``: its line, the wrong-hit rate estimated there with
    its 95 % interval, and what shadow mode would have added."""
    offset = group["threshold_offset"]
    line = (
        "none served" if offset is None
        else "calibrated" if offset == 0
        else f"calibrated {offset:+.2f}"
    )  # fmt: skip
    evidence = group["evidence"]
    rate = group["wrong_hit_rate"]
    estimate = "too little evidence yet" if rate is None else _rate(rate)
    lines = [
        f"  {group['group']}: line {line}; {group['lookups']} lookups, {evidence['compared']} "
        f"compared, {evidence['different']} different; wrong-hit rate {estimate}"
    ]
    shadow = group["shadow"]
    if shadow["would_be_hits"]:
        judged = "" if shadow["wrong_hit_rate"] is None else _rate(shadow["wrong_hit_rate"])
        lines.append(
            f"    shadow: would add {shadow['would_be_hits']} hits ({shadow['hit_rate']:.1%} "
            f"of lookups), judged wrong {shadow['judged_wrong']}: {judged}"
        )
    return lines


def _rate(rate: dict[str, float]) -> str:
    return f"{rate['estimate']:.2%} (95 %: {rate['low95']:.2%}-{rate['high95']:.2%})"


def explanation(answer: dict[str, Any]) -> list[str]:
    decision = answer["decision"]
    if decision == "REFUSED":
        return [f"REFUSED with {answer['status']}: {answer['error']}"]
    head = decision
    if decision == "HIT":
        head += f" ({answer['lookup']}, entry {answer['entry_id']}"
        head += f", similarity {answer['similarity']})" if "similarity" in answer else ")"
    else:
        head += f": {answer['reason']}"
    lines = [head, f"key {answer['key']}"]
    exact = answer.get("exact")
    if exact is not None:
        found = (
            "no entry"
            if not exact["found"]
            else (
                f"entry {exact['entry_id']}, {exact['age_seconds']} s old"
                + ("" if exact["fresh"] else ", too old for this request")
            )
        )
        lines.append(f"exact: {found}")
    semantic = answer.get("semantic")
    if semantic is not None:
        if "skipped" in semantic:
            lines.append(f"semantic: skipped ({semantic['skipped']})")
        else:
            lines.append(f"semantic: {len(semantic['candidates'])} candidates")
            for c in semantic["candidates"]:
                verdict = "accepted" if c["accepted"] else f"refused ({c['reason'] or 'line'})"
                lines.append(f"  {c['similarity']:.4f}  {verdict}  {c['text'][:80]!r}")
    return lines


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def entry_line(e: dict[str, Any]) -> str:
    ttl = "-" if e["ttl_seconds"] is None else f"{e['ttl_seconds']:.0f}s"
    # The model is the client's own string: its control characters (a newline, a terminal
    # escape) are shown escaped, as the prompt is, so no request can write lines of its own.
    model = loggable(str(e["model"]))
    return (
        f"{e['id']}  {e['route']:<10} {model[:24]:<24} age {e['age_seconds']:.0f}s "
        f"ttl {ttl}  hits {e['hits']}  {e['prompt'][:60]!r}"
    )
