"""Reading a Redis URL as the store will, without I/O: standalone and cluster URLs as redis-py
reads them, and the Sentinel form ``redis+sentinel://[user:pass@]host:port[,host:port...]/service``
semcache reads itself. The settings check the URL with it when they are made, the store
(:mod:`proxy.stores.redis_clients`) connects with it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio.connection import parse_url

from proxy.errors import SettingsError

SENTINEL_SCHEME = "redis+sentinel"


def check_url(url: str, *, cluster: bool) -> None:
    """Read ``url`` as :func:`connect` will, without I/O: a malformed URL (a port that is not
    a number, no sentinel port, ``?socket_timeout=abc``, a cluster URL naming a database) is a
    :class:`SettingsError` when the settings are made, not a traceback when the store is."""
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
        return
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise SettingsError(f"SEMCACHE_REDIS_URL is not a valid Redis URL: {exc}") from None
    if options.get("decode_responses"):
        # redis-py would hand the store text where it reads bytes: the packed entries, the
        # namespace secret (a UnicodeDecodeError at start-up), the keys a flush compares.
        raise SettingsError(
            "SEMCACHE_REDIS_URL: decode_responses is not supported (the store reads bytes)"
        )
    parts = urlsplit(url)
    path = unquote(parts.path).strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise SettingsError("SEMCACHE_REDIS_URL: the path must be the database number: /0")
    if cluster and options.get("db", 0) != 0:
        raise SettingsError(
            "SEMCACHE_REDIS_CLUSTER: a Redis Cluster has database 0 only; "
            "the URL must not name another (/N or ?db=N)"
        )


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """``redis+sentinel://[user:pass@]host:port[,host:port...]/service[?db=N]``: the sentinels,
    the service name and the master's connection options. Raises :class:`SettingsError`."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("SEMCACHE_REDIS_URL: each sentinel must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    service = unquote(parts.path.strip("/"))
    if not service or "/" in service:
        raise SettingsError("SEMCACHE_REDIS_URL: the path must be the service name: /mymaster")
    options: dict[str, Any] = {}
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if has_password:
            options["password"] = unquote(password)
    db = parse_qs(parts.query).get("db")
    if db:
        if not db[0].isdigit():
            raise SettingsError("SEMCACHE_REDIS_URL: db must be a number")
        options["db"] = int(db[0])
    return sentinels, service, options
