"""N ``semcache serve`` processes on one Redis behind a real HAProxy (tests and bench)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.support.lifecycle import Started

from .balancer import Balancer
from .proxy_process import ProxyProcess


class ReplicaSet(Started):
    """Replicas ``r0``, ``r1``... each a ``semcache serve`` subprocess on ``redis_url``, and the
    balancer in front. ``env`` applies to every replica, ``envs[i]`` to replica ``i`` only."""

    def __init__(
        self,
        haproxy: str,
        upstream_url: str,
        redis_url: str | None,
        *,
        count: int = 2,
        env: Mapping[str, str] | None = None,
        envs: Sequence[Mapping[str, str]] = (),
        check_interval_ms: int = 200,
        log_requests: bool = True,
    ) -> None:
        self.proxies = {
            f"r{i}": ProxyProcess(
                upstream_url,
                redis_url=redis_url,
                env={**(env or {}), **(envs[i] if i < len(envs) else {})},
            )
            for i in range(count)
        }
        self.balancer = Balancer(
            haproxy,
            {name: p.port for name, p in self.proxies.items()},
            check_interval_ms=check_interval_ms,
            log_requests=log_requests,
        )

    @property
    def url(self) -> str:
        return self.balancer.url

    @property
    def base_url(self) -> str:
        return self.balancer.base_url

    def start(self) -> ReplicaSet:
        try:
            for proxy in self.proxies.values():
                proxy.start()
            self.balancer.start()
            for name in self.proxies:
                self.balancer.wait_until(name, "UP")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.balancer.close()
        for proxy in self.proxies.values():
            proxy.close()
