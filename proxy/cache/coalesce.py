"""Single flight: concurrent identical misses make one upstream call.

The first request for a key leads: it calls the upstream; the others follow and wait, bounded,
for its outcome. A stored answer is served to every follower. An upstream error is handed to
them as it is (fresh, never cached). A leader whose client goes away while it is followed
reads its answer to the end all the same, for them. Anything else (a truncated answer, a
timeout) sends each follower upstream on its own. Across replicas, the leader also
takes a short lock in the store; a replica that finds the lock taken waits for the entry to
appear instead of calling the upstream itself.

A request whose lookup missed just before a flight for its key landed would otherwise find no
flight to follow and call the upstream again: a client that repeats a question the moment its
streamed answer ends does exactly that, since the entry is stored after the last event. So each
flight that lands an entry is numbered; a request notes the number before its lookup, and one
that then leads a flight for a key that landed since looks in the cache once more.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from proxy.requests import CacheControl, is_fresh
from proxy.stores import Cache, Entry
from proxy.upstream import Headers

LOCK_TTL_SECONDS = 3.0
REPLICA_POLL_SECONDS = 0.05
LOCK_KEPT_MAX_SECONDS = 3600.0
"""The longest a leader keeps the replica lock: its upstream call (and the stream it relays)
may last far beyond the followers' wait; this only bounds a leader that never publishes."""


@dataclass(frozen=True, slots=True)
class Outcome:
    entry: Entry | None = None
    """The answer the leader stored: followers serve it."""
    status_code: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    """An upstream error the leader got (status >= 400): followers answer with it too."""

    @property
    def is_failure(self) -> bool:
        return self.entry is None and self.status_code >= 400


class Flight:
    __slots__ = ("_done", "_finished", "followers", "outcome")

    def __init__(self) -> None:
        # The event exists only once someone follows: most flights have no follower.
        self._done: anyio.Event | None = None
        self._finished = False
        self.outcome: Outcome | None = None
        self.followers = 0

    async def wait(self, timeout_seconds: float) -> Outcome | None:
        self.followers += 1
        if not self._finished:
            if self._done is None:
                self._done = anyio.Event()
            with anyio.move_on_after(timeout_seconds):
                await self._done.wait()
        return self.outcome

    def finish(self, outcome: Outcome | None) -> None:
        if not self._finished:
            self._finished = True
            self.outcome = outcome
            if self._done is not None:
                self._done.set()


class SingleFlight:
    def __init__(self, remembered: int = 4096) -> None:
        self._flights: dict[str, Flight] = {}
        self._landings: dict[str, int] = {}
        """Key -> number of the last flight for it that landed an entry; the newest
        ``remembered`` keys. A key forgotten costs at most one more upstream call."""
        self._remembered = remembered
        self.landed = 0
        """How many flights have landed an entry: read before a lookup, for ``landed_since``."""

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = Flight()
        return flight, True

    def landed_since(self, key: str, landed: int) -> bool:
        """Whether a flight for ``key`` landed an entry after ``landed`` was read."""
        return self._landings.get(key, 0) > landed

    def finish(self, key: str, flight: Flight, outcome: Outcome | None) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if outcome is not None and outcome.entry is not None:
            self.landed += 1
            landings = self._landings
            landings.pop(key, None)  # to the newest end
            landings[key] = self.landed
            if len(landings) > self._remembered:
                del landings[next(iter(landings))]
        flight.finish(outcome)

    def __len__(self) -> int:
        return len(self._flights)


Publish = Callable[[Outcome | None], Awaitable[None]]
EntryPublish = Callable[[Entry | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Turn:
    """What single flight decided for a request whose lookup missed."""

    outcome: Outcome | None = None
    """Found while it waited or looked again: an entry to serve (``lookup`` says how it was
    found), or the leader's upstream error."""
    lookup: str = ""
    publish: Publish | None = None
    """Set when this request leads: it calls the upstream, then this once with what it stored
    (or None), whatever happens; that frees its followers and the replica lock."""
    followed: Callable[[], bool] | None = None
    """Set when this request leads: whether another request follows it. A leader whose client
    goes away while it is followed reads its answer to the end all the same, for them."""


def entries_of(publish: Publish | None) -> EntryPublish | None:
    """``publish`` for a route whose followers are served only a stored entry (an upstream
    error is not handed on: each follower asks for itself)."""
    if publish is None:
        return None

    async def publish_entry(entry: Entry | None) -> None:
        await publish(None if entry is None else Outcome(entry=entry))

    return publish_entry


async def take_turn(
    cache: Cache,
    flights: SingleFlight,
    key: str,
    control: CacheControl,
    landed: int,
    *,
    wait_seconds: float,
) -> Turn:
    """Follow the flight for ``key`` (waiting up to ``wait_seconds`` for its outcome), or lead
    it: then look once more if a flight for it landed since ``landed`` (read before the
    lookup), and on a store replicas share take the replica lock or wait for the replica that
    holds it. An empty Turn: ask the upstream without publishing (the leader stored nothing)."""
    flight, leads = flights.join(key)
    if not leads:
        outcome = await flight.wait(wait_seconds)
        return Turn(outcome, "coalesced") if outcome is not None else Turn()
    token = secrets.token_hex(8) if cache.shared else ""
    try:
        entry, lookup, locked = await before_leading(
            cache, flights, key, control, landed, token, wait_seconds=wait_seconds
        )
    except BaseException:
        flights.finish(key, flight, None)  # never leave a flight behind
        raise
    if entry is not None:
        flights.finish(key, flight, Outcome(entry=entry))
        return Turn(Outcome(entry=entry), lookup)
    keeper = LockKeeper(cache, key, token, LOCK_KEPT_MAX_SECONDS) if locked else None

    async def publish(outcome: Outcome | None) -> None:
        flights.finish(key, flight, outcome)
        if keeper is not None:
            keeper.stop()
            await cache.unlock(key, token)

    return Turn(publish=publish, followed=lambda: flight.followers > 0)


class LockKeeper:
    """Keeps the replica lock while this process leads, until it publishes: the lock stays
    short, so a replica that dies while leading holds the others up for at most
    ``LOCK_TTL_SECONDS``, while one that waits long on the upstream keeps it (renewed up to
    ``timeout_seconds``). Renewal starts from a timer, not a task: most misses end before the
    first renewal is due."""

    def __init__(self, cache: Cache, key: str, token: str, timeout_seconds: float) -> None:
        self._cache = cache
        self._key = key
        self._token = token
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout_seconds
        self._timer: asyncio.TimerHandle | None = loop.call_later(LOCK_TTL_SECONDS / 3, self._start)
        self._task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self._deadline:
            if not await self._cache.extend_lock(self._key, self._token, LOCK_TTL_SECONDS):
                return
            await anyio.sleep(LOCK_TTL_SECONDS / 3)


async def before_leading(
    cache: Cache,
    flights: SingleFlight,
    key: str,
    control: CacheControl,
    landed: int,
    token: str,
    *,
    wait_seconds: float,
) -> tuple[Entry | None, str, bool]:
    """The answer, when it is there before this request leads, and how it was found; and
    whether the replica lock was taken (only with a ``token``: a store replicas share).
    Stored by this process or another replica while the request looked, it is an exact hit;
    stored by the replica that holds the lock, a coalesced one."""

    def fresh(entry: Entry | None) -> bool:
        return entry is not None and is_fresh(cache.clock() - entry.created_at, control)

    if flights.landed_since(key, landed):
        entry = await cache.get(key)
        if fresh(entry):
            return entry, "exact", False
    if not token:
        return None, "", False
    # The lock and a second look leave in one write (one round trip on Redis), the look
    # second. A replica stores its answer before it releases the lock, so when the lock is
    # taken here, the look comes after any answer stored meanwhile, and finds it.
    locked, entry = await asyncio.gather(
        cache.try_lock(key, token, LOCK_TTL_SECONDS), cache.get(key)
    )
    if fresh(entry):
        if locked:
            await cache.unlock(key, token)
        return entry, "exact", False
    if locked:
        return None, "", True
    return await _other_replica(cache, key, wait_seconds, fresh), "coalesced", False


async def _other_replica(
    cache: Cache, key: str, wait_seconds: float, fresh: Callable[[Entry | None], bool]
) -> Entry | None:
    """Another replica holds the lock: wait for its entry while it does. Only an entry fresh
    for this request will do (the one it found too old for its ``max-age`` is still there
    until the lock holder replaces it), and one last look follows the lock's release: the
    holder stores, then unlocks, maybe between this replica's two reads."""
    with anyio.move_on_after(wait_seconds):
        while True:
            await anyio.sleep(REPLICA_POLL_SECONDS)
            entry = await cache.get(key)
            if fresh(entry):
                return entry
            if not await cache.is_locked(key):
                entry = await cache.get(key)
                return entry if fresh(entry) else None
    return None
