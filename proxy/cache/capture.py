"""A streamed miss on the routes beside chat completions (text completions, Responses,
Ollama's native API): relayed to the client as it arrives and, once whole, joined into the
answer a non-streaming call returns and stored. (Chat keeps its own: it also asks the upstream
for usage and keeps replay hints.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response

from proxy.cache.answers import Rewrite, relay
from proxy.cache.coalesce import EntryPublish
from proxy.stores import Entry
from proxy.upstream import Headers, Upstream, UpstreamResponse


class Parser(Protocol):
    """Raw body bytes in; each complete unit out (an SSE event's data, an NDJSON line)."""

    def feed(self, chunk: bytes) -> list[bytes]: ...


class Joiner(Protocol):
    """Fed a stream's units; ``done`` once the stream ended, ``result()`` the answer it ended
    with, as a non-streaming call returns it (None: nothing to store)."""

    @property
    def done(self) -> bool: ...

    @property
    def held(self) -> int:
        """A lower bound of the bytes its result takes as stored: past the largest entry, the
        stream is not joined any further (what semcache holds of it stays bounded)."""

    def feed(self, data: bytes) -> None: ...

    def result(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Capture:
    """How a stream becomes an entry: its units, their join, and the store of the result."""

    parser: Parser
    joiner: Joiner
    store: Callable[[dict[str, Any]], Awaitable[Entry | None]]
    max_bytes: int | None = None
    """The largest entry: a stream whose join holds more is let go of, and ``too_large`` told."""
    too_large: Callable[[], None] | None = None


def relay_miss(
    upstream: Upstream,
    response: UpstreamResponse,
    *,
    extra_headers: Headers,
    capture: Capture | None,
    publish: EntryPublish | None,
    openai_errors: bool = True,
    rewrite: Rewrite | None = None,
    persist: Callable[[], bool] | None = None,
) -> Response:
    """Relay ``response``; with ``capture``, store the joined answer once the body is whole.
    The single flight (``publish``) gets the stored entry, or None, however the relay ends.
    ``rewrite`` changes what the client gets; ``capture`` still reads the upstream's bytes."""
    stored: list[Entry] = []

    async def finish() -> None:
        if publish is not None:
            await publish(stored[0] if stored else None)

    if capture is None:
        return relay(upstream, response, extra_headers=extra_headers, on_finish=finish,
                     rewrite=rewrite, openai_errors=openai_errors)  # fmt: skip
    parser: Parser | None = capture.parser
    joiner: Joiner | None = capture.joiner
    limit = capture.max_bytes

    def observe(chunk: bytes) -> bool:
        nonlocal parser, joiner
        if parser is None or joiner is None:
            return False  # let go of: too large to store
        for unit in parser.feed(chunk):
            joiner.feed(unit)
        if limit is not None and joiner.held > limit:
            parser = joiner = None
            if capture.too_large is not None:
                capture.too_large()
            return False
        return joiner.done

    async def complete() -> None:
        result = None if joiner is None else joiner.result()
        if result is not None and (entry := await capture.store(result)) is not None:
            stored.append(entry)

    return relay(upstream, response, extra_headers=extra_headers, observe=observe,
                 rewrite=rewrite, on_complete=complete, on_finish=finish,
                 openai_errors=openai_errors, persist=persist)  # fmt: skip
