"""Which Redis shape a URL and the settings name (no sockets: clients connect on first use)."""

from __future__ import annotations

import re

import pytest

from proxy.errors import SettingsError
from proxy.redis_urls import parse_sentinel_url
from proxy.settings import Settings
from proxy.stores.redis_clients import connect


def test_sentinel_url_names_every_sentinel_the_service_and_the_masters_auth() -> None:
    sentinels, service, options = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,sentinel-b:26380/cache-master?db=3"
    )
    assert sentinels == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    assert service == "cache-master"
    assert options == {"username": "app", "password": "p@ss", "db": 3}


def test_sentinel_url_without_auth_or_db_has_no_options() -> None:
    assert parse_sentinel_url("redis+sentinel://h:1/m") == ([("h", 1)], "m", {})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h:1/", "the path must be the service name"),
        ("redis+sentinel://h:1/a/b", "the path must be the service name"),
        ("redis+sentinel://h/m", "each sentinel must be host:port"),
        ("redis+sentinel://h:1,:2/m", "each sentinel must be host:port"),
        ("redis+sentinel://h:1/m?db=x", "db must be a number"),
    ],
)
def test_bad_sentinel_urls_are_settings_errors(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_sentinel_url(url)


def test_each_shape_gets_its_clients() -> None:
    standalone = connect(
        "rediss://u:p@h:6380/2", cluster=False, timeout_seconds=1, search_connections=4
    )
    cluster = connect("redis://h:7000", cluster=True, timeout_seconds=1, search_connections=4)
    sentinel = connect(
        "redis+sentinel://h:26379/m", cluster=False, timeout_seconds=1, search_connections=4
    )
    assert (standalone.kind, len(standalone.searches)) == ("standalone", 4)
    assert (cluster.kind, len(cluster.searches), cluster.slot_map is not None) == (
        "cluster",
        4,
        True,
    )
    assert (sentinel.kind, sentinel.sentinel is not None) == ("sentinel", True)


def test_cluster_flag_refuses_a_sentinel_or_unix_url() -> None:
    with pytest.raises(SettingsError, match="SEMCACHE_REDIS_CLUSTER"):
        connect("redis+sentinel://h:1/m", cluster=True, timeout_seconds=1, search_connections=1)
    with pytest.raises(SettingsError, match="SEMCACHE_REDIS_CLUSTER needs"):
        Settings(redis_url="unix:///run/redis.sock", redis_cluster=True)


def test_settings_accept_each_shape_and_mask_the_password() -> None:
    for url in ("redis://h", "rediss://h", "unix:///s.sock", "redis+sentinel://h:1/m"):
        assert Settings(redis_url=url).redis_url == url
    assert Settings(redis_url="redis://h:7000", redis_cluster=True).redis_cluster
    public = Settings(redis_url="redis+sentinel://app:hunter22@h:1,g:2/m").public()
    assert public["redis_url"] == "redis+sentinel://app:***@h:1,g:2/m"


@pytest.mark.parametrize(
    ("url", "cluster", "message"),
    [
        ("redis://localhost:port/0", False, "not a valid Redis URL: Port could not be cast"),
        ("redis://localhost:99999/0", False, "not a valid Redis URL: Port out of range"),
        ("redis://h/0?socket_timeout=abc", False, "Invalid value for 'socket_timeout'"),
        ("unix:///run/redis.sock?db=x", False, "Invalid value for 'db'"),
        ("redis://h:6379/zero", False, "the path must be the database number"),
        ("redis://h/0?decode_responses=True", False, "decode_responses is not supported"),
        ("unix:///s.sock?decode_responses=yes", False, "decode_responses is not supported"),
        ("redis+sentinel://sentinel-a/mymaster", False, "each sentinel must be host:port"),
        ("redis+sentinel://h:70000/m", False, "each sentinel must be host:port"),
        ("redis://h:7000/1", True, "SEMCACHE_REDIS_CLUSTER: a Redis Cluster has database 0"),
        ("redis://h:7000?db=2", True, "SEMCACHE_REDIS_CLUSTER: a Redis Cluster has database 0"),
    ],
)
def test_settings_read_the_redis_url_as_the_store_will(
    url: str, cluster: bool, message: str
) -> None:
    """A malformed URL is a SettingsError when the settings are made, not a traceback (or a
    RedisClusterException) when the store is built."""
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings(redis_url=url, redis_cluster=cluster)


def test_a_cluster_url_may_name_database_0() -> None:
    for url in ("redis://h:7000/0", "redis://h:7000?db=0", "rediss://h:7000/"):
        assert Settings(redis_url=url, redis_cluster=True).redis_cluster
