from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import pytest

from tests.support.admin_cli import TOKEN
from tests.support.balancer import find_haproxy
from tests.support.fake_upstream import FakeUpstream
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer
from tests.support.replicas import ReplicaSet


@pytest.fixture(scope="module", params=["memory", "redis"])
def proxy_server(
    request: pytest.FixtureRequest, fake_upstream_server: FakeUpstream
) -> Iterator[ProxyProcess]:
    """``semcache serve`` as a subprocess, on each store, in front of the fake upstream."""
    redis_url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        redis_url = server.url
    with ProxyProcess(fake_upstream_server.url, redis_url=redis_url) as proxy:
        yield proxy


@pytest.fixture
def proxy(proxy_server: ProxyProcess, fake_upstream: FakeUpstream) -> ProxyProcess:
    return proxy_server


@pytest.fixture
def question() -> str:
    """A prompt no other test asks, so tests sharing one proxy never see each other's entries."""
    return f"What is the capital of France? ({uuid.uuid4().hex[:8]})"


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    binary = find_haproxy()
    if binary is None:
        reason = "no haproxy (apt-get install haproxy; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


class StartReplicas(Protocol):
    def __call__(
        self,
        count: int = 2,
        *,
        env: Mapping[str, str] | None = None,
        envs: Sequence[Mapping[str, str]] = (),
    ) -> ReplicaSet: ...


@pytest.fixture
def start_replicas(
    haproxy_binary: str,
    redis_server: RedisServer,
    fake_upstream: FakeUpstream,
    key_prefix: str,
) -> Iterator[StartReplicas]:
    """Starts ``semcache serve`` replicas on the session's redis-server behind a real HAProxy,
    each set under a key prefix of its own (so its counters and secret start empty); all are
    stopped after the test."""
    redis_server.ensure_running()
    started: list[ReplicaSet] = []

    def start(
        count: int = 2,
        *,
        env: Mapping[str, str] | None = None,
        envs: Sequence[Mapping[str, str]] = (),
    ) -> ReplicaSet:
        prefix = f"{key_prefix}{len(started)}:"
        replicas = ReplicaSet(
            haproxy_binary,
            fake_upstream.url,
            redis_server.url,
            count=count,
            env={"SEMCACHE_REDIS_PREFIX": prefix, **(env or {})},
            envs=envs,
        )
        started.append(replicas)
        return replicas.start()

    yield start
    for replicas in started:
        replicas.close()


@pytest.fixture(scope="module", params=["memory", "redis"])
def admin_proxy(
    request: pytest.FixtureRequest, fake_upstream_server: FakeUpstream
) -> Iterator[ProxyProcess]:
    redis_url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        redis_url = server.url
    env = {"SEMCACHE_ADMIN_TOKEN": TOKEN, "SEMCACHE_EMBED_MODEL": "hash:64"}
    with ProxyProcess(
        fake_upstream_server.url,
        redis_url=redis_url,
        env=env,
        extra_args=["--redis-prefix", f"cli-{free_port()}:"],
    ) as proxy:
        yield proxy
