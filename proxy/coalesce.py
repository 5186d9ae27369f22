"""Single flight: concurrent identical misses make one upstream call.

The first request for a key leads: it calls the upstream; the others follow and wait, bounded,
for its outcome. A stored answer is served to every follower. An upstream error is handed to
them as it is (fresh, never cached). Anything else (a truncated answer, a leader whose client
went away, a timeout) sends each follower upstream on its own. Across replicas, the leader also
takes a short lock in the store; a replica that finds the lock taken waits for the entry to
appear instead of calling the upstream itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from proxy.stores.base import Entry
from proxy.upstream import Headers


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
    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def join(self, key: str) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller leads it."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = self._flights[key] = Flight()
        return flight, True

    def finish(self, key: str, flight: Flight, outcome: Outcome | None) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.finish(outcome)

    def __len__(self) -> int:
        return len(self._flights)
