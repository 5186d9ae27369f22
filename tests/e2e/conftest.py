from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer


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
