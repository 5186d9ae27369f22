"""In-process counters, rendered as Prometheus text (``/metrics``) and JSON (``/cache/stats``)."""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Protocol


class Served(Protocol):
    """What a hit counts of the entry it served (a :class:`proxy.stores.base.Entry`); a
    protocol, so that the stores, which count their failures here, are not imported."""

    @property
    def id(self) -> str: ...

    @property
    def tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...


class Sized(Protocol):
    """How big the store is (a :class:`proxy.stores.base.StoreStats`)."""

    @property
    def entries(self) -> int: ...

    @property
    def bytes(self) -> int | None: ...


LATENCY_BUCKETS_SECONDS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


RESPONSE_BUCKETS_SECONDS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
MODELS_KEPT = 100
"""Models counted apart in ``saved_by_model``; beyond, ``other`` (client-chosen names)."""
TOP_ENTRIES_KEPT = 10_000


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class ServerCounters:
    """What the HTTP server counts below the app, for the whole process (one per process: the
    server does not know the app's :class:`Metrics`)."""

    def __init__(self) -> None:
        self.request_heads_refused = 0


SERVER = ServerCounters()


class Metrics:
    """Counters only; nothing here does I/O or knows about requests."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.hits: Counter[str] = Counter()
        self.store_errors: Counter[str] = Counter()
        self.stores: Counter[str] = Counter()
        self.not_stored: Counter[str] = Counter()
        self.miss_reasons: Counter[str] = Counter()
        """``X-Cache-Reason`` of misses and bypasses, without the similarity figure."""
        self.upstream_errors: Counter[str] = Counter()
        self.upstream_latency = Histogram(LATENCY_BUCKETS_SECONDS)
        self.tokens_saved = 0
        self.embedding_items: Counter[str] = Counter()
        self.semantic: Counter[str] = Counter()
        self.semantic_rejections: Counter[str] = Counter()
        self.saved_by_model: dict[str, list[int]] = {}
        """model -> [hits, prompt tokens, completion tokens] served from the cache."""
        self.entry_hits: dict[str, int] = {}
        """Hits per entry id (the first ``TOP_ENTRIES_KEPT`` entries hit): the top entries."""
        self.entry_models: dict[str, str] = {}
        self.response_latency: dict[str, Histogram] = {}
        self.audits: Counter[tuple[str, str]] = Counter()
        """(kind, verdict): free, shadow, audit, exact x same, different, dropped, gone..."""

    def request(self, route: str, outcome: str) -> None:
        self.requests[(route, outcome)] += 1

    def hit(self, lookup: str, entry: Served, *, model: str) -> None:
        self.hits[lookup] += 1
        self.tokens_saved += entry.tokens
        self._saved(model, entry.tokens - entry.completion_tokens, entry.completion_tokens)
        hits = self.entry_hits.get(entry.id)
        if hits is not None or len(self.entry_hits) < TOP_ENTRIES_KEPT:
            self.entry_hits[entry.id] = (0 if hits is None else hits) + 1
            self.entry_models.setdefault(entry.id, model)

    def hit_items(self, model: str, tokens: int) -> None:
        """An embeddings request answered from the cache (its items' input tokens)."""
        self.hits["exact"] += 1
        self.tokens_saved += tokens
        self._saved(model, tokens, 0)

    def answered(self, state: str, seconds: float) -> None:
        """A cached route's time to its response head, by ``X-Cache`` (HIT, MISS, BYPASS)."""
        histogram = self.response_latency.get(state)
        if histogram is None:
            histogram = self.response_latency[state] = Histogram(RESPONSE_BUCKETS_SECONDS)
        histogram.observe(seconds)

    def _saved(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        saved = self.saved_by_model.get(model)
        if saved is None:
            if len(self.saved_by_model) >= MODELS_KEPT:
                model = "other"
            saved = self.saved_by_model.setdefault(model, [0, 0, 0])
        saved[0] += 1
        saved[1] += prompt_tokens
        saved[2] += completion_tokens

    def snapshot(self, store: Sized | None) -> dict[str, object]:
        hits = sum(n for (_, outcome), n in self.requests.items() if outcome == "hit")
        misses = sum(n for (_, outcome), n in self.requests.items() if outcome == "miss")
        looked_up = hits + misses
        return {
            "requests": {
                f"{route} {outcome}": n for (route, outcome), n in sorted(self.requests.items())
            },
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / looked_up, 4) if looked_up else 0.0,
            "hits_by_lookup": dict(self.hits),
            "tokens_saved": self.tokens_saved,
            "embedding_items": dict(self.embedding_items),
            "semantic": dict(self.semantic),
            "semantic_rejections": dict(self.semantic_rejections),
            "miss_reasons": dict(self.miss_reasons),
            "audits": {
                f"{kind} {verdict}": n for (kind, verdict), n in sorted(self.audits.items())
            },
            "stored": dict(self.stores),
            "not_stored": dict(self.not_stored),
            "store_errors": dict(self.store_errors),
            "upstream_errors": dict(self.upstream_errors),
            "store": None if store is None else {"entries": store.entries, "bytes": store.bytes},
        }

    def render(self, store: Sized | None) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} {kind}")

        family("semcache_requests_total", "counter", "Requests by route and cache outcome.")
        for (route, outcome), n in sorted(self.requests.items()):
            lines.append(f'semcache_requests_total{{route="{route}",outcome="{outcome}"}} {n}')
        family("semcache_cache_hits_total", "counter", "Cache hits by lookup kind.")
        for lookup in ("exact", "semantic", "coalesced"):
            lines.append(f'semcache_cache_hits_total{{lookup="{lookup}"}} {self.hits[lookup]}')
        family(
            "semcache_tokens_saved_total", "counter", "Upstream tokens not spent thanks to hits."
        )
        lines.append(f"semcache_tokens_saved_total {self.tokens_saved}")
        family("semcache_embedding_items_total", "counter", "Embedding input items by outcome.")
        for outcome, n in sorted(self.embedding_items.items()):
            lines.append(f'semcache_embedding_items_total{{outcome="{outcome}"}} {n}')
        family("semcache_semantic_total", "counter", "Semantic lookup steps by outcome.")
        for outcome, n in sorted(self.semantic.items()):
            lines.append(f'semcache_semantic_total{{outcome="{outcome}"}} {n}')
        family(
            "semcache_semantic_rejections_total",
            "counter",
            "Semantic candidates refused, by reason (a rule's name, verifier, below_threshold...).",
        )
        for reason, n in sorted(self.semantic_rejections.items()):
            lines.append(f'semcache_semantic_rejections_total{{reason="{reason}"}} {n}')
        family(
            "semcache_miss_reasons_total",
            "counter",
            "Misses and bypasses by X-Cache-Reason (no-entry, below-threshold, rejected:...).",
        )
        for reason, n in sorted(self.miss_reasons.items()):
            lines.append(f'semcache_miss_reasons_total{{reason="{reason}"}} {n}')
        family(
            "semcache_audits_total",
            "counter",
            "Cached answers compared with fresh ones, by kind (free, shadow, audit, exact) and "
            "verdict (same, different; dropped, gone, paused, upstream_error, error: not "
            "compared).",
        )
        for (kind, verdict), n in sorted(self.audits.items()):
            lines.append(f'semcache_audits_total{{kind="{kind}",verdict="{verdict}"}} {n}')
        family("semcache_stored_total", "counter", "Entries written to the store.")
        for kind, n in sorted(self.stores.items()):
            lines.append(f'semcache_stored_total{{kind="{kind}"}} {n}')
        family("semcache_not_stored_total", "counter", "Answers served but not stored, by reason.")
        for reason, n in sorted(self.not_stored.items()):
            lines.append(f'semcache_not_stored_total{{reason="{reason}"}} {n}')
        family("semcache_store_errors_total", "counter", "Store operations that failed.")
        for op, n in sorted(self.store_errors.items()):
            lines.append(f'semcache_store_errors_total{{op="{op}"}} {n}')
        family(
            "semcache_request_heads_refused_total",
            "counter",
            "Requests refused before any route: a request line and headers over 64 KB.",
        )
        lines.append(f"semcache_request_heads_refused_total {SERVER.request_heads_refused}")
        family("semcache_upstream_errors_total", "counter", "Upstream requests that failed.")
        for kind, n in sorted(self.upstream_errors.items()):
            lines.append(f'semcache_upstream_errors_total{{kind="{kind}"}} {n}')
        h = self.upstream_latency
        family(
            "semcache_upstream_latency_seconds", "histogram", "Time to upstream response headers."
        )
        cumulative = 0
        for bound, n in zip((*h.buckets, float("inf")), h.counts, strict=True):
            cumulative += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'semcache_upstream_latency_seconds_bucket{{le="{le}"}} {cumulative}')
        lines.append(f"semcache_upstream_latency_seconds_sum {h.sum}")
        lines.append(f"semcache_upstream_latency_seconds_count {h.count}")
        family(
            "semcache_response_seconds",
            "histogram",
            "Cached OpenAI-format routes: time to the response head, by X-Cache.",
        )
        for state, hist in sorted(self.response_latency.items()):
            cumulative = 0
            for bound, n in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'semcache_response_seconds_bucket{{cache="{state}",le="{le}"}} {cumulative}'
                )
            lines.append(f'semcache_response_seconds_sum{{cache="{state}"}} {hist.sum}')
            lines.append(f'semcache_response_seconds_count{{cache="{state}"}} {hist.count}')
        if store is not None:
            family("semcache_store_entries", "gauge", "Entries in the store.")
            lines.append(f"semcache_store_entries {store.entries}")
            if store.bytes is not None:
                family("semcache_store_bytes", "gauge", "Bytes held by the store.")
                lines.append(f"semcache_store_bytes {store.bytes}")
        return "\n".join(lines) + "\n"
