"""Replicas: ``semcache serve`` processes on one real redis-server behind a real HAProxy
(round-robin, health checks on ``GET /healthz``), the openai SDK as the client, the fake
upstream behind. HAProxy names the replica that answered in ``X-Semcache-Replica``."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
import pytest
import redis
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import StartReplicas
from tests.support.balancer import REPLICA_HEADER
from tests.support.fake_upstream import CHAT_PATH, FakeUpstream
from tests.support.redis_server import RedisServer
from tests.support.replicas import ReplicaSet

DEADLINE_SECONDS = 15.0


@dataclass(frozen=True)
class Answer:
    replica: str
    cache: str
    lookup: str
    content: str


def ask(sdk: OpenAI, text: str, model: str = "gpt-fake") -> Answer:
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return Answer(
        replica=raw.headers[REPLICA_HEADER],
        cache=raw.headers["x-cache"],
        lookup=raw.headers.get("x-cache-lookup", ""),
        content=raw.parse().choices[0].message.content or "",
    )


async def ask_async(sdk: AsyncOpenAI, text: str, model: str, *, stream: bool) -> Answer:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
    create = sdk.chat.completions.with_raw_response.create
    if not stream:
        raw = await create(model=model, messages=messages)
        headers = raw.headers
        content = raw.parse().choices[0].message.content or ""
    else:
        streamed = await create(model=model, messages=messages, stream=True)
        headers = streamed.headers
        chunks = [c async for c in streamed.parse()]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return Answer(
        replica=headers[REPLICA_HEADER],
        cache=headers["x-cache"],
        lookup=headers.get("x-cache-lookup", ""),
        content=content,
    )


def sdk(replicas: ReplicaSet, key: str = "sk-replica-a") -> OpenAI:
    # No retries in the client: a failure the balancer does not absorb must show.
    return OpenAI(base_url=replicas.base_url, api_key=key, max_retries=0, timeout=30)


def question() -> str:
    return f"What is the capital of France? ({uuid.uuid4().hex[:8]})"


def wait_for(condition: str, check: Callable[[], bool], timeout: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {condition}")
        time.sleep(0.02)


# -- (a) one replica's answer is the other's hit; (c) one secret, kept in Redis -------------------


def test_an_answer_from_one_replica_is_a_hit_on_the_other(
    start_replicas: StartReplicas,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
    key_prefix: str,
) -> None:
    """Neither replica is given SEMCACHE_SECRET: both derive the tenant's namespace from the
    secret the first one kept in Redis, so the entry one stored is the other's hit."""
    replicas = start_replicas()
    q = question()
    with sdk(replicas) as client:
        first = ask(client, q)
        second = ask(client, q)
    assert first.cache == "MISS"
    assert second.cache == "HIT"
    assert second.lookup == "exact"
    assert {first.replica, second.replica} == {"r0", "r1"}  # round-robin: one each
    assert second.content == first.content == f"answer 1: {q}"
    assert fake_upstream.calls() == 1
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.exists(f"{key_prefix}0:secret")


# -- (b) single flight across replicas ----------------------------------------------------------


async def held_burst(
    replicas: ReplicaSet,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
    n: int,
    one: Callable[[], Coroutine[Any, Any, None]],
    *,
    path: str = CHAT_PATH,
) -> None:
    """``n`` concurrent calls of ``one``, the upstream holding its answer (``fake-hold``) until
    all n are in flight at the replicas at once (HAProxy's count), one upstream call was made
    and the other replica is polling the leader's lock (Redis counts its EXISTS calls)."""
    with redis.Redis.from_url(redis_server.url) as r:
        r.config_resetstat()

        def lock_polls() -> int:
            return int(r.info("commandstats").get("cmdstat_exists", {}).get("calls", 0))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
            await anyio.to_thread.run_sync(
                wait_for,
                f"{n} requests in flight, the other replica polling the lock",
                lambda: (
                    replicas.balancer.in_flight() == n
                    and fake_upstream.calls(path) == 1
                    and lock_polls() > 0
                ),
            )
            fake_upstream.release.set()


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_concurrent_identical_requests_over_both_replicas_make_one_upstream_call(
    start_replicas: StartReplicas,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
    stream: bool,
) -> None:
    """What ``proxy/cache/coalesce.py`` promises: concurrent identical misses make one upstream
    call, across replicas too (the leader holds a lock in Redis; a replica that finds it taken
    waits for the entry)."""
    n = 8
    replicas = start_replicas()
    q = question()
    answers: list[Answer] = []
    async with AsyncOpenAI(
        base_url=replicas.base_url, api_key="sk-replica-a", max_retries=0, timeout=30
    ) as client:

        async def one() -> None:
            answers.append(await ask_async(client, q, "fake-hold", stream=stream))

        await held_burst(replicas, fake_upstream, redis_server, n, one)
    assert fake_upstream.calls() == 1
    assert len(answers) == n
    assert {a.content for a in answers} == {f"answer 1: {q}"}
    assert Counter(a.cache for a in answers) == {"MISS": 1, "HIT": n - 1}
    served_by = Counter(a.replica for a in answers)
    assert set(served_by) == {"r0", "r1"}, served_by
    (leader,) = [a.replica for a in answers if a.cache == "MISS"]
    hits = [a for a in answers if a.cache == "HIT"]
    # A follower whose lookup ran after the entry landed is an exact hit; the rest waited.
    assert {a.lookup for a in hits} <= {"coalesced", "exact"}
    assert any(a.lookup == "coalesced" and a.replica != leader for a in hits)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", {"input": "Q", "store": False}),
        ("/v1/completions", {"prompt": "Q"}),
        ("/api/chat", {"messages": [{"role": "user", "content": "Q"}], "stream": False}),
        ("/api/generate", {"prompt": "Q", "stream": False}),
    ],
    ids=["responses", "completions", "ollama-chat", "ollama-generate"],
)
async def test_the_other_cached_routes_make_one_upstream_call_across_replicas_too(
    start_replicas: StartReplicas,
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
    path: str,
    body: dict[str, object],
) -> None:
    """As for chat above: the leader's replica lock holds the other replica's requests until
    the entry lands, then they are served it."""
    n = 6
    replicas = start_replicas()
    asked = orjson.loads(orjson.dumps(body).replace(b'"Q"', orjson.dumps(question())))
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=replicas.url, timeout=30) as client:

        async def one() -> None:
            answers.append(
                await client.post(path, json={"model": "fake-hold", **asked},
                                  headers={"authorization": "Bearer sk-replica-a"})
            )  # fmt: skip

        await held_burst(replicas, fake_upstream, redis_server, n, one, path=path)
    assert fake_upstream.calls(path) == 1
    assert [a.status_code for a in answers] == [200] * n
    assert len({a.content for a in answers}) == 1
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "HIT": n - 1}
    assert {a.headers[REPLICA_HEADER] for a in answers} == {"r0", "r1"}
    (leader,) = [a.headers[REPLICA_HEADER] for a in answers if a.headers["x-cache"] == "MISS"]
    assert any(
        a.headers.get("x-cache-lookup") == "coalesced" and a.headers[REPLICA_HEADER] != leader
        for a in answers
    )


# -- (c) secrets and tenants --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "shared"),
    [
        (("one-secret-for-all-0123", "one-secret-for-all-0123"), True),
        (("secret-of-replica-0-xyz", "secret-of-replica-1-xyz"), False),
    ],
    ids=["same-secret", "different-secrets"],
)
def test_replicas_share_entries_only_under_one_secret(
    start_replicas: StartReplicas,
    fake_upstream: FakeUpstream,
    secrets: tuple[str, str],
    shared: bool,
) -> None:
    """Replicas given different SEMCACHE_SECRETs derive different namespaces for one API key:
    neither may serve the other's entry (nor wait on its lock). Under one secret they share."""
    replicas = start_replicas(envs=[{"SEMCACHE_SECRET": s} for s in secrets])
    q = question()
    with sdk(replicas) as client:
        answers = [ask(client, q) for _ in range(4)]  # r0, r1, r0, r1
    assert [a.replica for a in answers[:2]] == [a.replica for a in answers[2:]]
    by_replica = {a.replica: [b for b in answers if b.replica == a.replica] for a in answers}
    assert set(by_replica) == {"r0", "r1"}
    if shared:
        assert fake_upstream.calls() == 1
        assert [a.cache for a in answers] == ["MISS", "HIT", "HIT", "HIT"]
        assert {a.content for a in answers} == {f"answer 1: {q}"}
    else:
        assert fake_upstream.calls() == 2
        assert [a.cache for a in answers] == ["MISS", "MISS", "HIT", "HIT"]
        for own in by_replica.values():  # each replica serves its own answer, never the other's
            assert len({a.content for a in own}) == 1
        assert {a.content for a in answers} == {f"answer 1: {q}", f"answer 2: {q}"}


def test_tenants_never_see_each_others_entries_through_the_balancer(
    start_replicas: StartReplicas, fake_upstream: FakeUpstream
) -> None:
    replicas = start_replicas()
    q = question()
    with sdk(replicas, "sk-tenant-one") as one, sdk(replicas, "sk-tenant-two") as two:
        first_one = ask(one, q)  # r0
        first_two = ask(two, q)  # r1: would be a hit if namespaces leaked
        again = [ask(one, q), ask(two, q), ask(two, q), ask(one, q)]
    assert (first_one.cache, first_two.cache) == ("MISS", "MISS")
    assert first_one.replica != first_two.replica
    assert fake_upstream.calls() == 2
    assert [a.cache for a in again] == ["HIT"] * 4
    assert {a.replica for a in again} == {"r0", "r1"}
    assert [a.content for a in again] == [
        first_one.content,
        first_two.content,
        first_two.content,
        first_one.content,
    ]
    assert first_one.content != first_two.content


@pytest.mark.anyio
async def test_tenants_asking_at_once_on_both_replicas_each_get_their_own_upstream_call(
    start_replicas: StartReplicas, fake_upstream: FakeUpstream
) -> None:
    """Single flight never crosses tenants: two API keys asking the same question at the same
    time, one on each replica, make two upstream calls (both are held by the upstream until it
    has seen the two; shared, the second would wait on the first and never reach it)."""
    replicas = start_replicas()
    q = question()
    answers: dict[str, Answer] = {}

    async def one(key: str) -> None:
        async with AsyncOpenAI(
            base_url=replicas.base_url, api_key=key, max_retries=0, timeout=30
        ) as client:
            answers[key] = await ask_async(client, q, "fake-hold", stream=False)

    async with anyio.create_task_group() as tg:
        for key in ("sk-tenant-one", "sk-tenant-two"):
            tg.start_soon(one, key)
        try:
            await anyio.to_thread.run_sync(
                wait_for,
                "both tenants' calls reached the upstream",
                lambda: fake_upstream.calls() == 2,
            )
        finally:
            fake_upstream.release.set()
    assert {a.cache for a in answers.values()} == {"MISS"}
    assert {a.replica for a in answers.values()} == {"r0", "r1"}
    assert {a.content for a in answers.values()} == {f"answer 1: {q}", f"answer 2: {q}"}


# -- (d) stats -----------------------------------------------------------------------------------


def test_cache_stats_give_whole_cache_figures_and_metrics_stay_per_process(
    start_replicas: StartReplicas, redis_server: RedisServer
) -> None:
    replicas = start_replicas()
    questions = [question() for _ in range(3)]
    with sdk(replicas) as client:
        answers = [ask(client, q) for q in questions for _ in range(2)]
    # Round-robin: one replica took every miss, the other every hit.
    misses = {a.replica for a in answers if a.cache == "MISS"}
    hits = {a.replica for a in answers if a.cache == "HIT"}
    assert len(misses) == len(hits) == 1
    assert misses != hits

    def stats(url: str) -> dict[str, object]:
        response = httpx.get(url + "/cache/stats", timeout=5)
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body

    urls = {name: p.url for name, p in replicas.proxies.items()}
    whole = {"hits": 3, "misses": 3}

    def agreed() -> bool:
        for url in urls.values():
            w = stats(url)["whole_cache"]
            assert isinstance(w, dict)
            if {k: w[k] for k in whole} != whole:
                return False
        return True

    wait_for("every replica reports 3 hits and 3 misses for the whole cache", agreed)
    own = {name: stats(url) for name, url in urls.items()}
    per_process = {name: (s["hits"], s["misses"]) for name, s in own.items()}
    assert sorted(per_process.values()) == [(0, 3), (3, 0)]  # each its own share
    through_balancer = stats(replicas.url)["whole_cache"]
    assert isinstance(through_balancer, dict)
    assert through_balancer["hit_rate"] == 0.5
    with redis.Redis.from_url(redis_server.url) as r:
        size = r.dbsize()
    entries = {s["store"]["entries"] for s in own.values()}  # type: ignore[index]
    assert entries == {size}  # the Redis database's key count, the same on every replica
    # whole_cache counts only the entries under this set's own prefix: the three answers.
    ours = {s["whole_cache"]["store"]["entries"] for s in own.values()}  # type: ignore[index]
    assert ours == {3}
    assert size > 3  # locks' leftovers, refs, counters, the secret: not entries
    for name, url in urls.items():  # /metrics: this process's own counts, as Prometheus wants
        text = httpx.get(url + "/metrics", timeout=5).text
        counted = (sample(text, "hit"), sample(text, "miss"))
        assert counted == per_process[name]


def sample(metrics: str, outcome: str) -> int:
    """``semcache_requests_total`` of the chat route for ``outcome`` (0 when not there yet)."""
    line = f'semcache_requests_total{{route="chat",outcome="{outcome}"}} '
    found = [int(x.removeprefix(line)) for x in metrics.splitlines() if x.startswith(line)]
    return found[0] if found else 0


# -- (e) a replica killed mid-run ----------------------------------------------------------------


class KeptAsking:
    """Three clients asking ``warm`` (a hit) over and over, and one asking ``held`` of a
    ``fake-hold`` model, each on its own thread: what they were served and every failure (an
    error, a wrong answer) is recorded."""

    def __init__(self, replicas: ReplicaSet, warm: str, held: str) -> None:
        self._replicas = replicas
        self._warm = warm
        self._held = held
        self.failures: list[str] = []
        self.served: list[str] = []
        """The replica that answered each hit, in order."""
        self.held_answer: list[Answer] = []
        self._stop = threading.Event()
        self._askers = [threading.Thread(target=self._keep_asking) for _ in range(3)]
        self._holder = threading.Thread(target=self._ask_held)

    def hold(self) -> None:
        self._holder.start()

    def ask(self) -> None:
        for t in self._askers:
            t.start()

    def stop(self) -> None:
        """Once the held answer is released."""
        self._stop.set()
        for t in [*self._askers, self._holder]:
            if t.ident is not None:
                t.join(30)

    def _keep_asking(self) -> None:
        with sdk(self._replicas) as client:
            while not self._stop.is_set():
                try:
                    answer = ask(client, self._warm)
                except Exception as exc:  # every failure is recorded, none may happen
                    self.failures.append(f"{exc!r} ({exc.__cause__!r})")
                    continue
                if answer.content != f"answer 1: {self._warm}":
                    self.failures.append(f"wrong answer {answer}")
                self.served.append(answer.replica)

    def _ask_held(self) -> None:
        with sdk(self._replicas) as client:
            try:
                self.held_answer.append(ask(client, self._held, "fake-hold"))
            except Exception as exc:
                self.failures.append(f"held request: {exc!r}")


def test_a_killed_replica_is_taken_out_and_no_request_fails(
    start_replicas: StartReplicas, fake_upstream: FakeUpstream
) -> None:
    """SIGKILL one replica while three clients keep asking (no client retries) and while it is
    in the middle of answering a request that waits on the upstream.

    Asserted: every client request gets its right answer; the held request comes back from the
    other replica; the balancer marks the dead one DOWN (``fall`` failed ``GET /healthz``) and,
    from then on, sends it nothing; its retry counters moved. How the balancer absorbs the kill:
    requests cut off before any answer byte are sent again to the other replica (``retry-on
    empty-response``, possible because ``option http-buffer-request`` has the whole request in
    hand before it is sent), and requests sent to the dead replica before the health check
    notices fail to connect and go to the other one (``retry-on conn-failure``, ``option
    redispatch``). Not covered: a request whose answer had started (a stream under way) cannot
    be replayed by the balancer and fails; the hits here are answered in one write."""
    replicas = start_replicas()
    warm = question()
    held = question()
    with sdk(replicas) as client:
        assert ask(client, warm).cache == "MISS"

    load = KeptAsking(replicas, warm, held)
    served = load.served
    load.hold()
    try:
        stats = replicas.balancer.stats
        wait_for("the held request reached the upstream", lambda: fake_upstream.calls() == 2)
        (victim,) = [n for n in replicas.proxies if int(stats()[n]["scur"]) == 1]
        survivor = next(n for n in replicas.proxies if n != victim)
        load.ask()
        wait_for("both replicas served hits", lambda: {"r0", "r1"} <= set(served))
        replicas.proxies[victim].send_signal(signal.SIGKILL)
        replicas.proxies[victim].wait(5)
        taken_out = replicas.balancer.wait_until(victim, "DOWN")
        # The dead replica held the single-flight lock for the held question: the survivor
        # waits it out (LOCK_TTL_SECONDS) and then asks the upstream itself.
        wait_for("the held request was retried on the survivor", lambda: fake_upstream.calls() == 3)
        fake_upstream.release.set()
        after_down = len(served)
        wait_for("50 more hits", lambda: len(served) >= after_down + 50)
    finally:
        fake_upstream.release.set()
        load.stop()
    assert load.failures == []
    assert load.held_answer == [Answer(survivor, "MISS", "", f"answer 3: {held}")]
    assert set(served[after_down:]) == {survivor}
    retried = replicas.balancer.stats()[victim]
    assert int(retried["wretr"]) + int(retried["wredis"]) > 0
    assert taken_out < 5.0


def test_a_replica_stopped_gracefully_finishes_its_request_and_no_request_fails(
    start_replicas: StartReplicas, fake_upstream: FakeUpstream
) -> None:
    """SIGTERM (a rolling restart) while three clients keep asking and while the replica waits
    on the upstream for a request: it stops taking connections, the balancer marks it DOWN and
    sends the rest to the other replica, and the request it had answers from it before it
    exits. No client request fails; no request is asked upstream twice."""
    replicas = start_replicas()
    warm = question()
    held = question()
    with sdk(replicas) as client:
        assert ask(client, warm).cache == "MISS"

    load = KeptAsking(replicas, warm, held)
    served = load.served
    load.hold()
    try:
        stats = replicas.balancer.stats
        wait_for("the held request reached the upstream", lambda: fake_upstream.calls() == 2)
        (stopping,) = [n for n in replicas.proxies if int(stats()[n]["scur"]) == 1]
        other = next(n for n in replicas.proxies if n != stopping)
        load.ask()
        wait_for("both replicas served hits", lambda: {"r0", "r1"} <= set(served))
        replicas.proxies[stopping].send_signal(signal.SIGTERM)
        replicas.balancer.wait_until(stopping, "DOWN")
        after_down = len(served)
        fake_upstream.release.set()
        exit_code = replicas.proxies[stopping].wait(DEADLINE_SECONDS)
        wait_for("50 more hits", lambda: len(served) >= after_down + 50)
    finally:
        fake_upstream.release.set()
        load.stop()
    assert load.failures == []
    # uvicorn re-raises the signal it handled once it has shut down (see test_fault_load.py).
    assert exit_code == -signal.SIGTERM
    assert load.held_answer == [Answer(stopping, "MISS", "", f"answer 2: {held}")]
    assert set(served[after_down:]) == {other}
    assert fake_upstream.calls() == 2
