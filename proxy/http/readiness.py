"""``GET /readyz``: can this process answer requests right now? (``/healthz`` only says it runs.)

Ready means the upstream answers: without it every miss is a 502, whatever the cache holds. The
upstream is asked ``GET /models`` (the OpenAI API reference's cheapest authenticated route;
Ollama's OpenAI layer has it too) at most once per ``PROBE_SECONDS``: however often a balancer
polls, the upstream sees one probe per interval, and concurrent polls share it. Any HTTP answer
below 500 means it is there; a 401 or 403 counts only when semcache sends its own key
(``SEMCACHE_UPSTREAM_API_KEY``) — then every request without a client key would fail too.

A store or embedder outage leaves the proxy serving without a cache (or exact-only), so it is
reported (``degraded``) but keeps the process in the balancer: taking it out would not help.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from proxy.errors import UpstreamError
from proxy.upstream import Upstream

PROBE_SECONDS = 10.0
"""How long a probe's verdict stands."""
PROBE_TIMEOUT_SECONDS = 5.0
MODELS_PATH = "/models"


@dataclass(frozen=True, slots=True)
class Probe:
    status: str
    """``ok``, ``unauthorized`` (semcache's own key refused), ``error`` (5xx) or
    ``unreachable`` (no answer, or none within ``PROBE_TIMEOUT_SECONDS``)."""
    detail: str
    at: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class UpstreamProbe:
    def __init__(
        self,
        upstream: Upstream,
        *,
        own_key: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._own_key = own_key
        self._clock = clock
        self._last: Probe | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> Probe:
        """The last verdict while it is fresh, else a new probe (one at a time)."""
        if self._fresh(self._last):
            assert self._last is not None
            return self._last
        async with self._lock:
            if not self._fresh(self._last):
                self._last = await self._probe()
            assert self._last is not None
            return self._last

    def age_seconds(self, probe: Probe) -> float:
        return max(0.0, self._clock() - probe.at)

    def _fresh(self, probe: Probe | None) -> bool:
        return probe is not None and self._clock() - probe.at < PROBE_SECONDS

    async def _probe(self) -> Probe:
        url = self._upstream.url(MODELS_PATH)
        try:
            with anyio.fail_after(PROBE_TIMEOUT_SECONDS):
                response = await self._upstream.send(
                    "GET",
                    url,
                    headers=self._upstream.forward_headers([]),
                    content=b"",
                    background=True,  # never queued behind, nor counted against, clients
                )
                await self._upstream.read(response)
        except TimeoutError:
            return Probe("unreachable", f"no answer in {PROBE_TIMEOUT_SECONDS:g} s", self._clock())
        except UpstreamError as exc:
            return Probe("unreachable", exc.message, self._clock())
        status = response.status_code
        if status >= 500:
            return Probe("error", f"GET {MODELS_PATH} answered {status}", self._clock())
        if status in (401, 403) and self._own_key:
            return Probe(
                "unauthorized",
                f"GET {MODELS_PATH} answered {status} to SEMCACHE_UPSTREAM_API_KEY",
                self._clock(),
            )
        return Probe("ok", f"GET {MODELS_PATH} answered {status}", self._clock())
