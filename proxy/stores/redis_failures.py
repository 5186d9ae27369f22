"""What a Redis error means to the store: which errors say Redis could not do a command (each
becomes a :class:`~proxy.errors.StoreError`), which of them are an outage rather than one
command refused, and the rest the store takes after an outage.

After an outage the store answers "unavailable" at once for ``retry_seconds`` instead of
waiting on a dead server each request, then tries again; redis-py reconnects by itself (to the
new master after a Sentinel failover; to the slot's new owner after a cluster ``MOVED``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from proxy.errors import StoreError
from proxy.stores.resp import ReplyError

FAILURES = (ReplyError, RedisError, RedisClusterException, OSError)
"""What the clients raise when Redis cannot do a command: each becomes a StoreError. The lean
client raises ReplyError and OSError; redis-py RedisError, and RedisClusterException (not a
RedisError) when no node of a cluster can be reached or a slot has no owner."""


OUTAGE_REPLIES = frozenset({"LOADING", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOAUTH",
                            "WRONGPASS"})  # fmt: skip
"""Error replies that say the server cannot serve anything now (loading, no master, a demoted
primary, lost credentials): the store is given a rest. Any other error reply (out of memory,
no permission for one command, a wrong type) fails that operation only."""


def is_outage(exc: Exception) -> bool:
    """Whether ``exc`` means Redis is unreachable or unable to serve, not one command refused."""
    if isinstance(exc, ReplyError):
        return str(exc).split(" ", 1)[0] in OUTAGE_REPLIES
    if isinstance(exc, ResponseError):  # redis-py: LOADING and NOAUTH are ConnectionErrors
        return isinstance(exc, ReadOnlyError | ClusterDownError)
    return True


class Failures:
    """One store's failures and its rest after an outage (until ``until`` on its clock)."""

    def __init__(self, *, retry_seconds: float, clock: Callable[[], float]) -> None:
        self._retry_seconds = retry_seconds
        self._clock = clock
        self.until = 0.0

    def check(self) -> None:
        """Fail fast while the store rests."""
        if self._clock() < self.until:
            raise StoreError("redis is unavailable; retrying shortly")

    def __enter__(self) -> None:
        """``with failures:`` around a store's commands: fail fast while the store rests, and
        any of :data:`FAILURES` raised inside becomes its :class:`StoreError` (:meth:`failed`)."""
        self.check()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, FAILURES):
            raise self.failed(exc) from exc

    def rest(self) -> None:
        self.until = self._clock() + self._retry_seconds

    def recovered(self) -> None:
        self.until = 0.0

    def failed(self, exc: Exception) -> StoreError:
        """The error for ``exc``. An outage rests the store for ``retry_seconds`` (every call
        fails fast meanwhile); a refused command fails alone, so one write refused for lack of
        memory does not stop the reads of what the store still holds."""
        if is_outage(exc):
            self.rest()
        return StoreError(f"redis: {type(exc).__name__}: {exc}")
