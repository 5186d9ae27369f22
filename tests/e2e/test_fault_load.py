"""Faults under concurrent load, against real processes: ``semcache serve``, a real
``redis-server`` killed, frozen and restarted, the fake upstream over real HTTP, and malformed
HTTP over raw sockets. Smaller versions of the scenarios of ``bench/faults.py``."""

from __future__ import annotations

import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
import httpx
import pytest

from tests.support import fuzz
from tests.support.fake_upstream import FakeUpstream
from tests.support.load import (
    Load,
    PromptMix,
    Result,
    ask,
    belongs,
    client_for,
    message_content,
    wait_until,
)
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer
from tests.support.upstream_faults import FAULTS, run_faults

pytestmark = pytest.mark.anyio

AUTH = {"authorization": "Bearer sk-fault-load"}


def tag() -> str:
    return uuid.uuid4().hex[:8]


def problems(results: list[Result]) -> list[str]:
    """Failed or wrong answers, readable in an assertion message."""
    return [
        f"{r.prompt!r}: {r.status} {r.problem} {r.content!r}"
        for r in results
        if r.failed or r.wrong
    ]


# -- Redis faults under load -------------------------------------------------------------------


async def test_redis_killed_and_restarted_under_load_fails_no_request_and_caching_resumes(
    redis_server: RedisServer, redis_url: str, fake_upstream: FakeUpstream
) -> None:
    with ProxyProcess(fake_upstream.url, redis_url=redis_url) as proxy:
        async with client_for(proxy.url) as client:
            load = Load(client, PromptMix(tag()), workers=12)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                assert await wait_until(lambda: hit_count(load.results) >= 10, within=5)
                await anyio.to_thread.run_sync(redis_server.kill)
                killed = time.monotonic()
                await wait_until(
                    lambda: time.monotonic() - killed >= 1.0 and len(load.since(killed)) >= 50,
                    within=4,
                )
                await anyio.to_thread.run_sync(redis_server.start)
                restarted = time.monotonic()
                resumed = await wait_until(lambda: hit_count(load.since(restarted)) >= 5, within=6)
                stop.set()

    assert problems(load.results) == []
    down = [r for r in load.since(killed) if r.started + r.seconds < restarted]
    assert len(down) >= 20, "too little load while Redis was down"
    assert hit_count(down) == 0, "hits while Redis was dead: it was not really down"
    assert resumed, "no cache hit within 6 s of Redis coming back"


def hit_count(results: list[Result]) -> int:
    return sum(r.hit for r in results)


async def test_redis_frozen_requests_still_succeed_quickly(
    redis_server: RedisServer, redis_url: str, fake_upstream: FakeUpstream
) -> None:
    env = {"SEMCACHE_REDIS_TIMEOUT": "0.2"}
    with ProxyProcess(fake_upstream.url, redis_url=redis_url, env=env) as proxy:
        async with client_for(proxy.url, timeout=5.0) as client:
            load = Load(client, PromptMix(tag()), workers=12)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(load.run, stop)
                assert await wait_until(lambda: hit_count(load.results) >= 10, within=5)
                redis_server.pause()
                paused = time.monotonic()
                try:
                    # The fault lasts 2 s; the load runs meanwhile.
                    await wait_until(lambda: time.monotonic() - paused >= 2.0, within=3)
                finally:
                    redis_server.resume()
                resumed = time.monotonic()
                back = await wait_until(lambda: hit_count(load.since(resumed)) >= 5, within=5)
                stop.set()

    assert problems(load.results) == []
    frozen = [r for r in load.results if paused <= r.started < resumed]
    assert len(frozen) >= 20, "too little load while Redis was frozen"
    # Lookups time out (0.2 s) and fall back to the upstream: requests started while Redis was
    # frozen finish while it is still frozen instead of waiting for it.
    finished_while_frozen = [r for r in frozen if r.started + r.seconds < resumed]
    assert len(finished_while_frozen) >= 0.8 * len(frozen)
    assert back, "no cache hit within 5 s of Redis resuming"


# -- Upstream and embedder faults --------------------------------------------------------------


async def test_upstream_faults_reach_the_client_as_they_are_and_are_never_stored(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.slow_seconds = 1.5
    env = {"SEMCACHE_UPSTREAM_TIMEOUT": "0.5"}
    with ProxyProcess(fake_upstream.url, env=env) as proxy:
        async with client_for(proxy.url) as client:
            run = await run_faults(client, fake_upstream)

    assert run.problems == []
    assert run.requests == sum(f.burst + 1 for f in FAULTS)
    assert run.passed == run.requests
    assert run.stored == 0


async def test_embedder_down_exact_hits_still_work(fake_upstream: FakeUpstream) -> None:
    env = {"SEMCACHE_EMBED_MODEL": "fake-error-500"}
    prompts = [f"embedder down {i} [{tag()}]" for i in range(10)]
    with ProxyProcess(fake_upstream.url, env=env) as proxy:
        async with client_for(proxy.url) as client:
            assert (await client.get("/cache/stats")).json()["semantic_enabled"] is True
            results: list[Result] = []
            for round_ in range(2):
                async with anyio.create_task_group() as tg:
                    for prompt in prompts:
                        tg.start_soon(partial(_ask_into, results, client, prompt, round_ == 1))

    assert problems(results) == []
    assert [r.cache for r in results[10:]] == ["HIT"] * 10
    assert fake_upstream.calls("/v1/embeddings") >= 10, "the embedder was never tried"
    assert fake_upstream.calls() == 10


async def _ask_into(
    results: list[Result], client: httpx.AsyncClient, prompt: str, stream: bool
) -> None:
    results.append(await ask(client, prompt, stream=stream, headers=AUTH))


# -- Coalescing --------------------------------------------------------------------------------


@asynccontextmanager
async def started(*proxies: ProxyProcess) -> AsyncIterator[None]:
    """Start the proxies side by side (each takes a second or two), close them all after."""
    try:
        async with anyio.create_task_group() as tg:
            for proxy in proxies:
                tg.start_soon(anyio.to_thread.run_sync, proxy.start)
        yield
    finally:
        for proxy in proxies:
            proxy.close()


async def burst(targets: list[tuple[httpx.AsyncClient, int]], prompt: str) -> list[Result]:
    results: list[Result] = []

    async def one(client: httpx.AsyncClient) -> None:
        results.append(await ask(client, prompt, model="fake-slow", headers=AUTH))

    async with anyio.create_task_group() as tg:
        for client, count in targets:
            for _ in range(count):
                tg.start_soon(one, client)
    return results


async def test_hundred_identical_concurrent_misses_make_one_upstream_call(
    fake_upstream: FakeUpstream,
) -> None:
    fake_upstream.slow_seconds = 1.0
    prompt = f"one call for all [{tag()}]"
    with ProxyProcess(fake_upstream.url) as proxy:
        async with client_for(proxy.url) as client:
            results = await burst([(client, 100)], prompt)

    assert problems(results) == []
    assert fake_upstream.calls() == 1
    assert len({r.content for r in results}) == 1
    assert [r.cache for r in results].count("MISS") == 1
    assert any(r.lookup == "coalesced" for r in results)


async def test_two_proxies_on_one_redis_make_one_upstream_call(
    redis_url: str, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.slow_seconds = 1.0
    prompt = f"one call for two replicas [{tag()}]"
    first = ProxyProcess(fake_upstream.url, redis_url=redis_url)
    second = ProxyProcess(fake_upstream.url, redis_url=redis_url)
    async with (
        started(first, second),
        client_for(first.url) as one,
        client_for(second.url) as two,
    ):
        results = await burst([(one, 50), (two, 50)], prompt)

    assert problems(results) == []
    assert fake_upstream.calls() == 1
    assert len({r.content for r in results}) == 1


def patient_replicas(upstream: FakeUpstream, redis_url: str) -> tuple[ProxyProcess, ProxyProcess]:
    """Two replicas on one Redis whose followers wait up to 30 s for a leader."""
    env = {"SEMCACHE_COALESCE_TIMEOUT": "30"}
    return (
        ProxyProcess(upstream.url, redis_url=redis_url, env=env),
        ProxyProcess(upstream.url, redis_url=redis_url, env=env),
    )


async def test_replica_dying_while_leading_does_not_stall_the_other_replicas(
    redis_url: str, fake_upstream: FakeUpstream
) -> None:
    fake_upstream.slow_seconds = 1.0
    prompt = f"leader dies [{tag()}]"
    leader, other = patient_replicas(fake_upstream, redis_url)
    async with (
        started(leader, other),
        client_for(leader.url) as one,
        client_for(other.url, timeout=5.0) as two,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(ask, one, prompt, model="fake-slow"))
            assert await wait_until(lambda: fake_upstream.calls() == 1, within=5)
            leader.send_signal(signal.SIGKILL)  # it holds the lock and dies
            result = await ask(two, prompt, model="fake-slow")
        if result.failed:
            other.send_signal(signal.SIGKILL)  # it is still waiting for the lock
    assert problems([result]) == []


async def test_a_leader_slower_than_the_lock_keeps_it_and_the_other_replica_waits(
    redis_url: str, fake_upstream: FakeUpstream
) -> None:
    """The replica lock lives LOCK_TTL_SECONDS (3 s) and is renewed while the leader works:
    a 4.5 s upstream call still makes one call for both replicas."""
    fake_upstream.slow_seconds = 4.5
    prompt = f"slow leader [{tag()}]"
    leader, other = patient_replicas(fake_upstream, redis_url)
    async with (
        started(leader, other),
        client_for(leader.url) as one,
        client_for(other.url) as two,
        anyio.create_task_group() as tg,
    ):
        first: list[Result] = []

        async def lead() -> None:
            first.append(await ask(one, prompt, model="fake-slow"))

        tg.start_soon(lead)
        assert await wait_until(lambda: fake_upstream.calls() == 1, within=5)
        await anyio.sleep(3.5)  # past the lock's first lifetime
        second = await ask(two, prompt, model="fake-slow")
    assert problems([*first, second]) == []
    assert fake_upstream.calls() == 1
    assert second.content == first[0].content


# -- Graceful shutdown -------------------------------------------------------------------------


def store_ok(proxy: ProxyProcess) -> bool:
    """The proxy reaches its store (``/healthz`` pings it)."""
    return bool(httpx.get(proxy.url + "/healthz").json()["store"] == "ok")


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones(
    fake_upstream: FakeUpstream, stream: bool
) -> None:
    prompt = f"finish me [{tag()}]"
    proxy = ProxyProcess(fake_upstream.url).start()
    try:
        async with client_for(proxy.url) as client, anyio.create_task_group() as tg:
            results: list[Result] = []

            async def in_flight() -> None:
                results.append(await ask(client, prompt, model="fake-hold", stream=stream))

            tg.start_soon(in_flight)
            assert await wait_until(lambda: fake_upstream.calls() == 1, within=5)
            proxy.send_signal(signal.SIGTERM)
            refused = await wait_until(lambda: refuses_connections(proxy.port), within=5)
            still_running = not results
            fake_upstream.release.set()
        code = await anyio.to_thread.run_sync(proxy.wait, 10)
        log = proxy.stderr_text()
    finally:
        proxy.close()

    assert refused, "the proxy still accepted connections 5 s after SIGTERM"
    assert still_running, "the request in flight ended before the upstream answered"
    assert problems(results) == []
    assert belongs(results[0].content, prompt)
    # uvicorn re-raises the signal it handled once it is done, hence -SIGTERM rather than 0.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log


# -- Hostile input -----------------------------------------------------------------------------

FUZZ_MAX_BODY_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def fuzz_proxy(fake_upstream_server: FakeUpstream) -> Iterator[ProxyProcess]:
    env = {"SEMCACHE_EMBED_MODEL": "hash:64", "SEMCACHE_MAX_BODY_BYTES": str(FUZZ_MAX_BODY_BYTES)}
    with ProxyProcess(fake_upstream_server.url, env=env) as proxy:
        yield proxy


async def test_thousand_hostile_requests_get_no_500_and_only_openai_errors(
    fuzz_proxy: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    cases = fuzz.corpus(1000, seed=7, max_body_bytes=FUZZ_MAX_BODY_BYTES)
    tally = await fuzz.run("127.0.0.1", fuzz_proxy.port, cases)

    assert tally.requests == 1000
    assert tally.server_500 == 0, tally.samples
    assert tally.non_openai_errors == 0, tally.samples
    assert tally.no_answer == 0, tally.samples
    assert tally.statuses.get(200, 0) > 100, "too few requests got through to the upstream"
    assert tally.statuses.get(400, 0) > 100, "too few requests were rejected"
    assert fuzz_proxy.returncode is None
    async with client_for(fuzz_proxy.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def raw_chat(proxy: ProxyProcess, extra_header: bytes, prompt: str) -> fuzz.Reply | str:
    body = fuzz.dumps({"model": "fake-model", "messages": [{"role": "user", "content": prompt}]})
    data = fuzz.request(b"POST", fuzz.CHAT, body, headers=[])
    head, _, rest = data.partition(b"\r\n\r\n")
    return await fuzz.send(
        "127.0.0.1",
        proxy.port,
        fuzz.Case("raw", head + b"\r\n" + extra_header + b"\r\n\r\n" + rest),
    )


@pytest.mark.parametrize(
    "header", [b"X-Trace: abc ", b"Authorization: Bearer sk-x\t", b"Authorization: Bearer "]
)
async def test_header_with_trailing_whitespace_is_forwarded_not_a_502(
    fuzz_proxy: ProxyProcess, fake_upstream: FakeUpstream, header: bytes
) -> None:
    prompt = f"trailing space [{tag()}]"
    reply = await raw_chat(fuzz_proxy, header, prompt)
    assert isinstance(reply, fuzz.Reply)
    assert reply.status == 200, reply.body
    content, problem = message_content(reply.body)
    assert problem is None
    assert belongs(content, prompt)
    assert fake_upstream.calls() == 1


async def test_client_gone_mid_upload_on_a_passthrough_route_is_not_an_unexpected_error(
    fuzz_proxy: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    before = fuzz_proxy.stderr_text().count("unexpected error")
    head = (
        b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    case = fuzz.Case("truncated upload", head + b"x" * 1000, half_close=True)
    await fuzz.send("127.0.0.1", fuzz_proxy.port, case)
    # The proxy sees the disconnect within milliseconds; give it two seconds to log anything.
    logged = await wait_until(
        lambda: fuzz_proxy.stderr_text().count("unexpected error") > before, within=2
    )
    assert not logged, fuzz_proxy.stderr_text()[-3000:]


async def test_a_relayed_response_has_one_date_header(
    fuzz_proxy: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    reply = await raw_chat(fuzz_proxy, b"X-Any: 1", f"dates [{tag()}]")
    assert isinstance(reply, fuzz.Reply)
    assert reply.status == 200
    assert [name for name, _ in reply.headers].count(b"date") == 1


@pytest.mark.parametrize("path", [b"/v1/../healthz", b"/v1/models/../../admin"])
async def test_passthrough_cannot_leave_the_upstream_base_path(
    fuzz_proxy: ProxyProcess, fake_upstream: FakeUpstream, path: bytes
) -> None:
    case = fuzz.Case("traversal", fuzz.request(b"GET", path, content_type=None))
    reply = await fuzz.send("127.0.0.1", fuzz_proxy.port, case)
    assert isinstance(reply, fuzz.Reply)
    reached = [r.path for r in fake_upstream.requests]
    assert all(p.startswith("/v1/") for p in reached), reached


async def test_replicas_still_share_entries_after_redis_lost_its_data(
    redis_server: RedisServer, redis_url: str, fake_upstream: FakeUpstream
) -> None:
    with ProxyProcess(fake_upstream.url, redis_url=redis_url) as before:
        await anyio.to_thread.run_sync(redis_server.kill)
        await anyio.to_thread.run_sync(redis_server.start)
        with ProxyProcess(fake_upstream.url, redis_url=redis_url) as after:
            async with client_for(before.url) as one, client_for(after.url) as two:
                assert await wait_until(lambda: store_ok(before), within=5)
                # The replicas converge on one stored secret within seconds: ask each a new
                # prompt until what one stored is a hit on the other.
                results: list[Result] = []
                deadline = anyio.current_time() + 10
                while anyio.current_time() < deadline:
                    prompt = f"shared after a restart [{tag()}]"
                    results += [await ask(one, prompt, headers=AUTH)]
                    results += [await ask(two, prompt, headers=AUTH)]
                    if results[-1].cache == "HIT":
                        break
                    await anyio.sleep(0.5)
    assert problems(results) == []
    assert results[-1].cache == "HIT"


@pytest.mark.parametrize(
    ("method", "body", "length", "framing"),
    [
        (b"POST", b"x" * 70_000, True, ("70000", None)),  # a file upload, read in pieces
        (b"DELETE", b"", False, ("0", None)),  # no body: none sent either (an empty one)
        (b"DELETE", b"", True, ("0", None)),
        (b"POST", b"y" * 70_000, "chunked", (None, "chunked")),  # a chunked upload stays so
    ],
)
async def test_a_passed_through_body_keeps_the_framing_the_client_gave_it(
    fuzz_proxy: ProxyProcess,
    fake_upstream: FakeUpstream,
    method: bytes,
    body: bytes,
    length: bool | str,
    framing: tuple[str | None, str | None],
) -> None:
    """A body of known length was streamed upstream re-chunked (and a DELETE without one got
    an empty chunked body): an upstream that takes no chunked upload answers 411 (nginx Unit,
    lighttpd, some API gateways), one the client reaching it directly never gets."""
    if length == "chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:30_000], body[30_000:]))
        data = fuzz.request(
            method, b"/v1/files/f-1", b"", content_type=b"application/octet-stream",
            length=False, headers=[(b"Transfer-Encoding", b"chunked")],
        ) + chunks + b"0\r\n\r\n"  # fmt: skip
    else:
        data = fuzz.request(
            method, b"/v1/files/f-1", body, content_type=b"application/octet-stream",
            length=bool(length),
        )  # fmt: skip
    reply = await fuzz.send("127.0.0.1", fuzz_proxy.port, fuzz.Case("upload", data))
    assert isinstance(reply, fuzz.Reply)
    assert reply.status == 200
    sent = [r for r in fake_upstream.requests if r.path == "/v1/files/f-1"]
    assert len(sent) == 1
    headers = sent[0].headers
    assert (headers.get("content-length"), headers.get("transfer-encoding")) == framing
    assert sent[0].body == body
