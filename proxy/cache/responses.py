"""``POST /v1/responses`` (the Responses API, which the OpenAI Agents SDK and many new apps use
by default): exact caching (:mod:`proxy.cache.exact`), streamed or not, of requests that carry
their whole context.

Server-side state decides what may be cached (OpenAI API reference, "Create a model response"):

- A request that continues state the upstream keeps (``previous_response_id``,
  ``conversation``), names a prompt template kept there (``prompt``), or runs in the background
  is passed through (``X-Cache: BYPASS``): its answer depends on what the upstream holds, which
  a key of the request cannot see.
- A served response's ``id`` must be one the caller can use as ``previous_response_id``: the
  response was created upstream for the same API key (entries are per tenant), and the entry
  lives at most as long as the upstream keeps responses (30 days; the default TTL is 7). So
  ``store`` is part of the key: an answer the upstream kept never serves a request that asked it
  not to keep one, nor the reverse. With ``SEMCACHE_SHARED_CACHE`` (tenants share entries) a
  response kept upstream for one key would be served to another, whose
  ``previous_response_id`` would point at someone else's: only ``"store": false`` requests are
  cached then.
- Only ``status: completed`` responses with output are stored: ``incomplete``, ``failed`` and
  errors never.
"""

from __future__ import annotations

from typing import Any

from proxy.cache.exact import Format
from proxy.cache.keys import responses_key
from proxy.cache.policy import usage_tokens
from proxy.cache.responses_stream import Ending, is_whole, replay
from proxy.http.validate import ChatRequest

SERVER_STATE_FIELDS = ("previous_response_id", "conversation", "prompt")


def not_cacheable(body: dict[str, Any], *, shared: bool) -> str | None:
    """Why this request is passed through (``X-Cache-Reason: bypass:<why>``), or None."""
    if any(body.get(name) is not None for name in SERVER_STATE_FIELDS):
        return "server-state"
    if body.get("background") is True:
        return "background"
    if shared and body.get("store") is not False:
        return "stored-response"
    return None


def tokens(response: dict[str, Any]) -> tuple[int, int]:
    return usage_tokens(response, answer_field="output_tokens")


def _replay(response: dict[str, Any], request: ChatRequest) -> bytes:
    return replay(response)


RESPONSES = Format(
    route="responses",
    path="/responses",
    key=responses_key,
    whole=is_whole,
    tokens=tokens,
    joiner=Ending,
    replay=_replay,
)
