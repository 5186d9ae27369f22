"""Building responses: JSON bodies with raw headers, errors, and relayed upstream streams.

The drivers of :mod:`proxy.cache` answer with these, and so do the handlers of
:mod:`proxy.http` (errors, pass-through), which import the cache: so they live here, below
both, and every import runs downwards."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.errors import HTTPError, UpstreamError, openai_error_from_upstream
from proxy.stores import Entry
from proxy.upstream import Headers, Upstream, UpstreamResponse, header, response_headers

log = logging.getLogger("semcache.responses")

JSON = (b"content-type", b"application/json")


def cache_headers(
    state: str,
    entry: Entry | None = None,
    *,
    age: float = 0.0,
    lookup: str = "exact",
    similarity: float | None = None,
    reason: str | None = None,
) -> Headers:
    headers: Headers = [(b"x-cache", state.encode())]
    if reason is not None:
        headers.append((b"x-cache-reason", reason.encode()))
    if entry is not None:
        headers += hit_headers(lookup, age, entry.id)
        if similarity is not None:
            headers.append((b"x-cache-similarity", f"{similarity:.4f}".encode()))
    return headers


def hit_headers(lookup: str, age: float, entry_id: str | None) -> Headers:
    """What a hit says of what served it: how it was found, its ``Age``, and the entry's id
    (None for an answer made of several entries: an embeddings batch)."""
    headers = [(b"x-cache-lookup", lookup.encode()), (b"age", b"%d" % max(0, math.floor(age)))]
    if entry_id is not None:
        headers.append((b"x-cache-entry-id", entry_id.encode()))
    return headers


def raw_response(
    body: bytes,
    status_code: int,
    headers: Headers,
    *,
    then: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """A buffered response with exactly ``headers`` (plus the content length). ``then`` runs
    once the body is handed over, however that went, before the response's task ends."""
    return _Buffered(body, status_code, headers, then)


class _Buffered(Response):
    """Starlette's ``Response`` minus what a prebuilt body with raw headers does not need."""

    def __init__(
        self,
        body: bytes,
        status_code: int,
        headers: Headers,
        then: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.body = body
        self.status_code = status_code
        self.raw_headers = [(b"content-length", b"%d" % len(body)), *headers]
        self.background = None
        self._then = then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = False
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            await send({"type": "http.response.body", "body": self.body})
            sent = True
        finally:
            if self._then is not None:
                await _finish(self._then, shielded=not sent)


def error_response(error: HTTPError) -> Response:
    return raw_response(error.body(), error.status_code, [JSON, *error.headers])


MAX_ERROR_BODY_BYTES = 64 * 1024
"""A non-JSON upstream error larger than this is relayed as it is, not rewritten."""


def upstream_answer(body: bytes, status_code: int, headers: Headers) -> Response:
    """A buffered upstream answer, errors in OpenAI format (:func:`as_openai_error`)."""
    body, headers = as_openai_error(body, status_code, headers)
    return raw_response(body, status_code, headers)


def as_openai_error(body: bytes, status_code: int, headers: Headers) -> tuple[bytes, Headers]:
    """An upstream error in another format than JSON becomes an OpenAI-format error with the
    same status (its text kept in the message), so that every error a client gets parses the
    same way; anything else is returned as it is."""
    if status_code >= 400 and len(body) <= MAX_ERROR_BODY_BYTES:
        converted = openai_error_from_upstream(status_code, body)
        if converted is not None:
            kept = [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]
            return converted, [JSON, *kept]
    return body, headers


def relay(
    upstream: Upstream,
    response: UpstreamResponse,
    *,
    extra_headers: Headers,
    observe: Callable[[bytes], bool] | None = None,
    rewrite: Rewrite | None = None,
    on_complete: Callable[[], Awaitable[None]] | None = None,
    on_finish: Callable[[], Awaitable[None]] | None = None,
    openai_errors: bool = True,
    persist: Callable[[], bool] | None = None,
    head: bool = False,
) -> Response:
    """Relay an upstream response as it arrives; never buffered.

    Each chunk goes to the client first, then to ``observe``. ``on_complete`` runs only when the
    upstream body ended cleanly and all of it was handed to the client, before the response
    ends (a client that left just then may not have read it all, but the answer is complete).
    A transport failure after the first bytes can no longer change the status: an SSE stream
    gets a final ``error`` event; any other body is left unended, and the server drops the
    connection (ended, it would read as whole). A client that goes away stops the relay and
    closes the upstream response, unless ``observe`` has said the answer is whole
    (returned True): clients stop reading at ``[DONE]``, and the upstream's end of body, just
    behind it, is still read so that ``on_complete`` runs. ``on_finish`` runs last, however it
    ended. ``rewrite`` changes what the client gets (``observe`` still sees the upstream's bytes).
    ``openai_errors``: a small non-JSON upstream error is answered in OpenAI's format (off for
    Ollama's API, whose clients read its own errors, relayed as they are). ``persist``: asked
    when the client goes away; True (others wait for this answer: a single flight's followers)
    and the upstream body is still read to its end, to ``observe`` and ``on_complete``.
    The upstream's ``Content-Length`` is kept when the bytes relayed are the upstream's own
    (no ``rewrite``; a decoded body comes without one): a download shows its size, and a body
    cut short is seen as cut. An event stream's is not: a cut one gets an ``error`` event;
    nor a 204's or 304's, which have no body to measure.
    ``head``: the answer to a ``HEAD`` request, which has no body (RFC 9110 §9.3.2): its
    ``Content-Length`` is the one a ``GET`` would get, kept as the upstream sent it (uvicorn
    adds none to a HEAD answer), and an error is relayed as it came, having no body to rewrite.
    """
    headers = response_headers(response, decoded=False)
    if not head and openai_errors and _is_foreign_error(response):
        return _ForeignError(upstream, response, extra_headers, on_finish)
    if head or (
        rewrite is None
        and response.status_code not in _NO_BODY
        and not is_plain_event_stream(response)
    ):
        length = header(response, b"content-length")
        if length is not None:
            headers.append((b"content-length", length))
    return _Relay(
        upstream, response, [*headers, *extra_headers],
        observe=observe, rewrite=rewrite, on_complete=on_complete, on_finish=on_finish,
        persist=persist,
    )  # fmt: skip


_NO_BODY = frozenset({204, 304})
"""Answers without a body: a 304's ``Content-Length`` is the representation's (RFC 9110
§8.6), which the server would wait for as a body, fail, and drop the connection."""
_READABLE_ENCODINGS = frozenset({b"gzip", b"x-gzip", b"deflate", b"identity"})


def _is_foreign_error(response: UpstreamResponse) -> bool:
    """A small upstream error that is not JSON (nor an event stream): read and rewritten."""
    if response.status_code < 400:
        return False
    content_type = header(response, b"content-type") or b""
    if b"json" in content_type or content_type.startswith(b"text/event-stream"):
        return False
    length = header(response, b"content-length")
    if length is None or not length.isdigit() or int(length) > MAX_ERROR_BODY_BYTES:
        return False
    encoding = header(response, b"content-encoding")
    codings = {c.strip().lower() for c in encoding.split(b",")} if encoding else set()
    return codings <= _READABLE_ENCODINGS


class _ForeignError(Response):
    """An upstream error in another format than JSON, answered in OpenAI format."""

    def __init__(
        self,
        upstream: Upstream,
        response: UpstreamResponse,
        extra_headers: Headers,
        on_finish: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.status_code = response.status_code
        self.background = None
        self._upstream = upstream
        self._response = response
        self._extra_headers = extra_headers
        self._on_finish = on_finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            try:
                body = await self._upstream.read(self._response)
            except UpstreamError as exc:
                answer = error_response(exc)
            else:
                headers = response_headers(self._response, decoded=True)
                answer = upstream_answer(body, self.status_code, [*headers, *self._extra_headers])
            await answer(scope, receive, send)
        finally:
            if self._on_finish is not None:
                await _finish(self._on_finish, shielded=True)


class Rewrite(Protocol):
    """Turns a relayed body into what the client gets, chunk by chunk."""

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Relay(Response):
    """Pure ASGI, with one watcher task for the client's disconnect (uvicorn's ``send`` does
    not fail once the client is gone, so something must listen): cheaper than a task group."""

    def __init__(
        self,
        upstream: Upstream,
        response: UpstreamResponse,
        headers: Headers,
        *,
        observe: Callable[[bytes], bool] | None,
        rewrite: Rewrite | None,
        on_complete: Callable[[], Awaitable[None]] | None,
        on_finish: Callable[[], Awaitable[None]] | None,
        persist: Callable[[], bool] | None = None,
    ) -> None:
        self.status_code = response.status_code
        self.raw_headers = headers
        self._persist = persist
        self._rewrite = rewrite
        self.background = None
        self._upstream = upstream
        self._response = response
        self._observe = observe
        self._on_complete = on_complete
        self._on_finish = on_finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = _RelayState()
        # The watcher starts once this task first yields: while it waits for the upstream the
        # watcher is there, and an answer whose first bytes are already in does not wait for it.
        start = asyncio.get_running_loop().call_soon(_watch, task, state, receive, self._persist)
        ended = False
        try:
            completed = await self._stream(send, state)
            # The body is out. The client may leave now without cutting the store short, and the
            # response ends only once the entry is stored: the client's next request finds it.
            state.streaming = False
            if completed is None:
                # Cut short, and not an event stream that could say so: the body is left
                # unended, and the server drops the connection (a chunked body ended here, or
                # a decoded one without its Content-Length, would read as whole to the client).
                return
            if completed and self._on_complete is not None:
                await self._on_complete()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            ended = True
        except asyncio.CancelledError:
            if not state.client_gone or task.uncancel() > 0:
                raise  # not (only) the watcher's cancellation: shutdown, timeout
        finally:
            state.streaming = False
            start.cancel()
            if state.watcher is not None:
                state.watcher.cancel()
            if self._on_finish is not None:
                await _finish(self._on_finish, shielded=not ended)

    async def _stream(self, send: Send, state: _RelayState) -> bool | None:
        """Everything but the end of the response; True when the whole upstream body was
        handed to the client (or to uvicorn, which drops what a client gone no longer reads);
        None when the upstream failed mid-body and the body must not be ended."""
        response = self._response
        observe = self._observe
        completed: bool | None = False
        handed_over = False
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            try:
                rewrite = self._rewrite
                async for chunk in self._upstream.iter_raw(response):
                    out = chunk if rewrite is None else rewrite.feed(chunk)
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    if observe is not None and observe(chunk):
                        state.streaming = False  # whole: a client leaving now stops nothing
                if rewrite is not None and (rest := rewrite.flush()):
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
                completed = True
            except UpstreamError as exc:
                log.warning("upstream failed mid-response: %s", exc.message)
                if is_plain_event_stream(response):
                    error_event = b"data: " + exc.body() + b"\n\n"
                    await send(
                        {"type": "http.response.body", "body": error_event, "more_body": True}
                    )
                else:
                    completed = None
            handed_over = True
        finally:
            await _finish(response.aclose, shielded=not handed_over)
        return completed


async def _finish(step: Callable[[], Awaitable[None]], *, shielded: bool) -> None:
    """Run a step that must complete. Leaving on a failure (a cancellation, say) it runs
    shielded; on the usual way out it does not need to, and a cancel scope costs about 9 µs."""
    if not shielded:
        await step()
        return
    with anyio.CancelScope(shield=True):
        await step()


class _RelayState:
    __slots__ = ("client_gone", "streaming", "watcher")

    def __init__(self) -> None:
        self.streaming = True
        self.client_gone = False
        self.watcher: asyncio.Future[None] | None = None


def _watch(
    task: asyncio.Task[Any],
    state: _RelayState,
    receive: Receive,
    persist: Callable[[], bool] | None,
) -> None:
    if not state.streaming:
        return
    watcher = state.watcher = asyncio.ensure_future(_disconnect(receive))
    watcher.add_done_callback(functools.partial(_client_left, task, state, persist))


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the rest of a request body nobody reads any more


def _client_left(
    task: asyncio.Task[Any],
    state: _RelayState,
    persist: Callable[[], bool] | None,
    watcher: asyncio.Future[None],
) -> None:
    if watcher.cancelled() or watcher.exception() is not None or not state.streaming:
        return
    if persist is not None and persist():
        return  # others wait for this answer: read on (uvicorn drops what nobody reads)
    state.client_gone = True
    task.cancel()


def is_plain_event_stream(response: UpstreamResponse) -> bool:
    """An uncompressed SSE body: semcache can read its events and append one of its own."""
    content_type = header(response, b"content-type")
    return (
        content_type is not None
        and content_type.startswith(b"text/event-stream")
        and header(response, b"content-encoding") is None
    )
