"""Concurrent identical misses: one upstream call; limits on upstream concurrency."""

from __future__ import annotations

import tracemalloc
from collections.abc import Awaitable
from typing import Any, TypeVar

import anyio
import httpx
import orjson
import pytest
import respx

from proxy.cache import coalesce
from proxy.cache.coalesce import (
    REPLICA_POLL_SECONDS,
    Outcome,
    SingleFlight,
    before_leading,
    take_turn,
)
from proxy.metrics import Metrics
from proxy.requests import CacheControl
from proxy.stores.base import Entry
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore
from tests.unit.harness import FakeClock, Proxy, chat_body, completion, make_proxy

pytestmark = pytest.mark.anyio
T = TypeVar("T")


async def _peak(request: Awaitable[T]) -> tuple[T, int]:
    """What ``request`` gives, and the peak of memory traced while it ran (tracemalloc)."""
    tracemalloc.start()
    try:
        result = await request
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":"slow "},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"answer"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


class Gate:
    """An upstream that answers only once the test opens the gate."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.open = anyio.Event()
        self.calls = 0
        self.status = status
        self.body = completion("slow answer") if body is None else body

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await self.open.wait()
        if orjson.loads(request.content).get("stream"):
            return httpx.Response(
                self.status, content=SSE, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(self.status, json=self.body)


async def burst(proxy: Proxy, n: int, gate: Gate, **body: Any) -> list[httpx.Response]:
    responses: list[httpx.Response] = []

    async def one() -> None:
        responses.append(await proxy.chat(chat_body(**body)))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        gate.open.set()
    return responses


async def test_identical_concurrent_misses_make_one_upstream_call(proxy: Proxy) -> None:
    gate = Gate()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses = await burst(proxy, 50, gate)
    assert gate.calls == 1
    assert {r.status_code for r in responses} == {200}
    states = sorted(r.headers.get("x-cache-lookup", r.headers["x-cache"]) for r in responses)
    assert states == ["MISS"] + ["coalesced"] * 49
    assert {r.json()["choices"][0]["message"]["content"] for r in responses} == {"slow answer"}


async def test_streaming_followers_get_a_replay(proxy: Proxy) -> None:
    gate = Gate()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses = await burst(proxy, 5, gate, stream=True)
    assert gate.calls == 1
    replays = [r for r in responses if r.headers.get("x-cache-lookup") == "coalesced"]
    assert len(replays) == 4
    assert all(r.content.endswith(b"data: [DONE]\n\n") and b"slow" in r.content for r in replays)


async def test_followers_get_the_leaders_upstream_error_uncached(proxy: Proxy) -> None:
    gate = Gate(503, {"error": {"message": "overloaded", "type": "server_error"}})
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses = await burst(proxy, 10, gate)
    assert gate.calls == 1
    assert {r.status_code for r in responses} == {503}
    assert {r.headers["x-cache"] for r in responses} == {"MISS"}
    assert (await proxy.store.stats()).entries == 0


async def test_followers_retry_when_the_leader_cannot_share(proxy: Proxy) -> None:
    gate = Gate(200, completion("cut short", finish="length"))
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses = await burst(proxy, 4, gate)
    assert gate.calls == 4  # a truncated answer is not handed on: each follower asks itself
    assert {r.headers["x-cache"] for r in responses} == {"MISS"}


async def test_different_requests_do_not_coalesce(proxy: Proxy) -> None:
    gate = Gate()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses: list[httpx.Response] = []

    async def one(text: str) -> None:
        responses.append(await proxy.chat(chat_body(text)))

    async with anyio.create_task_group() as tg:
        for text in ("one", "two", "three"):
            tg.start_soon(one, text)
        await anyio.wait_all_tasks_blocked()
        gate.open.set()
    assert gate.calls == 3


async def while_the_only_slot_is_held(
    upstream_mock: respx.MockRouter, clock: FakeClock, *texts: str
) -> tuple[list[httpx.Response], Gate, dict[str, Any]]:
    """``SEMCACHE_MAX_INFLIGHT=1`` with a 50 ms queue: a request takes the only upstream slot,
    then ``texts`` are asked together and wait for it; the slot is let go once they answered.
    Every answer, the upstream gate, and ``/cache/stats``."""
    gate = Gate()
    upstream_mock.post("/chat/completions").mock(side_effect=gate)
    async with make_proxy(
        upstream_mock, clock, max_inflight=1, queue_timeout_seconds=0.05
    ) as proxy:
        responses: list[httpx.Response] = []

        async def one(text: str) -> None:
            responses.append(await proxy.chat(chat_body(text)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "first")  # takes the only slot
            await anyio.wait_all_tasks_blocked()
            async with anyio.create_task_group() as together:
                for text in texts:
                    together.start_soon(one, text)
            gate.open.set()
        stats = (await proxy.client.get("/cache/stats")).json()
    return responses, gate, stats


async def test_inflight_limit_queues_then_answers_503(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    # "second" waits 50 ms for the only slot, then gives up.
    responses, gate, stats = await while_the_only_slot_is_held(upstream_mock, clock, "second")
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.json()["error"]["code"] == "overloaded"
    assert stats["upstream_errors"]["overloaded"] == 1
    assert gate.calls == 1
    assert {r.status_code for r in responses} == {200, 503}


async def test_followers_of_an_overloaded_leader_are_told_when_to_retry(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A leader that found no upstream slot hands its 503 to its followers with its
    ``Retry-After``: the openai SDK waits what it says, as it does for the leader."""
    # A leader waiting for a slot, and two followers.
    responses, gate, _ = await while_the_only_slot_is_held(upstream_mock, clock, *["second"] * 3)
    rejected = [r for r in responses if r.status_code == 503]
    assert len(rejected) == 3
    assert [r.headers.get("retry-after") for r in rejected] == ["1"] * 3
    assert {r.json()["error"]["code"] for r in rejected} == {"overloaded"}
    assert gate.calls == 1


async def test_answers_over_the_entry_limit_are_served_not_stored(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion("x" * 5000))
    async with make_proxy(upstream_mock, clock, max_entry_bytes=1000) as proxy:
        first = await proxy.chat(chat_body())
        second = await proxy.chat(chat_body())
        stats = (await proxy.client.get("/cache/stats")).json()
    assert first.json()["choices"][0]["message"]["content"] == "x" * 5000
    assert second.headers["x-cache"] == "MISS"
    assert stats["not_stored"] == {"too_large": 2}
    assert route.call_count == 2


async def test_a_4xx_of_the_leader_is_not_handed_to_followers(proxy: Proxy) -> None:
    gate = Gate(429, {"error": {"message": "quota of the leader's key", "type": "rate_limit"}})
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    responses = await burst(proxy, 4, gate)
    assert gate.calls == 4  # each asks with its own key and quota
    assert {r.status_code for r in responses} == {429}


async def test_a_leader_cancelled_before_calling_leaves_no_flight(proxy: Proxy) -> None:
    gate = Gate()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    pipeline = proxy.app.state.services.chat
    store = proxy.store

    locks: list[str] = []

    async def stuck_lock(key: str, token: str, ttl_seconds: float) -> bool:
        locks.append(key)
        await anyio.sleep_forever()
        return True

    store.shared = True  # as if replicas shared it: the lock is taken
    store.try_lock = stuck_lock  # type: ignore[method-assign]
    with anyio.move_on_after(0.2):
        await proxy.chat(chat_body())
    assert len(locks) == 1
    assert len(pipeline._flights) == 0
    assert gate.calls == 0


async def test_a_store_failing_after_the_answer_went_out_frees_the_followers(
    proxy: Proxy,
) -> None:
    """The leader's answer is written before it is stored; when storing breaks, the followers
    ask the upstream themselves, none left waiting."""
    gate = Gate()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)

    async def broken_put(key: str, entry: object, ttl_seconds: float) -> None:
        raise RuntimeError("a bug in the store")

    proxy.store.put = broken_put  # type: ignore[method-assign]
    failed: list[str] = []

    async def one() -> None:
        try:
            await proxy.chat(chat_body())
        except RuntimeError as exc:  # the in-process transport re-raises what the app raised
            failed.append(str(exc))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            gate.open.set()
    assert gate.calls == 3  # the leader, then each follower on its own
    assert len(proxy.app.state.services.chat._flights) == 0
    assert failed == ["a bug in the store"] * 3


Request = tuple[dict[str, Any], dict[str, str]]
"""A chat body and the headers it is sent with."""


async def stored_while_another_looked(
    proxy: Proxy, first: Request, late: Request
) -> tuple[httpx.Response, httpx.Response]:
    """``late`` looks in the cache, finds nothing and stalls; ``first`` is answered and stored;
    then ``late`` goes on. Their responses, in that order."""
    original = proxy.store.get
    looked = anyio.Event()
    landed = anyio.Event()

    async def get_that_waits_once(key: str) -> Any:
        found = await original(key)
        if not looked.is_set():  # the late request's lookup
            looked.set()
            await landed.wait()
        return found

    proxy.store.get = get_that_waits_once  # type: ignore[method-assign]
    answers: list[httpx.Response] = []

    async def late_request() -> None:
        answers.append(await proxy.chat(late[0], **late[1]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(late_request)
        await looked.wait()
        answered = await proxy.chat(first[0], **first[1])
        landed.set()
    return answered, answers[0]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_lookup_that_misses_just_before_the_entry_lands_finds_it(
    proxy: Proxy, stream: bool
) -> None:
    """A client repeating its question the moment its answer ends can look before the first
    answer is stored, and lead a new flight after the first one landed: it looks again."""
    gate = Gate()
    gate.open.set()  # answers at once
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    body = chat_body(stream=stream)
    first, late = await stored_while_another_looked(proxy, (body, {}), (body, {}))
    assert first.headers["x-cache"] == "MISS"
    assert late.headers["x-cache"] == "HIT"
    assert late.headers["x-cache-lookup"] == "exact"
    assert b"slow" in late.content
    assert gate.calls == 1


async def test_a_landing_for_another_key_sends_no_request_back_to_the_cache(proxy: Proxy) -> None:
    proxy.upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=completion())
    )
    gets: list[str] = []
    original = proxy.store.get

    async def counting_get(key: str) -> Any:
        gets.append(key)
        return await original(key)

    proxy.store.get = counting_get  # type: ignore[method-assign]
    await proxy.chat(chat_body("one question"))
    await proxy.chat(chat_body("another question"))
    assert len(gets) == 2  # one lookup each, no second look
    assert len(proxy.upstream.calls) == 2


def test_single_flight_remembers_the_newest_landings_only() -> None:
    flights = SingleFlight(remembered=2)
    before = flights.landed
    entry = Entry(id="e", body=b"{}", created_at=0.0)
    for key in ("a", "b", "a", "c"):
        flight, leads = flights.join(key)
        assert leads
        flights.finish(key, flight, Outcome(entry=entry))
    flight, _ = flights.join("d")
    flights.finish("d", flight, None)  # nothing stored: not a landing
    assert flights.landed == before + 4
    assert [flights.landed_since(k, before) for k in "abcd"] == [True, False, True, False]
    assert not flights.landed_since("c", flights.landed)


async def test_an_answer_another_replica_stored_while_this_one_looked_is_found(
    proxy: Proxy,
) -> None:
    """Another replica stores its answer and releases its lock between this request's lookup
    and its taking the lock: the look that goes with the lock finds the answer."""
    gate = Gate()
    gate.open.set()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    store = proxy.store
    store.shared = True  # as if replicas shared it, with a lock that works as Redis's does
    locks: dict[str, str] = {}
    taken: list[str] = []

    async def try_lock(key: str, token: str, ttl_seconds: float) -> bool:
        taken.append(key)
        return locks.setdefault(key, token) == token

    async def unlock(key: str, token: str) -> None:
        if locks.get(key) == token:
            del locks[key]

    store.try_lock = try_lock  # type: ignore[method-assign]
    store.unlock = unlock  # type: ignore[method-assign]
    original = store.get
    stored_elsewhere: list[str] = []

    async def get_then_another_replica_stores(key: str) -> Any:
        found = await original(key)
        if not stored_elsewhere:  # this request's lookup: missed; then the other replica
            stored_elsewhere.append(key)
            body = orjson.dumps(completion("the other replica's answer"))
            await store.put(key, Entry(id="feedfacecafebeef", body=body, created_at=0.0), 60)
        return found

    store.get = get_then_another_replica_stores  # type: ignore[method-assign]
    response = await proxy.chat(chat_body())
    assert response.headers["x-cache"] == "HIT"
    assert response.headers["x-cache-lookup"] == "exact"
    assert response.headers["x-cache-entry-id"] == "feedfacecafebeef"
    assert gate.calls == 0
    assert taken == stored_elsewhere  # the lock was taken with the second look...
    assert locks == {}  # ...and freed, the answer being there


async def test_a_landing_for_another_tenant_is_not_served_to_one_that_looked_meanwhile(
    proxy: Proxy,
) -> None:
    """Must not hit: the second look is for the caller's own key, and another tenant's
    identical question lands under another one."""
    gate = Gate()
    gate.open.set()
    proxy.upstream.post("/chat/completions").mock(side_effect=gate)
    first, late = await stored_while_another_looked(
        proxy,
        (chat_body(), {"authorization": "Bearer sk-tenant-a"}),
        (chat_body(), {"authorization": "Bearer sk-tenant-b"}),
    )
    assert first.headers["x-cache"] == "MISS"
    assert late.headers["x-cache"] == "MISS"
    assert gate.calls == 2


class OtherReplica:
    """A store shared with another replica that holds the lock for ``key`` (as Redis's lock
    behaves), on a real memory store; ``land`` stores its answer and releases the lock."""

    def __init__(self, key: str) -> None:
        self.now = 1000.0
        self.store = MemoryStore(max_entries=100, max_bytes=1 << 20, clock=lambda: self.now)
        self.store.shared = True
        self.cache = Cache(self.store, Metrics(), clock=lambda: self.now)
        self.key = key
        self.locks = {key: "other-replica"}
        self.renewals = 0
        self.store.try_lock = self.try_lock  # type: ignore[method-assign]
        self.store.unlock = self.unlock  # type: ignore[method-assign]
        self.store.is_locked = self.is_locked  # type: ignore[method-assign]
        self.store.extend_lock = self.extend_lock  # type: ignore[method-assign]

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        return self.locks.setdefault(key, token) == token

    async def unlock(self, key: str, token: str) -> None:
        if self.locks.get(key) == token:
            del self.locks[key]

    async def is_locked(self, key: str) -> bool:
        return key in self.locks

    async def extend_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        self.renewals += 1
        return self.locks.get(key) == token

    async def land(self, entry_id: str) -> None:
        body = orjson.dumps(completion(f"answer {entry_id}"))
        await self.store.put(self.key, Entry(id=entry_id, body=body, created_at=self.now), 60)
        del self.locks[self.key]


async def test_a_replica_waiting_on_the_lock_is_never_served_the_answer_too_old_for_it() -> None:
    """Must NOT serve: this request missed because its max-age made the entry stale; the
    replica holding the lock is refreshing it. The old entry is there all along: the waiter
    takes the new one, not the one it found too old."""
    other = OtherReplica("chat:ns:k")
    await other.store.put("chat:ns:k", Entry(id="01d01d01d01d01d0", body=b"{}",
                                             created_at=other.now - 30), 60)  # fmt: skip
    control = CacheControl(lookup=True, store=True, ttl_seconds=60, max_age_seconds=1)

    async def refresh_later() -> None:
        await anyio.sleep(REPLICA_POLL_SECONDS * 3)
        await other.land("f00df00df00df00d")

    async with anyio.create_task_group() as tg:
        tg.start_soon(refresh_later)
        entry, lookup, locked = await before_leading(
            other.cache, SingleFlight(), "chat:ns:k", control, 0, "this-replica", wait_seconds=5
        )
    assert entry is not None
    assert entry.id == "f00df00df00df00d"
    assert (lookup, locked) == ("coalesced", False)


async def test_an_answer_landing_between_the_waiters_two_reads_is_found() -> None:
    """The lock holder stores, then unlocks, between the waiter's read of the entry and its
    look at the lock: one more read finds the answer instead of a second upstream call."""
    other = OtherReplica("chat:ns:k")
    looked_at_lock = other.is_locked

    async def lands_just_before(key: str) -> bool:
        if key in other.locks:
            await other.land("f00df00df00df00d")
        return await looked_at_lock(key)

    other.store.is_locked = lands_just_before  # type: ignore[method-assign]
    control = CacheControl(lookup=True, store=True, ttl_seconds=60)
    entry, lookup, _ = await before_leading(
        other.cache, SingleFlight(), "chat:ns:k", control, 0, "this-replica", wait_seconds=5
    )
    assert entry is not None
    assert entry.id == "f00df00df00df00d"
    assert lookup == "coalesced"


async def test_a_leader_keeps_the_replica_lock_past_the_followers_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upstream call longer than SEMCACHE_COALESCE_TIMEOUT: the lock is renewed until the
    leader publishes, so another replica still waits instead of calling the upstream too."""
    monkeypatch.setattr(coalesce, "LOCK_TTL_SECONDS", 0.03)  # renewed every 10 ms
    other = OtherReplica("chat:ns:k")
    del other.locks["chat:ns:k"]  # free: this replica leads
    control = CacheControl(lookup=True, store=True, ttl_seconds=60)
    turn = await take_turn(other.cache, SingleFlight(), "chat:ns:k", control, 0, wait_seconds=0.05)
    assert turn.publish is not None
    await anyio.sleep(0.2)  # four times the followers' wait
    before = other.renewals
    await anyio.sleep(0.1)
    assert other.renewals > before  # still renewing
    assert "chat:ns:k" in other.locks
    await turn.publish(None)
    assert other.locks == {}


async def test_a_streamed_answer_over_the_entry_limit_is_relayed_without_being_held(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Memory stays bounded: a stream past ``max_entry_bytes`` is relayed whole, and what
    semcache keeps of it to store stops growing at the limit (it held all of it, then joined
    it and wrote it out, before finding it too large)."""
    piece = orjson.dumps(
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "x" * 8192}, "finish_reason": None}]}
    )  # fmt: skip
    end = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )

    async def stream() -> Any:
        for _ in range(1000):  # 8 MB of text
            yield b"data: " + piece + b"\n\n"
        yield end

    route = upstream_mock.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, stream=stream(), headers={"content-type": "text/event-stream"}
        )
    )
    async with make_proxy(upstream_mock, clock, max_entry_bytes=64 * 1024) as proxy:
        first, peak = await _peak(proxy.chat(chat_body(stream=True)))
        second = await proxy.chat(chat_body(stream=True))
        stats = (await proxy.client.get("/cache/stats")).json()
    sent = len(first.content)
    assert first.content.endswith(b"data: [DONE]\n\n")
    assert sent > 8_000_000
    assert second.headers["x-cache"] == "MISS"
    assert stats["not_stored"] == {"too_large": 2}
    assert route.call_count == 2
    # The test client buffers the answer (ASGITransport: its pieces, then joined), twice its
    # size; semcache held about ten times more before (its pieces, joined, written out).
    assert peak < sent * 3, (peak, sent)


@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [
        ("/v1/chat/completions", chat_body(), completion("x" * 8_000_000)),
        ("/v1/completions", {"model": "m", "prompt": "p"}, {"id": "c", "object":
         "text_completion", "created": 1, "model": "m", "choices": [{"index": 0, "text":
         "x" * 8_000_000, "finish_reason": "stop", "logprobs": None}]}),
    ],
)  # fmt: skip
async def test_an_answer_over_the_entry_limit_is_not_read_to_be_stored(
    upstream_mock: respx.MockRouter,
    clock: FakeClock,
    path: str,
    body: dict[str, Any],
    answer: dict[str, Any],
) -> None:
    """An answer too large to store was parsed, and its entry built, before its size was
    looked at: thirteen times its size in memory at the peak (on completions before it was
    even sent). Its size is looked at first."""
    upstream_mock.post(path.removeprefix("/v1")).respond(
        200, content=orjson.dumps(answer), headers={"content-type": "application/json"}
    )
    async with make_proxy(upstream_mock, clock, max_entry_bytes=64 * 1024) as proxy:
        response, peak = await _peak(proxy.client.post(path, json=body))
        stats = (await proxy.client.get("/cache/stats")).json()
    assert response.content == orjson.dumps(answer)
    assert stats["not_stored"] == {"too_large": 1}
    assert peak < len(response.content), (peak, len(response.content))


def _text_completion_piece(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    chunk = {"id": "c", "object": "text_completion", "created": 1, "model": "m"}
    return b"data: " + orjson.dumps({**chunk, "choices": [choice]}) + b"\n\n"


def _ollama_piece(text: str, done: bool = False) -> bytes:
    message = {"role": "assistant", "content": text}
    line = {"model": "m", "created_at": "t", "message": message, "done": done}
    return orjson.dumps({**line, "done_reason": "stop"} if done else line) + b"\n"


@pytest.mark.parametrize(
    ("path", "url", "body", "piece", "end", "content_type"),
    [
        ("/v1/completions", "http://upstream.test/v1/completions",
         {"model": "m", "prompt": "p", "stream": True}, _text_completion_piece,
         _text_completion_piece("", "stop") + b"data: [DONE]\n\n", "text/event-stream"),
        ("/api/chat", "http://upstream.test/api/chat",
         {"model": "m", "messages": [{"role": "user", "content": "p"}], "stream": True},
         _ollama_piece, _ollama_piece("", done=True), "application/x-ndjson"),
    ],
    ids=["completions", "ollama"],
)  # fmt: skip
async def test_other_streamed_answers_over_the_entry_limit_are_not_held_either(
    clock: FakeClock,
    path: str,
    url: str,
    body: dict[str, Any],
    piece: Any,
    end: bytes,
    content_type: str,
) -> None:
    """As on chat: a text completion's or an Ollama chat's stream past ``max_entry_bytes`` is
    relayed whole, and what semcache joins of it to store stops at the limit."""

    def answer(request: httpx.Request) -> httpx.Response:
        async def stream() -> Any:
            for _ in range(1000):  # 8 MB of text
                yield piece("x" * 8192)
            yield end

        return httpx.Response(200, stream=stream(), headers={"content-type": content_type})

    with respx.mock(assert_all_called=False) as router:
        route = router.post(url).mock(side_effect=answer)
        async with make_proxy(router, clock, max_entry_bytes=64 * 1024) as proxy:
            first, peak = await _peak(proxy.client.post(path, json=body))
            second = await proxy.client.post(path, json=body)
            stats = (await proxy.client.get("/cache/stats")).json()
    sent = len(first.content)
    assert first.content.endswith(end)
    assert sent > 8_000_000
    assert second.headers["x-cache"] == "MISS"
    assert stats["not_stored"] == {"too_large": 2}
    assert route.call_count == 2
    # The test client buffers the answer (ASGITransport: its pieces, then joined), twice its
    # size; semcache held several times more before (its pieces, joined, written out).
    assert peak < sent * 3, (peak, sent)


async def test_an_ollama_answer_over_the_entry_limit_is_not_read_to_be_stored(
    clock: FakeClock,
) -> None:
    """As on chat and completions: Ollama's pipeline looks at an answer's size before it parses
    it (it parsed it, and built an entry, before finding it too large)."""
    answer = orjson.dumps(
        {"model": "m", "created_at": "t", "done": True, "done_reason": "stop",
         "message": {"role": "assistant", "content": "x" * 8_000_000}}
    )  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": "p"}], "stream": False}
    with respx.mock(assert_all_called=False) as router:
        router.post("http://upstream.test/api/chat").respond(
            200, content=answer, headers={"content-type": "application/json"}
        )
        async with make_proxy(router, clock, max_entry_bytes=64 * 1024) as proxy:
            response, peak = await _peak(proxy.client.post("/api/chat", json=body))
            stats = (await proxy.client.get("/cache/stats")).json()
    assert response.content == answer
    assert stats["not_stored"] == {"too_large": 1}
    assert peak < len(answer), (peak, len(answer))


@pytest.mark.parametrize(
    ("path", "url", "body", "first", "rest", "content_type"),
    [
        ("/v1/chat/completions", "http://upstream.test/v1/chat/completions",
         chat_body(stream=True),
         b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
         b'[{"index":0,"delta":{"role":"assistant","content":"Par"},"finish_reason":null}]}\n\n',
         b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
         b'[{"index":0,"delta":{"content":"is."},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
         "text/event-stream"),
        ("/v1/completions", "http://upstream.test/v1/completions",
         {"model": "m", "prompt": "p", "stream": True},
         _text_completion_piece("Par"),
         _text_completion_piece("is.", "stop") + b"data: [DONE]\n\n", "text/event-stream"),
        ("/api/chat", "http://upstream.test/api/chat",
         {"model": "m", "messages": [{"role": "user", "content": "p"}], "stream": True},
         _ollama_piece("Par"), _ollama_piece("is.", done=True), "application/x-ndjson"),
    ],
    ids=["chat", "completions", "ollama"],
)  # fmt: skip
async def test_a_followed_leader_whose_client_leaves_reads_on_for_its_followers(
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    url: str,
    body: dict[str, Any],
    first: bytes,
    rest: bytes,
    content_type: str,
) -> None:
    """A streamed leader's client goes away after the first piece while a request follows it:
    the upstream answer is read to its end and stored, and the follower is served it (one
    upstream call). Each pipeline hands the flight's ``followed`` to its relay."""
    release, closed, joined = anyio.Event(), anyio.Event(), anyio.Event()
    wait = coalesce.Flight.wait

    async def follow_flight(flight: coalesce.Flight, timeout_seconds: float) -> Any:
        joined.set()
        return await wait(flight, timeout_seconds)

    monkeypatch.setattr(coalesce.Flight, "wait", follow_flight)

    def answer(request: httpx.Request) -> httpx.Response:
        async def stream() -> Any:
            try:
                yield first
                await release.wait()
                yield rest
            finally:
                closed.set()

        return httpx.Response(200, stream=stream(), headers={"content-type": content_type})

    raw = orjson.dumps(body)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("semcache.test", 80),
             "client": ("127.0.0.1", 1), "headers": [
                 (b"host", b"semcache.test"), (b"content-type", b"application/json"),
                 (b"content-length", str(len(raw)).encode()),
                 (b"authorization", b"Bearer sk-test-a")]}  # fmt: skip
    got_first, left = anyio.Event(), anyio.Event()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    with respx.mock(assert_all_called=False) as router:
        route = router.post(url).mock(side_effect=answer)
        async with make_proxy(router, clock) as proxy:
            followed: list[httpx.Response] = []

            async def follow() -> None:
                followed.append(await proxy.client.post(
                    path, json=body, headers={"authorization": "Bearer sk-test-a"}
                ))  # fmt: skip

            async with anyio.create_task_group() as tg:
                tg.start_soon(proxy.app, scope, receive, send)
                with anyio.fail_after(5):
                    await got_first.wait()
                tg.start_soon(follow)
                with anyio.fail_after(5):
                    await joined.wait()  # the follower waits on the flight
                left.set()  # the leader's client goes away
                await anyio.sleep(0.2)  # (a leader that let go would close it now)
                assert not closed.is_set()  # the upstream answer is still being read
                release.set()
            assert route.call_count == 1
            assert followed[0].headers["x-cache"] == "HIT"
            assert followed[0].headers["x-cache-lookup"] == "coalesced"
