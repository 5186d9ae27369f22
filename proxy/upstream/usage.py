"""Usage on every entry: streamed misses ask the upstream for it (``include_usage``), and a
client that did not ask gets the stream as it would have had it (OpenAI API reference,
"stream_options"). Without this an entry made by such a stream would serve hits with no
``usage``, and cost tracking downstream (LangChain's ``stream_usage``, say) would break.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.requests import ChatRequest
from proxy.upstream.client import IDENTITY, Upstream, UpstreamResponse

CLIENT_ERRORS = (400, 422)


@dataclass(frozen=True, slots=True)
class Opened:
    response: UpstreamResponse
    asked: bool
    """Usage was asked for on the client's behalf: strip it (:class:`UsageStripper`)."""
    refused: bytes | None = None
    """The body of a client error, read to tell it from an upstream that does not take
    ``stream_options``; ``response`` is then closed."""


async def open_stream(
    upstream: Upstream,
    url: str,
    headers: Iterable[tuple[bytes, bytes]],
    chat: ChatRequest,
    *,
    ask: bool,
) -> Opened:
    """Send a streamed chat request, asking for usage when ``ask`` and the client did not (nor
    for vLLM's continuous usage, :func:`_continuous`). An upstream that refuses the option (a
    400 or 422 naming ``stream_options``) gets the request again as the client sent it."""
    forward = upstream.forward_headers(headers, accept_encoding=IDENTITY)
    if not ask or chat.include_usage or _continuous(chat.body):
        return Opened(await upstream.send("POST", url, headers=forward, content=chat.raw), False)
    response = await upstream.send("POST", url, headers=forward, content=with_usage(chat.body))
    if response.status_code not in CLIENT_ERRORS:
        return Opened(response, True)
    body = await upstream.read(response)
    if b"stream_options" not in body:
        return Opened(response, False, refused=body)
    return Opened(await upstream.send("POST", url, headers=forward, content=chat.raw), False)


def _continuous(body: dict[str, Any]) -> bool:
    """Whether the client asks vLLM for usage on every chunk (``continuous_usage_stats``), which
    vLLM sends only with ``include_usage``: asked on its behalf, usage would come on every
    chunk, not in one chunk the stripper can take out. Such a request goes as it came."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("continuous_usage_stats"))


def with_usage(body: dict[str, Any]) -> bytes:
    """A streamed request's body asking the upstream for usage too."""
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    return orjson.dumps({**body, "stream_options": {**options, "include_usage": True}})


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class UsageStripper:
    """The upstream's stream as a client that did not ask for usage would have had it.

    semcache asks the upstream for usage on every streamed miss (``include_usage``), so that
    every entry knows its token counts; for a client that did not ask, this removes the usage
    chunk (``choices: []``) and the ``"usage": null`` the other chunks then carry. Events
    without ``"usage"`` pass byte for byte; an event is held only until its end arrives."""

    def __init__(self) -> None:
        self._partial = b""
        self._pieces: list[bytes] = []
        """Reads that cannot end an event (no CR or LF in them), after ``_partial``: joined
        only when one that may end it comes, so a long event costs its length once, not once
        per read."""

    def feed(self, chunk: bytes) -> bytes:
        if b"\n" not in chunk and b"\r" not in chunk:
            self._pieces.append(chunk)
            return b""
        if self._pieces:
            self._pieces.append(chunk)
            chunk = b"".join(self._pieces)
            self._pieces = []
        data = self._partial + chunk
        if b"\r" not in data:  # events end in a blank line of LFs: a split, no regex
            *blocks, self._partial = data.split(b"\n\n")
            return b"".join([_without_usage(block, b"\n\n") for block in blocks])
        out: list[bytes] = []
        start = 0
        for end in _EVENT_END.finditer(data):
            out.append(_without_usage(data[start : end.start()], end.group()))
            start = end.end()
        self._partial = data[start:]
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left when the stream ends (an event without its blank line)."""
        rest = b"".join([self._partial, *self._pieces])
        self._partial, self._pieces = b"", []
        return rest


_NULL_USAGE = (b',"usage":null', b', "usage": null')
"""How servers write a null usage after the first key. Unescaped quotes: JSON structure, never
text inside a string value, so the bytes can go without parsing the event."""


def _without_usage(block: bytes, end: bytes) -> bytes:
    if _NULL_USAGE[0] in block:  # the usual case once usage was asked for: every chunk has it
        return block.replace(_NULL_USAGE[0], b"", 1) + end
    if b'"usage"' not in block:
        return block + end
    for null in _NULL_USAGE:
        if null in block:
            return block.replace(null, b"", 1) + end
    lines = block.splitlines()
    data = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
    try:
        payload = orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        return block + end
    if not isinstance(payload, dict) or "usage" not in payload:
        return block + end
    if payload.get("choices") == [] and payload["usage"] is not None:
        return b""  # the usage chunk itself
    if payload["usage"] is not None:
        return block + end
    del payload["usage"]
    newline = end[: len(end) // 2]
    kept = b"".join(line + newline for line in lines if not line.startswith(b"data:"))
    return kept + b"data: " + orjson.dumps(payload) + end
