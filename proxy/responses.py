"""Building responses: JSON bodies with raw headers, errors, and relayed upstream streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from proxy.errors import HTTPError, UpstreamError
from proxy.upstream import Headers, Upstream, UpstreamResponse, header, response_headers

log = logging.getLogger("semcache.responses")

JSON = (b"content-type", b"application/json")


def raw_response(body: bytes, status_code: int, headers: Headers) -> Response:
    """A buffered response with exactly ``headers`` (plus the content length)."""
    response = Response(body, status_code=status_code)
    response.raw_headers.extend(headers)
    return response


def error_response(error: HTTPError) -> Response:
    return raw_response(error.body(), error.status_code, [JSON, *error.headers])


def relay(
    upstream: Upstream,
    response: UpstreamResponse,
    *,
    extra_headers: Headers,
    observe: Callable[[bytes], None] | None = None,
    on_complete: Callable[[], Awaitable[None]] | None = None,
    on_finish: Callable[[], Awaitable[None]] | None = None,
) -> StreamingResponse:
    """Relay an upstream response as it arrives; never buffered.

    Each chunk goes to the client first, then to ``observe``. ``on_complete`` runs only when the
    upstream body ended cleanly and the client took all of it. A transport failure after the
    first bytes can no longer change the status: an SSE stream gets a final ``error`` event, any
    other body just ends. The upstream response is closed by whoever ends first, the client
    (disconnect) or the upstream. ``on_finish`` runs last, however the stream ended.
    """
    headers = response_headers(response, decoded=False)
    is_sse = is_event_stream(response)
    can_append = is_sse and header(response, b"content-encoding") is None

    async def body() -> AsyncIterator[bytes]:
        try:
            completed = False
            try:
                async for chunk in upstream.iter_raw(response):
                    yield chunk
                    if observe is not None:
                        observe(chunk)
                completed = True
            except UpstreamError as exc:
                log.warning("upstream failed mid-response: %s", exc.message)
                if can_append:
                    yield b"data: " + exc.body() + b"\n\n"
            finally:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
            if completed and on_complete is not None:
                await on_complete()
        finally:
            if on_finish is not None:
                with anyio.CancelScope(shield=True):
                    await on_finish()

    streaming = StreamingResponse(
        body(), status_code=response.status_code, background=BackgroundTask(response.aclose)
    )
    streaming.raw_headers = [*headers, *extra_headers]
    return streaming


def is_event_stream(response: UpstreamResponse) -> bool:
    content_type = header(response, b"content-type")
    return content_type is not None and content_type.startswith(b"text/event-stream")
