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
  lives at most as long as the upstream keeps responses (30 days, whatever the TTL asked). So
  ``store`` is part of the key: an answer the upstream kept never serves a request that asked it
  not to keep one, nor the reverse. With ``SEMCACHE_SHARED_CACHE`` (tenants share entries) a
  response kept upstream for one key would be served to another, whose
  ``previous_response_id`` would point at someone else's: only ``"store": false`` requests are
  cached then.
- Only ``status: completed`` responses with output are stored: ``incomplete``, ``failed`` and
  errors never.

Semantic matching (a reworded last user message served the stored answer, as on chat) is for
``"store": false`` requests only. A hit serves the ``id`` of the response the upstream created
for the first wording; had that response been stored upstream, a client continuing with it as
``previous_response_id`` would carry on a conversation whose recorded question is not the one
its user asked (and its ``input_items`` would show it). With ``store`` left at its default
(true) the route is exact only (``X-Cache-Reason: stored-response``). For the lookup the request
is read as chat messages (:func:`semantic_body`): each input item a message, ``instructions`` a
field of its own (never the same as a system item), and the partition holds everything but the
last user message's text, in partitions of its own (never a chat completion's or Ollama's).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from proxy.cache.exact import Format
from proxy.cache.keys import responses_key
from proxy.cache.policy import usage_tokens, with_served_tier
from proxy.cache.responses_stream import Ending, is_whole, replay
from proxy.canonical import normalize_text
from proxy.requests import CacheControl, ChatRequest

KEPT_SECONDS = 30 * 86400
"""How long the upstream keeps a response it stored (OpenAI API reference, "Create a model
response", ``store``: 30 days)."""


def kept_no_longer(body: dict[str, Any], control: CacheControl) -> CacheControl:
    """``control`` with a lifetime no longer than the upstream keeps the response: a hit serves
    its id, to continue from (``previous_response_id``) or fetch, which must still exist there
    (an ``X-Cache-TTL`` or ``SEMCACHE_TTL`` past 30 days would serve a dropped one). A
    ``"store": false`` response has no such id."""
    if body.get("store") is False or control.ttl_seconds <= KEPT_SECONDS:
        return control
    return replace(control, ttl_seconds=KEPT_SECONDS)


SERVER_STATE_FIELDS = ("previous_response_id", "conversation", "prompt")
SERVER_STATE_TOOLS = frozenset({"file_search", "mcp"})
"""Tools that read what the account keeps and may change (a vector store's files, a remote MCP
server's data): the same request can mean another answer tomorrow."""


def not_cacheable(body: dict[str, Any], *, shared: bool) -> str | None:
    """Why this request is passed through (``X-Cache-Reason: bypass:<why>``), or None."""
    if any(body.get(name) is not None for name in SERVER_STATE_FIELDS):
        return "server-state"
    if any(_reads_server_state(tool) for tool in _list(body.get("tools"))):
        return "server-state"
    if any(_is_a_reference(item) for item in _list(body.get("input"))):
        return "server-state"
    if body.get("background") is True:
        return "background"
    if shared and body.get("store") is not False:
        return "stored-response"
    return None


def _reads_server_state(tool: Any) -> bool:
    if not isinstance(tool, dict):
        return False
    if tool.get("type") in SERVER_STATE_TOOLS:
        return True
    # A code interpreter in a container that already exists (an id, not "auto") runs on the
    # files and state that container holds.
    return tool.get("type") == "code_interpreter" and isinstance(tool.get("container"), str)


def _is_a_reference(item: Any) -> bool:
    """An input item given by id only (``{"type": "item_reference", "id": "msg_..."}``, the
    type may be left out): an item of a response the upstream keeps, read there, and gone (the
    upstream refusing the request) once that response is deleted, as with
    ``previous_response_id``."""
    if not isinstance(item, dict):
        return False
    kind = item.get("type")
    return kind == "item_reference" or (kind is None and set(item) <= {"id", "type"})


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def semantic_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request as a chat body for semantic lookup (see the module's doc), or None when it
    lets the upstream store its response (exact lookup only).

    ``instructions`` stays a field of its own, normalized as the key normalizes it: read as a
    system message, a request with instructions X shared its partition with one that sent no
    instructions and a system item X, whose Response says ``"instructions": null``."""
    if body.get("store") is not False:
        return None
    given = body.get("input")
    items: list[Any] = [{"role": "user", "content": given}] if isinstance(given, str) else [
        _as_message(item) for item in given or ()
    ]  # fmt: skip
    if "messages" in body:
        # Chat's field, not this API's (the upstream refuses it): the items go where it was, so
        # it is kept as a last item of its own, never the user's, and nothing is compared.
        items.append({"role": NOT_AN_INPUT_FIELD, "content": body["messages"]})
    out = {k: v for k, v in body.items() if k != "input"}
    if isinstance(out.get("instructions"), str):
        out["instructions"] = normalize_text(out["instructions"])
    out["messages"] = items
    return out


NOT_AN_INPUT_FIELD = "messages (not a Responses field)"
"""The role a body's own ``messages`` field is read under (:func:`semantic_body`)."""


def _as_message(item: Any) -> Any:
    """An input item as a chat message: an ``input_text`` part becomes a text part (so a user
    message of text only can be compared), and a content of one ``input_text`` part a string;
    ``"type": "message"``, which the API takes as said when left out, is dropped. Other items
    (tool calls and their outputs, reasoning) stay as they are: they have no role, so they are
    context, and never the text compared."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        return item
    out = {k: v for k, v in item.items() if k != "type"}
    content = item.get("content")
    if isinstance(content, list):
        parts = [_as_part(part) for part in content]
        # One ``input_text`` part is what the API reads a string content as: the same request.
        # Any other list stays one (the partition keeps its parts, but for their text).
        one = parts[0] if len(parts) == 1 and isinstance(parts[0], dict) else {}
        plain = one.get("type") == "text" and len(one) == 2
        out["content"] = one["text"] if plain else parts
    return out


NOT_AN_INPUT_PART = "text (not a Responses input part)"
"""What a ``text`` part of an input item is read as."""


def _as_part(part: Any) -> Any:
    """An ``input_text`` part as chat's text part. A part typed ``text`` is chat's spelling, not
    one of this API's (the upstream answers 400, ``Invalid value: 'text'``): read as it is, it
    would be the same as a converted ``input_text`` part, and a request the upstream refuses
    would share a partition, and be served the answer, of one it accepts. So it gets a type of
    its own, which is never compared either."""
    if not isinstance(part, dict):
        return part
    if part.get("type") == "input_text" and len(part) == 2:
        return {"type": "text", "text": part["text"]}
    if part.get("type") == "text":
        return {**part, "type": NOT_AN_INPUT_PART}
    return part


ECHOED_FIELDS: dict[str, Any] = {
    "instructions": None,
    "metadata": {},
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
}
"""Request fields a Response repeats that the key leaves out (``RESPONSES_IGNORED_FIELDS``),
or keeps only normalized (``instructions``: ``"Be terse. "`` and ``"Be terse."`` share an
entry), with what the API repeats when the request has none."""


def echo(response: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A stored Response as served: the fields it repeats from its request are this request's,
    never those of the request that was stored (another end user's ``metadata`` or ``user``),
    and its ``service_tier`` the one this request would be served on."""
    served = dict(response)
    for name, absent in ECHOED_FIELDS.items():
        if name in served:
            served[name] = request.get(name, absent)
    return with_served_tier(served, request)


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
    semantic=semantic_body,
    echo=echo,
)
