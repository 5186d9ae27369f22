"""Cache keys: tenant namespace + a hash of the canonical request (:mod:`proxy.canonical`).

The canonical request keeps every field that can change the answer and drops only fields the
OpenAI API reference documents as not affecting the output (transport and bookkeeping). A field
we do not know is kept: an unknown field costs a hit, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from proxy.canonical import (
    CHAT_IGNORED_FIELDS,
    but_a_prefill,
    canonical_chat,
    canonical_numbers,
    digest,
    normalize_messages,
    normalize_parts,
    normalize_text,
)
from proxy.upstream import CREDENTIAL_HEADERS, KEY_HEADERS

ACCOUNT_HEADERS = ("openai-organization", "openai-project")
"""Which of the caller's organizations and projects answers (OpenAI API reference,
"Authentication"): what a key may use, and where a stored response lives, differ by project."""

IDENTITY_HEADERS = CREDENTIAL_HEADERS | {name.encode() for name in ACCOUNT_HEADERS}


def api_key_from(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``Authorization: Bearer``, else the first of :data:`KEY_HEADERS`."""
    auth = headers.get("authorization")
    if auth:
        return bearer(auth)
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def identity_from(
    headers: Iterable[tuple[bytes, bytes]], names: frozenset[bytes] = IDENTITY_HEADERS
) -> str | None:
    """What a request's namespace is derived from: every credential it carries upstream, and
    the organization or project it names (``names``: lower-case header names).

    One credential alone (the usual case) is the key itself, as :func:`api_key_from` gives it.
    Anything more is all taken, with the header names, in order: which credential authenticates
    is the upstream's choice, so a placeholder ``Authorization: Bearer EMPTY`` beside a real
    ``api-key`` must not put every such caller in one namespace, and one key's projects never
    share entries.
    """
    found = [(name.lower(), value.decode("latin-1")) for name, value in headers
             if name.lower() in names]  # fmt: skip
    if not found:
        return None
    if len(found) == 1 and found[0][0] in CREDENTIAL_HEADERS:
        name, value = found[0]
        return bearer(value) if name == b"authorization" else value
    return "\n".join(f"{name.decode('latin-1')}:{value}" for name, value in found)


def bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else value


def namespace_of(key: str) -> str:
    """The namespace an entry key was made in: every key is ``<route>:<namespace>:...``."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) == 3 else ""


ROUTING_HEADERS = frozenset({
    b"openai-beta", b"anthropic-version", b"anthropic-beta",
    b"x-portkey-config", b"x-portkey-provider", b"x-portkey-virtual-key",
    b"helicone-target-url", b"x-litellm-model",
})  # fmt: skip
"""Headers an upstream or a gateway in front of it reads to choose the provider, the model, the
API version or its features (OpenAI's and Anthropic's beta and version headers; Portkey's config,
provider and virtual key; Helicone's target; LiteLLM's model): the same body with another value
may get another answer. Others are named with ``SEMCACHE_IDENTITY_HEADERS``."""


NAMESPACE_HEADER = b"x-cache-namespace"
"""A request's own partition of its caller's namespace (``X-Cache-Namespace: user-42``): entries
made with one value never serve another, nor a request without it. Not sent upstream (no
``X-Cache-*`` header is)."""


def scope_of(query: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes | None:
    """What scopes a request's entries within its caller's namespace, None when nothing does.
    The URL's query string goes upstream with the body and may carry a key (``?key=``) or
    change the answer (``?api-version=``), and so may a :data:`ROUTING_HEADERS` header; and
    :data:`NAMESPACE_HEADER` is the caller's own partition: requests that differ in any of them
    never share entries."""
    scoping = sorted(
        (name.lower(), value)
        for name, value in headers
        if name.lower() in ROUTING_HEADERS or name.lower() == NAMESPACE_HEADER
    )
    if not query and not scoping:
        return None
    return b"".join([query, *(b"\n" + name + b":" + value for name, value in scoping)])


def chat_key(namespace: str, body: Mapping[str, Any]) -> str:
    """Key of a chat completion request; ``body`` has been validated."""
    return f"chat:{namespace}:{digest(canonical_chat(body))}"


def completion_key(namespace: str, body: Mapping[str, Any]) -> str:
    """Key of a legacy text completion request: every field but the chat route's ignored ones,
    the prompt exactly as sent (a trailing space changes what a model writes next)."""
    canonical = {k: canonical_numbers(v) for k, v in body.items() if k not in CHAT_IGNORED_FIELDS}
    return f"cmpl:{namespace}:{digest(canonical)}"


OLLAMA_IGNORED_FIELDS = frozenset({"stream", "keep_alive"})
"""How an Ollama result is delivered, and how long the model stays loaded after it."""
OLLAMA_EMPTY_IS_ABSENT = frozenset({"options", "tools", "images"})
"""Fields Ollama reads the same whether empty (``{}``, ``[]``) or absent (the ``ollama``
libraries send ``"tools": []``). Not ``format``: ``{}`` is a JSON schema there (an object). Not
``context``: Go decodes ``[]`` to an empty slice that is not nil, and ``/api/generate`` then
leaves out the model's own ``MESSAGE`` history (server/routes.go, ``if req.Context == nil``)."""


def ollama_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """What of an Ollama request can change its answer: no ``stream`` or ``keep_alive``, no
    ``null`` field (Ollama reads it as absent), no empty field Ollama reads as absent."""
    return {
        k: v
        for k, v in body.items()
        if k not in OLLAMA_IGNORED_FIELDS
        and v is not None
        and not (k in OLLAMA_EMPTY_IS_ABSENT and v in ([], {}))
    }


def ollama_key(namespace: str, kind: str, body: Mapping[str, Any]) -> str:
    """Key of an Ollama native API request (``kind``: chat, generate, embed, embeddings): its
    :func:`ollama_fields`, chat messages normalized as for ``/v1/chat/completions``."""
    canonical = {k: canonical_numbers(v) for k, v in ollama_fields(body).items()}
    if isinstance(canonical.get("messages"), list):
        canonical["messages"] = normalize_messages(canonical["messages"])
    return f"oll:{namespace}:{kind}:{digest(canonical)}"


RESPONSES_IGNORED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "safety_identifier", "prompt_cache_key",
     "prompt_cache_retention", "metadata", "service_tier", "store"}
)  # fmt: skip


def responses_key(namespace: str, body: Mapping[str, Any]) -> str:
    """Key of a Responses API request: every field that can change the answer, ``input`` and
    ``instructions`` text normalized as chat messages are. ``store`` is kept apart as a flag: an
    answer stored upstream (its id usable as ``previous_response_id``) never serves a request
    that asked not to store, nor the reverse (OpenAI API reference, "Create a model response")."""
    canonical: dict[str, Any] = {}
    for name, value in body.items():
        if name in RESPONSES_IGNORED_FIELDS:
            continue
        if name == "input" and isinstance(value, str):
            value = normalize_text(value)
        elif name == "input" and isinstance(value, list):
            value = _normalize_items(value)
        elif name == "instructions" and isinstance(value, str):
            value = normalize_text(value)
        elif type(value) is not str:
            value = canonical_numbers(value)
        canonical[name] = value
    canonical["store"] = body.get("store") is not False
    return f"resp:{namespace}:{digest(canonical)}"


def _normalize_items(items: list[Any]) -> list[Any]:
    """As :func:`normalize_messages`: a final assistant item is a prefill, kept as sent."""
    return but_a_prefill(items, _normalize_item)


def _normalize_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    content = item.get("content")
    if isinstance(content, str):
        return {**item, "content": normalize_text(content)}
    if isinstance(content, list):
        return {**item, "content": normalize_parts(content, ("input_text", "output_text"))}
    return item
