"""The Redis store's lean client (GET, SET, VSIM): pipelining, failures, reconnects, wire."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
import redis

from proxy.stores.resp import Address, ProtocolError, ReplyError, RespClient
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def client(url: str, timeout_seconds: float = 1.0) -> RespClient:
    return RespClient(Address.from_url(url), timeout_seconds=timeout_seconds)


@pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {}), ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)
async def test_concurrent_commands_share_a_connection_and_get_their_own_replies(
    redis_url: str, key_prefix: str
) -> None:
    c = client(redis_url)
    keys = [f"{key_prefix}{i}" for i in range(200)]
    await asyncio.gather(*(c.set(k, k.encode() * 50, px=60_000) for k in keys))
    got = await asyncio.gather(*(c.get(k) for k in [*keys, key_prefix + "absent"]))
    assert got == [k.encode() * 50 for k in keys] + [None]
    with redis.Redis.from_url(redis_url) as plain:
        ours = [x for x in plain.client_list() if x["cmd"] in ("get", "set")]
        assert 0 < plain.pttl(keys[0]) <= 60_000
    assert len(ours) == 1
    await c.aclose()


async def test_an_error_reply_fails_its_own_command_only(redis_url: str, key_prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as plain:
        plain.rpush(key_prefix + "list", b"x")
        plain.set(key_prefix + "ok", b"fine")
    c = client(redis_url)
    wrong, ok = await asyncio.gather(
        c.get(key_prefix + "list"), c.get(key_prefix + "ok"), return_exceptions=True
    )
    assert isinstance(wrong, ReplyError)
    assert "WRONGTYPE" in str(wrong)
    assert ok == b"fine"
    await c.aclose()


async def test_a_large_value_arrives_in_pieces(redis_url: str) -> None:
    value = bytes(range(256)) * 8192  # 2 MiB: many reads
    c = client(redis_url)
    await c.set("big", value, px=60_000)
    assert await c.get("big") == value
    await c.aclose()


async def test_a_frozen_server_times_out_every_pending_command(
    redis_server: RedisServer, redis_url: str
) -> None:
    c = client(redis_url, timeout_seconds=0.2)
    await c.set("k", b"v", px=60_000)
    redis_server.pause()
    try:
        with anyio.fail_after(5):
            replies = await asyncio.gather(*(c.get("k") for _ in range(5)), return_exceptions=True)
    finally:
        redis_server.resume()
    assert all(isinstance(r, TimeoutError) for r in replies), replies
    assert await c.get("k") == b"v"  # a new connection
    await c.aclose()


async def test_a_restarted_server_costs_no_failed_command(
    redis_server: RedisServer, redis_url: str
) -> None:
    c = client(redis_url)
    assert await c.get("k") is None
    # The event loop does not run during the restart: the next command is written to the old,
    # dead connection and retried once on a new one.
    redis_server.restart()
    assert await c.get("k") is None
    await c.aclose()


async def test_a_stopped_server_fails_commands_with_connection_errors(
    redis_server: RedisServer, redis_url: str
) -> None:
    c = client(redis_url)
    await c.set("k", b"v", px=60_000)
    redis_server.stop()
    replies = await asyncio.gather(*(c.get("k") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in replies), replies
    redis_server.start()
    assert await c.get("k") is None
    await c.aclose()


async def test_a_cancelled_caller_leaves_the_replies_in_order(redis_url: str) -> None:
    c = client(redis_url)
    await c.set("a", b"1", px=60_000)
    await c.set("b", b"2", px=60_000)
    first = asyncio.ensure_future(c.get("a"))
    second = asyncio.ensure_future(c.get("b"))
    await asyncio.sleep(0)  # both written
    first.cancel()
    assert await second == b"2"
    assert await c.get("a") == b"1"
    await c.aclose()


# -- wire details, against a scripted server ----------------------------------------------------


@asynccontextmanager
async def scripted(reply: Callable[[bytes], list[bytes]]) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that answers each read with ``reply(data)``, one write per element."""
    received: list[bytes] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while data := await reader.read(65536):
                received.append(data)
                for piece in reply(data):
                    writer.write(piece)
                    await writer.drain()
        except ConnectionError:
            pass  # the client aborts its connection when it closes
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://u%40x:p%3Aw@127.0.0.1:{port}/3", received
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


def logged_in(*pieces: bytes) -> Callable[[bytes], list[bytes]]:
    """For ``scripted``: OK to the AUTH and SELECT a client of its URL sends first (in one
    write), then ``pieces``, one write each, to every read."""

    def reply(data: bytes) -> list[bytes]:
        if data.startswith(b"*3\r\n$4\r\nAUTH"):
            return [b"+OK\r\n+OK\r\n"]
        return list(pieces)

    return reply


async def test_auth_and_select_go_first_and_replies_may_arrive_byte_by_byte() -> None:
    reply = logged_in(*[bytes([b]) for b in b"$5\r\nhello\r\n:7\r\n$-1\r\n"])

    async with scripted(reply) as (url, received):
        c = client(url)
        assert await c.get("k") == b"hello"
        await c.aclose()
    assert received[0] == (
        b"*3\r\n$4\r\nAUTH\r\n$3\r\nu@x\r\n$3\r\np:w\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
    )
    assert received[1] == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


async def test_commands_of_one_event_loop_turn_go_out_in_one_write() -> None:
    reply = logged_in(b"$1\r\na\r\n$1\r\nb\r\n$-1\r\n")

    async with scripted(reply) as (url, received):
        c = client(url)
        got = await asyncio.gather(c.get("a"), c.get("b"), c.get("c"))
        assert list(got) == [b"a", b"b", None]
        await c.aclose()
    assert received[1:] == [
        b"".join(b"*2\r\n$3\r\nGET\r\n$1\r\n%s\r\n" % k for k in (b"a", b"b", b"c"))
    ]


async def test_a_rejected_password_fails_the_connection() -> None:
    def reply(data: bytes) -> list[bytes]:
        return [b"-WRONGPASS invalid username-password pair\r\n+OK\r\n"]

    async with scripted(reply) as (url, _):
        c = client(url)
        with pytest.raises(ReplyError, match="WRONGPASS"):
            await c.get("k")
        await c.aclose()


async def test_an_unknown_reply_is_a_protocol_error() -> None:
    reply = logged_in(b"%1\r\n+a\r\n+b\r\n")  # a RESP3 map: never asked for

    async with scripted(reply) as (url, _):
        c = client(url)
        with pytest.raises(ProtocolError):
            await c.get("k")
        await c.aclose()


async def test_array_replies_nested_empty_and_nil(redis_url: str, key_prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as plain:
        plain.rpush(key_prefix + "list", b"a", b"", b"c")
        plain.xadd(key_prefix + "stream", {b"f": b"v"}, id=b"1-1")
    c = client(redis_url)
    listed, stream, empty, nil, after = await asyncio.gather(
        c.command(b"LRANGE", (key_prefix + "list").encode(), b"0", b"-1"),
        c.command(b"XRANGE", (key_prefix + "stream").encode(), b"-", b"+"),
        c.command(b"LRANGE", (key_prefix + "absent").encode(), b"0", b"-1"),
        c.command(b"BLPOP", (key_prefix + "absent").encode(), b"0.01"),
        c.get(key_prefix + "absent"),
    )
    assert listed == [b"a", b"", b"c"]
    assert stream == [[b"1-1", [b"f", b"v"]]]
    assert empty == []
    assert nil is None
    assert after is None  # the replies after an array are still matched in order
    await c.aclose()


async def test_an_array_split_anywhere_is_read_whole() -> None:
    array = b"*3\r\n$2\r\nel\r\n*2\r\n:5\r\n$-1\r\n+OK\r\n"

    reply = logged_in(*[bytes([b]) for b in array + b"$3\r\nend\r\n"])

    async with scripted(reply) as (url, _):
        c = client(url)
        got = await asyncio.gather(c.command(b"VSIM", b"x"), c.get("k"))
        assert list(got) == [[b"el", [5, None], b"OK"], b"end"]
        await c.aclose()


async def test_an_error_inside_an_array_is_a_protocol_error() -> None:
    reply = logged_in(b"*2\r\n$1\r\na\r\n-ERR inside\r\n")

    async with scripted(reply) as (url, _):
        c = client(url)
        with pytest.raises(ProtocolError):
            await c.command(b"VSIM", b"x")
        await c.aclose()


def test_addresses_from_urls() -> None:
    assert Address.from_url("redis://h:7000/2") == Address(host="h", port=7000, db=2)
    assert Address.from_url("unix:///tmp/r.sock?db=1").path == "/tmp/r.sock"
    tls = Address.from_url("rediss://h?ssl_cert_reqs=none").ssl_context
    assert tls is not None
    assert not tls.check_hostname


def test_tls_options_in_the_url_are_honoured_as_redis_py_does() -> None:
    strict = Address.from_url("rediss://h:6380/0").ssl_context
    assert strict is not None
    assert (strict.check_hostname, strict.verify_mode) == (True, ssl.CERT_REQUIRED)
    relaxed = Address.from_url("rediss://h:6380/0?ssl_check_hostname=false").ssl_context
    assert relaxed is not None
    assert (relaxed.check_hostname, relaxed.verify_mode) == (False, ssl.CERT_REQUIRED)
    optional = Address.from_url("rediss://h/0?ssl_cert_reqs=optional&ssl_check_hostname=false")
    assert optional.ssl_context is not None
    assert optional.ssl_context.verify_mode == ssl.CERT_OPTIONAL
