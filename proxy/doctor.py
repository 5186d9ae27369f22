"""``semcache doctor``: check the settings and everything they point at, one line each.

It builds the same app ``semcache serve`` would run (same settings, same wiring), starts it
without listening, and asks each part: the upstream (``GET /models``, as ``/readyz`` does), the
store (a ping; for Redis, whether it has vector sets), semantic matching (its start-up state)
and the embedder (one test sentence). Nothing is stored and no chat request is sent. Building
the app puts it above every layer, beside ``app.py`` and ``cli.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.app import create_app
from proxy.http.handlers import Services
from proxy.settings import Settings

PROBE_TEXT = "How do I reset my password?"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    """A failed required check makes ``doctor`` exit 1; the others are warnings."""


async def diagnose(settings: Settings) -> list[Check]:
    public = settings.public()
    checks = [
        Check(
            "settings",
            True,
            f"upstream {public['upstream_url']}, store {public['redis_url'] or 'memory'}, "
            f"embedder {settings.embed_model or 'none (exact caching only)'}",
        )
    ]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        svc: Services = app.state.services
        probe = await svc.probe.check()
        # An upstream error's message names its kind already ("upstream unreachable: ...").
        said = probe.detail.startswith(f"upstream {probe.status}")
        detail = probe.detail if said else f"{probe.status}: {probe.detail}"
        checks.append(Check("upstream", probe.ok, detail))
        checks.append(await _store(svc, settings))
        semantic = svc.semantic
        wanted = settings.embed_model is not None and semantic.mode != "off"
        checks.append(Check("semantic matching", semantic.enabled or not wanted, semantic.state,
                            required=False))  # fmt: skip
        if semantic.enabled:
            checks.append(await _embedder(svc))
    return checks


async def _store(svc: Services, settings: Settings) -> Check:
    kind = "memory" if settings.redis_url is None else "redis"
    if not await svc.cache.reachable():
        return Check("store", False, f"{kind}: unreachable (the proxy would serve uncached)")
    if kind == "memory":
        return Check("store", True, "memory: in this process (not shared between replicas)")
    vectors = await svc.cache.supports_vectors()
    detail = "redis: reachable, " + (
        "vector sets available"
        if vectors
        else "no vector sets (semantic needs Redis 8, and an ACL allowing VADD VSIM VREM VCARD)"
    )
    return Check("store", True, detail)


async def _embedder(svc: Services) -> Check:
    body = {"model": "doctor", "messages": [{"role": "user", "content": PROBE_TEXT}]}
    started = time.perf_counter()
    query = await svc.semantic.query(body, namespace="doctor", api_key=None, count=False)
    ms = (time.perf_counter() - started) * 1000
    if query is None:
        return Check("embedder", False, "could not embed a test sentence (see the log above)")
    return Check(
        "embedder",
        True,
        f"{svc.semantic.name}: a test sentence in {ms:.0f} ms ({len(query.vector)} dims)",
    )
