"""The upstream side: the one client to the upstream LLM API, and reading what it sends.

Code outside this package imports from here only:

- :class:`Upstream` (``client.py``): the one connection pool, request headers (and which of
  them carry a key, ``CREDENTIAL_HEADERS``, ``KEY_HEADERS``), the inflight
  limit, decoding, and the translation of transport errors into ``UpstreamError``
  (``failures.py``);
- :class:`EventParser`, :func:`replay`, :func:`event` and ``DONE_EVENT`` (``sse.py``):
  server-sent events in and out, and :func:`partial_lines`, the line splitting NDJSON shares;
- :class:`StreamAssembler` (``assembler.py``): a streamed completion put back together,
  ``UNSAID``, the envelope values that say nothing, and :func:`completion_is_storable`, whether
  a completion is a complete success; :func:`least_bytes`, a logprob item's least JSON size;
- :func:`open_stream` and :class:`UsageStripper` (``usage.py``): usage on every streamed miss.
"""

from __future__ import annotations

from proxy.upstream.assembler import UNSAID, StreamAssembler, completion_is_storable, least_bytes
from proxy.upstream.client import (
    CREDENTIAL_HEADERS,
    DECODABLE_ENCODINGS,
    IDENTITY,
    KEY_HEADERS,
    Headers,
    Upstream,
    UpstreamResponse,
    header,
    response_headers,
)
from proxy.upstream.sse import DONE_EVENT, EventParser, event, partial_lines, replay
from proxy.upstream.transport import Timeouts
from proxy.upstream.usage import UsageStripper, open_stream

__all__ = [
    "CREDENTIAL_HEADERS",
    "DECODABLE_ENCODINGS",
    "DONE_EVENT",
    "IDENTITY",
    "KEY_HEADERS",
    "UNSAID",
    "EventParser",
    "Headers",
    "StreamAssembler",
    "Timeouts",
    "Upstream",
    "UpstreamResponse",
    "UsageStripper",
    "completion_is_storable",
    "event",
    "header",
    "least_bytes",
    "open_stream",
    "partial_lines",
    "replay",
    "response_headers",
]
