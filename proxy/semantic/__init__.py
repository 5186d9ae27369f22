"""The semantic side: embedders, the verifier and its reader, and the lookup that joins them.

:func:`semantic_cache` builds a :class:`SemanticCache` from the settings: which embedder finds
neighbours, which verifier judges them (the learned one when the local reader can run, else
cosine with the embedder's calibration), and the reader that sketches prompts for it. What a
lookup compares, and among which entries, is :mod:`proxy.semantic.partition`.

Code outside this package imports from here only:

- :func:`semantic_cache`, and :class:`SemanticCache` (``lookup.py``) with what a lookup takes
  and gives: :class:`SemanticQuery`, :class:`Lookup`, :class:`SemanticHit`, and
  :class:`Judged`, one neighbour and its verdict for ``POST /cache/explain``;
- :func:`semantic_text` (``partition.py``): the text a lookup compares, if any;
- :class:`Candidate` (``audit.py``): a lookup's best candidate, served or not;
- :class:`Adaptive` (``adaptive.py``): the adaptive line, and ``SYNC_SECONDS``, how often
  each process adds its evidence to the store's counters and re-reads them; :func:`report`
  (``adaptive_report.py``), the line and its evidence per group, and :func:`render`, that
  report as Prometheus gauges;
- the :class:`Embedder`, :class:`Reader` (``embedders.py``) and :class:`Verifier`
  (``verifier.py``) protocols a caller may pass in, and :func:`load_sentence_transformer`
  with its :class:`EmbedderError`: ``semcache serve`` loads a ``local:`` model before it
  starts.

It imports the upstream (the HTTP embedder, the audit's second asking), the stores and the
shared top-level modules, never the cache or the face above it.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from proxy.metrics import Metrics
from proxy.semantic.adaptive import SYNC_SECONDS, Adaptive
from proxy.semantic.adaptive_report import render, report
from proxy.semantic.audit import Auditor, Candidate
from proxy.semantic.embedders import (
    READER_MODEL,
    Embedder,
    EmbedderError,
    HashEmbedder,
    LocalEmbedder,
    Reader,
    create_embedder,
    load_sentence_transformer,
)
from proxy.semantic.judge import AnswerJudge, EmbedTexts
from proxy.semantic.lookup import Judged, Lookup, SemanticCache, SemanticHit, SemanticQuery
from proxy.semantic.partition import semantic_text
from proxy.semantic.verifier import (
    UNCALIBRATED_COSINE,
    CosineVerifier,
    LearnedVerifier,
    Verifier,
    calibrated_cosine,
    load_model,
)
from proxy.settings import Settings
from proxy.stores import Cache
from proxy.upstream import Upstream

__all__ = [
    "SYNC_SECONDS",
    "Adaptive",
    "Candidate",
    "Embedder",
    "EmbedderError",
    "Judged",
    "Lookup",
    "Reader",
    "SemanticCache",
    "SemanticHit",
    "SemanticQuery",
    "Verifier",
    "load_sentence_transformer",
    "render",
    "report",
    "semantic_cache",
    "semantic_text",
]


def semantic_cache(
    settings: Settings,
    cache: Cache,
    upstream: Upstream,
    metrics: Metrics,
    *,
    embedder: Embedder | None = None,
    reader: Reader | None = None,
    verifier: Verifier | None = None,
) -> SemanticCache:
    """Collaborators passed in (tests, benches) are used as they are."""
    model = None
    if verifier is None and (embedder is not None or settings.embed_model is not None):
        model = load_model()
    if embedder is None and settings.embed_model is not None:
        embedder = create_embedder(
            settings.embed_model,
            upstream=upstream,
            cache=cache,
            url=settings.embed_url or settings.upstream_url,
            api_key=settings.embed_api_key or settings.upstream_api_key,
            ttl=settings.ttl_seconds,
            own_endpoint=settings.embed_url not in (None, settings.upstream_url),
            projection=None if model is None else model.projection,
        )
    fallback = CosineVerifier(_fallback_cosine(settings, embedder))
    if verifier is None:
        if model is None or isinstance(embedder, HashEmbedder):
            verifier = fallback
        else:
            verifier = LearnedVerifier(model, settings.max_wrong_hit_rate)
    if reader is None and verifier.reads and model is not None:
        if isinstance(embedder, LocalEmbedder) and embedder.reads:
            reader = embedder
        else:
            reader = LocalEmbedder(READER_MODEL, projection=model.projection)
    adaptive = Adaptive(cache, settings.max_wrong_hit_rate, enabled=settings.adaptive)
    judge = AnswerJudge(_judge_embedder(embedder, reader), min_similarity=settings.judge_similarity)
    auditor = Auditor(
        cache,
        upstream,
        adaptive,
        judge,
        metrics,
        rate=settings.audit_rate,
        concurrency=settings.audit_concurrency,
    )
    return SemanticCache(
        cache,
        embedder,
        metrics,
        verifier=verifier,
        reader=reader,
        fallback=fallback,
        min_similarity=settings.similarity,
        max_age_seconds=settings.semantic_max_age_seconds,
        max_chars=settings.semantic_max_chars,
        timeout_seconds=settings.embed_timeout_seconds,
        adaptive=adaptive,
        auditor=auditor,
        mode=settings.semantic_mode,
    )


def _judge_embedder(embedder: Embedder | None, reader: Reader | None) -> EmbedTexts | None:
    """What embeds answers for the judge: the local model when there is one (in a worker
    thread), else the embedder when it needs no key per request (hash); else None, and the
    judge compares words."""
    local = reader if isinstance(reader, LocalEmbedder) else embedder
    if isinstance(local, LocalEmbedder):
        model = local

        async def encode(texts: list[str]) -> npt.NDArray[np.float32]:
            return await anyio.to_thread.run_sync(model.encode, texts)

        return encode
    if isinstance(embedder, HashEmbedder):
        hashed = embedder

        async def encode_hashed(texts: list[str]) -> npt.NDArray[np.float32]:
            return np.stack([hashed.encode(t) for t in texts])

        return encode_hashed
    return None


def _fallback_cosine(settings: Settings, embedder: Embedder | None) -> float:
    if settings.calibration is None or embedder is None:
        return UNCALIBRATED_COSINE
    return calibrated_cosine(Path(settings.calibration), embedder.name, settings.max_wrong_hit_rate)
