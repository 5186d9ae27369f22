"""The results of ``bench/run.py`` as a table and as charts (PNG, matplotlib imported on use);
a flat report of any bench as JSON or one line per figure."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import orjson

from bench.plan import SIZES, STORES, Target, size_label


def print_report(report: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object (``--json``), else one aligned ``key  value`` line per figure."""
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(r: dict[str, Any], out: TextIO, targets: Iterable[Target]) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    mode = "quick" if r["quick"] else "full"
    line(
        f"semcache benchmark ({mode}, {r['duration_seconds']:.0f} s)  generator: {r['generator']}"
        f", busiest {r['generator_cpu_max']:.0%} of a core"
        + ("  ** SATURATED **" if r["generator_saturated"] else "")
    )
    line(
        f"fake upstream latency {r['upstream_latency_ms']:.0f} ms; all on loopback; ms unless "
        f"noted; {os.cpu_count()} cores, other work on the machine during the c64 loads: "
        f"{r['other_cpu_during_loads']:.0%} of a core (kernel network work included)"
    )
    line()
    names = [n for n in ("baseline", "memory", "redis", "litellm") if f"exact_hit_rps_{n}" in r]
    line(
        f"{'exact hit':<22}{'req/s c64':>10}{'p50':>8}{'p99':>8}{'vs base':>9}{'srv CPU':>9}"
        f"{'per CPU':>9}"
        f"{'p50 c1':>9}{'p99 c1':>9}{'added':>8}"
    )
    for n in names:
        ratio = r.get(f"exact_hit_ratio_{n}", 1.0)
        cpu_ratio = r.get(f"exact_hit_cpu_ratio_{n}", 1.0)
        added = r.get(f"exact_hit_added_p50_ms_{n}")
        line(
            f"  {n:<20}{r[f'exact_hit_rps_{n}']:>10,.0f}{r[f'exact_hit_p50_ms_{n}']:>8.2f}"
            f"{r[f'exact_hit_p99_ms_{n}']:>8.2f}{ratio:>9.0%}"
            f"{r[f'exact_hit_server_cpu_{n}']:>9.0%}{cpu_ratio:>9.0%}"
            f"{r[f'exact_hit_c1_p50_ms_{n}']:>9.3f}"
            f"{r[f'exact_hit_c1_p99_ms_{n}']:>9.3f}{fmt(added, 3):>8}"
        )
    if "peers" in r:
        line(f"  peers: {r['peers']}")
    if "exact_hit_rps_baseline_litellm_rounds" in r:
        line(
            f"  (litellm's share is of the baseline measured in its own rounds: "
            f"{r['exact_hit_rps_baseline_litellm_rounds']:,.0f} req/s)"
        )
    for n in names:
        errors = sum(r.get(f"{k}_errors_{n}", 0) for k in ("exact_hit", "miss"))
        if errors or r.get(f"exact_hit_all_hits_{n}") is False:
            line(
                f"  ** {n}: {errors} failed requests; every load request a hit: "
                f"{r.get(f'exact_hit_all_hits_{n}')} **"
            )
    if r["exact_hit_server_cpu_baseline"] < 0.85:
        line(
            "  ** the baseline was not CPU-bound (a busy machine, or the generator): 'per CPU', "
            "requests per CPU-second vs the baseline's, is the fairer ratio **"
        )
    line()
    line(
        f"{'c1: p50 / p99':<22}{'direct':>16}{'memory':>16}{'redis':>16}"
        f"{'added p50 mem / redis':>24}"
    )
    rows: list[tuple[str, dict[str, tuple[str, str]], tuple[str, str] | None]] = [
        (
            "miss",
            {s: (f"miss_p50_ms_{s}", f"miss_p99_ms_{s}") for s in ("direct", *STORES)},
            ("miss_added_p50_ms", "miss_added_p50_ms_redis"),
        ),
        (
            "stream TTFB, miss",
            {"direct": ("ttfb_direct_p50_ms", "ttfb_direct_p99_ms")}
            | {s: (f"ttfb_miss_p50_ms_{s}", f"ttfb_miss_p99_ms_{s}") for s in STORES},
            ("ttfb_added_ms", "ttfb_added_ms_redis"),
        ),
        (
            "stream TTFB, hit",
            {
                "memory": ("ttfb_hit_ms", "ttfb_hit_p99_ms"),
                "redis": ("ttfb_hit_ms_redis", "ttfb_hit_p99_ms_redis"),
            },
            None,
        ),
        (
            "semantic hit",
            {
                "memory": ("semantic_hit_p50_ms", "semantic_hit_p99_ms"),
                "redis": ("semantic_hit_p50_ms_redis", "semantic_hit_p99_ms_redis"),
            },
            None,
        ),
    ]
    for label, keys, added in rows:
        cells = []
        for store in ("direct", *STORES):
            p50, p99 = keys.get(store, ("", ""))
            cells.append(f"{fmt(r.get(p50))} / {fmt(r.get(p99))}" if p50 in r else "-")
        extra = f"{fmt(r.get(added[0]), 3)} / {fmt(r.get(added[1]), 3)}" if added else ""
        line(f"  {label:<20}" + "".join(f"{c:>16}" for c in cells) + f"{extra:>24}")
    if "miss_added_p50_ms_floor" in r:
        line(
            f"  a null proxy (bench/floor.py) adds {fmt(r['miss_added_p50_ms_floor'], 3)} ms"
            f" to a miss and {fmt(r.get('ttfb_added_ms_floor'), 3)} ms to a streamed TTFB: the"
            " hop itself"
        )
    for key in ("semantic_hit", "semantic_hit_redis"):
        if isinstance(r.get(key), str):
            line(f"  {key}: {r[key]}")
    for suffix in ("", "_redis"):
        if r.get(f"semantic_hit_all_hits{suffix}") is False:
            line(f"  ** semantic hit{suffix}: not every load request was a semantic hit **")
    line()
    line(
        f"{'store scaling':<18}{'get p50':>9}{'get p99':>9}{'sem p50':>9}{'sem p99':>9}"
        f"{'found':>7}{'B/entry':>9}{'overhead':>9}{'vector B':>9}"
    )
    for store, suffix in (("memory", ""), ("redis", "_redis")):
        for size in SIZES:
            k = f"_{size_label(size)}{suffix}"
            if f"exact_get_p50_ms{k}" not in r:
                continue
            line(
                f"  {store:<7}{size_label(size):>6}    "
                f"{r[f'exact_get_p50_ms{k}']:>9.4f}{r[f'exact_get_p99_ms{k}']:>9.4f}"
                f"{fmt(r.get(f'semantic_p50_ms{k}'), 3):>9}"
                f"{fmt(r.get(f'semantic_p99_ms{k}'), 3):>9}"
                f"{fmt(r.get(f'semantic_found_share{k}')):>7}{r[f'bytes_per_entry{k}']:>9,.0f}"
                f"{r[f'overhead_bytes_per_entry{k}']:>9,.0f}"
                f"{fmt(r.get(f'vector_bytes_per_entry{k}'), 0):>9}"
            )
    if "streamed_traced_bytes_per_entry" in r:
        line(
            f"  payload {fmt(r['payload_bytes_per_entry'], 0)} B per entry; an entry stored "
            f"from a streamed miss (orjson.dumps body + replay) costs "
            f"{r['streamed_traced_bytes_per_entry']:,.0f} B (tracemalloc), a non-streamed one "
            f"{r['plain_traced_bytes_per_entry']:,.0f} B"
        )
    for note in r.get("scaling_notes", []):
        line(f"  note: {note}")
    if "verify_p50_ms" in r:
        line()
        line(
            f"learned verifier: {r['verify_p50_ms']:.3f} / {r['verify_p99_ms']:.3f} ms p50 / p99 "
            f"per candidate; reading a prompt with its sketch {r['read_p50_ms']:.2f} ms p50 vs "
            f"embedding it alone {r['embed_p50_ms']:.2f} ms; sketch per entry "
            f"{r['sketch_bytes_mean']:,.0f} B mean, {r['sketch_bytes_max']:,.0f} B max seen, "
            f"{r['sketch_bytes_bound']:,.0f} B bound"
        )
    elif "verifier_cost" in r:
        line(f"learned verifier: {r['verifier_cost']}")
    line()
    line("targets")
    for t in targets:
        c = r["targets"][t.key]
        verdict = {True: "met", False: "MISSED", None: "not measured"}[c["met"]]
        op = ">=" if t.higher_is_better else "<="
        line(f"  {verdict:<13}{t.label:<46}{fmt(c['value'], 3):>10} {op} {t.limit:g}")


def charts(r: dict[str, Any], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    mode = "quick" if r["quick"] else "full"
    names = [n for n in ("baseline", "memory", "redis", "litellm") if f"exact_hit_rps_{n}" in r]
    labels = {
        "baseline": "baseline\n(bare Starlette)",
        "memory": "semcache\nmemory",
        "redis": "semcache\nredis",
        "litellm": "LiteLLM\n(local cache)",
    }
    colors = {"baseline": "#9e9e9e", "memory": "#1f77b4", "redis": "#d62728", "litellm": "#2ca02c"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    rps = [r[f"exact_hit_rps_{n}"] for n in names]
    bars = left.bar([labels[n] for n in names], rps, color=[colors[n] for n in names])
    for bar, n, value in zip(bars, names, rps, strict=True):
        share = r.get(f"exact_hit_ratio_{n}", 1.0)
        left.annotate(
            f"{value:,.0f}\n({share:.0%})",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    left.set_ylabel("requests / s")
    left.set_ylim(0, max(rps) * 1.25)
    left.set_title("Exact hits, 64 connections")
    x = range(len(names))
    p50 = [r[f"exact_hit_c1_p50_ms_{n}"] for n in names]
    p99 = [r[f"exact_hit_c1_p99_ms_{n}"] for n in names]
    right.bar([i - 0.2 for i in x], p50, 0.4, label="p50", color=[colors[n] for n in names])
    right.bar(
        [i + 0.2 for i in x], p99, 0.4, label="p99", color=[colors[n] for n in names], alpha=0.45
    )
    for i, (a, b) in enumerate(zip(p50, p99, strict=True)):
        right.annotate(f"{a:.2f}", (i - 0.2, a), ha="center", va="bottom", fontsize=8)
        right.annotate(f"{b:.2f}", (i + 0.2, b), ha="center", va="bottom", fontsize=8)
    right.set_xticks(list(x), [labels[n] for n in names])
    right.set_ylabel("ms")
    right.set_title("Exact hit latency, 1 connection (solid p50, light p99)")
    fig.suptitle(
        f"semcache exact hits vs the bare-Starlette ceiling ({mode} run, {r['generator']})",
        fontsize=10,
    )
    fig.tight_layout()
    throughput = directory / "throughput.png"
    fig.savefig(throughput, dpi=110)
    plt.close(fig)

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(12, 5.6))
    series = [
        ("exact_get", "", "memory Store.get", "#1f77b4", "o"),
        ("semantic", "", "memory Store.nearest", "#1f77b4", "s"),
        ("exact_get", "_redis", "redis Store.get", "#d62728", "o"),
        ("semantic", "_redis", "redis Store.nearest", "#d62728", "s"),
    ]
    for metric, suffix, label, color, marker in series:
        for q, style in (("p50", "-"), ("p99", ":")):
            points = [
                (n, r[f"{metric}_{q}_ms_{size_label(n)}{suffix}"])
                for n in SIZES
                if f"{metric}_{q}_ms_{size_label(n)}{suffix}" in r
            ]
            if points:
                lat.plot(
                    *zip(*points, strict=True),
                    style,
                    marker=marker,
                    color=color,
                    label=f"{label} {q}",
                    alpha=1.0 if q == "p50" else 0.6,
                )
    lat.axhline(1.0, color="gray", lw=0.8, ls="--")
    lat.axhline(3.0, color="gray", lw=0.8, ls="-.")
    lat.text(1_000, 1.05, "1 ms (memory semantic p50 target)", fontsize=7, color="gray")
    lat.text(1_000, 3.15, "3 ms (redis semantic p99 target)", fontsize=7, color="gray")
    lat.set(
        xscale="log",
        yscale="log",
        xlabel="entries in the store (one partition)",
        ylabel="ms per lookup",
        title="Lookup latency vs entries",
    )
    lat.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    lat.grid(True, which="both", alpha=0.25)
    for suffix, label, color in (("", "memory", "#1f77b4"), ("_redis", "redis", "#d62728")):
        for metric, style, marker, what in (
            ("bytes_per_entry", "-", "o", "entry"),
            ("vector_bytes_per_entry", "--", "s", "vector row (semantic)"),
        ):
            points = [
                (n, r[f"{metric}_{size_label(n)}{suffix}"])
                for n in SIZES
                if isinstance(r.get(f"{metric}_{size_label(n)}{suffix}"), int | float)
            ]
            if points:
                mem.plot(
                    *zip(*points, strict=True),
                    style,
                    marker=marker,
                    color=color,
                    label=f"{label}: {what}",
                )
    payload = r["payload_bytes_per_entry"]
    if payload is not None:
        mem.axhline(payload, color="gray", lw=0.8, ls=":")
        mem.axhline(payload + 512, color="gray", lw=0.8, ls="--")
        mem.text(1_000, payload + 20, f"payload {payload:.0f} B", fontsize=7, color="gray")
        mem.text(1_000, payload + 532, "payload + 0.5 KB (target)", fontsize=7, color="gray")
    mem.set(
        xscale="log",
        xlabel="entries",
        ylabel="bytes per entry",
        title="Memory per entry (~1 KB completion; vectors 384 x float32)",
    )
    mem.set_ylim(bottom=0)
    mem.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    mem.grid(True, which="both", alpha=0.25)
    fig.suptitle(f"semcache store scaling ({mode} run)", fontsize=10)
    fig.tight_layout()
    scaling_png = directory / "scaling.png"
    fig.savefig(scaling_png, dpi=110)
    plt.close(fig)
    return [throughput, scaling_png]
