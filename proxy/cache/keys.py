"""Cache keys: tenant namespace + a hash of the canonical request.

The canonical request keeps every field that can change the answer and drops only fields the
OpenAI API reference documents as not affecting the output (transport and bookkeeping). A field
we do not know is kept: an unknown field costs a hit, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from proxy.errors import BadRequestError
from proxy.upstream import CREDENTIAL_HEADERS, KEY_HEADERS

# Chat fields that cannot change the answer: how it is delivered (`stream`, `stream_options`) and
# bookkeeping that the API reference says is for abuse monitoring or billing. `store` is kept
# apart (see `_canonical_chat`). The answer names its `service_tier`: a hit names the asking
# request's (`proxy.cache.policy.served_tier`).
CHAT_IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "metadata",
        "service_tier",
    }
)
EMBEDDING_IGNORED_FIELDS = frozenset({"input", "encoding_format", "user"})

_MAX_EXACT_INT_FLOAT = 2.0**53


ACCOUNT_HEADERS = ("openai-organization", "openai-project")
"""Which of the caller's organizations and projects answers (OpenAI API reference,
"Authentication"): what a key may use, and where a stored response lives, differ by project."""

IDENTITY_HEADERS = CREDENTIAL_HEADERS | {name.encode() for name in ACCOUNT_HEADERS}


def api_key_from(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``Authorization: Bearer``, else the first of :data:`KEY_HEADERS`."""
    auth = headers.get("authorization")
    if auth:
        return _bearer(auth)
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
        return _bearer(value) if name == b"authorization" else value
    return "\n".join(f"{name.decode('latin-1')}:{value}" for name, value in found)


def _bearer(value: str) -> str:
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


def scoped_namespace(
    namespace: str, query: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> str:
    """The URL's query string goes upstream with the body and may carry a key (``?key=``) or
    change the answer (``?api-version=``), and so may a :data:`ROUTING_HEADERS` header: requests
    with different ones never share entries. (Without a routing header the scope is that of the
    query alone, as before they were read.)"""
    routing = sorted(
        (name.lower(), value) for name, value in headers if name.lower() in ROUTING_HEADERS
    )
    if not query and not routing:
        return namespace
    scope = hashlib.sha256(query)
    for name, value in routing:
        scope.update(b"\n" + name + b":" + value)
    return f"{namespace}~{scope.hexdigest()[:16]}"


def chat_key(namespace: str, body: Mapping[str, Any]) -> str:
    """Key of a chat completion request; ``body`` has been validated."""
    return f"chat:{namespace}:{_digest(_canonical_chat(body))}"


def _canonical_chat(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that can change the answer, messages normalized and numbers given one
    spelling. Numbers are looked for outside the messages only: the API has none inside, and a
    number spelled two ways there costs a hit, never a wrong answer."""
    canonical: dict[str, Any] = {}
    for name, value in body.items():
        if name in CHAT_IGNORED_FIELDS or (name == "store" and value is not True):
            # ``store: true`` stays: that answer's id is a stored completion the client may
            # fetch (GET /chat/completions/{id}); one made with store false (the default) is not.
            continue
        if name == "messages":
            value = normalize_messages(value)
        elif type(value) is not str:
            value = _numbers(value)
        canonical[name] = value
    return canonical


def semantic_text(body: Mapping[str, Any], *, max_chars: int) -> str | None:
    """The text a semantic lookup compares: the last message, when it is the user's and plain
    text (a string, or text parts only) of at most ``max_chars`` characters; else None.

    Longer texts are left to the exact cache: an embedder reads only the first few hundred
    tokens, so two prompts differing further on would look identical to it.
    """
    last = body["messages"][-1]
    if not isinstance(last, dict) or last.get("role") != "user" or last.get("images"):
        return None  # not the user's, or not text alone (Ollama puts images beside the text)
    content = last.get("content")
    if isinstance(content, list):
        if not content or not all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            return None
        content = "\n".join(p["text"] for p in content)
    if not isinstance(content, str):
        return None
    text = normalize_text(content).lstrip()  # what it means: indentation aside
    return text if 0 < len(text) <= max_chars else None


def semantic_partition(
    namespace: str, body: Mapping[str, Any], embedder: str, *, api: str | None = None
) -> str:
    """Entries compared semantically share everything but the last user message's content:
    tenant, embedder, API (``api``: None for chat completions), model, every answer-changing
    parameter, tools, system prompt, earlier turns, and the last message's other fields.

    The API and embedder are hashed beside the body, never written into it: a name semcache
    set in the body (or took out of it) would be one a client can send too, and a body carrying
    it, which the upstream refuses as an unknown field, would share the partition of one that
    does not."""
    canonical = _canonical_chat(body)
    messages = canonical["messages"]
    messages[-1] = {k: v for k, v in messages[-1].items() if k != "content"}
    scope = {"api": api, "embedder": embedder, "body": canonical}
    return f"sem:{namespace}:{_digest(scope)}"


def completion_key(namespace: str, body: Mapping[str, Any]) -> str:
    """Key of a legacy text completion request: every field but the chat route's ignored ones,
    the prompt exactly as sent (a trailing space changes what a model writes next)."""
    canonical = {k: _numbers(v) for k, v in body.items() if k not in CHAT_IGNORED_FIELDS}
    return f"cmpl:{namespace}:{_digest(canonical)}"


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
    canonical = {k: _numbers(v) for k, v in ollama_fields(body).items()}
    if isinstance(canonical.get("messages"), list):
        canonical["messages"] = normalize_messages(canonical["messages"])
    return f"oll:{namespace}:{kind}:{_digest(canonical)}"


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
            value = _numbers(value)
        canonical[name] = value
    canonical["store"] = body.get("store") is not False
    return f"resp:{namespace}:{_digest(canonical)}"


def _normalize_items(items: list[Any]) -> list[Any]:
    """As :func:`normalize_messages`: a final assistant item is a prefill, kept as sent."""
    return _but_a_prefill(items, _normalize_item)


def _normalize_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    content = item.get("content")
    if isinstance(content, str):
        return {**item, "content": normalize_text(content)}
    if isinstance(content, list):
        return {**item, "content": _normalize_parts(content, ("input_text", "output_text"))}
    return item


def embedding_key(namespace: str, params: Mapping[str, Any], item: str | list[int]) -> str:
    """Key of one embedding input item; ``params`` is the request minus ignored fields."""
    canonical = {k: _numbers(v) for k, v in params.items() if k not in EMBEDDING_IGNORED_FIELDS}
    canonical["input"] = item
    return f"emb:{namespace}:{_digest(canonical)}"


def normalize_text(text: str, *, trim: bool = True) -> str:
    """NFC, CRLF -> LF, trailing whitespace trimmed (with ``trim``). Leading whitespace stays:
    it can be the indentation of code the prompt asks about."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    return text.rstrip() if trim else text


def normalize_messages(messages: list[Any]) -> list[Any]:
    """Each message's text normalized, but for a final assistant message: that is a prefill
    (Ollama, DeepSeek's and Mistral's ``prefix``) the model continues, to the last space."""
    return _but_a_prefill(messages, normalize_message)


def _but_a_prefill(messages: list[Any], normalize: Callable[[Any], Any]) -> list[Any]:
    last = len(messages) - 1
    return [
        m if i == last and isinstance(m, dict) and m.get("role") == "assistant" else normalize(m)
        for i, m in enumerate(messages)
    ]


def normalize_message(message: Any) -> Any:
    """A message's text normalized (:func:`normalize_text`), but a tool's result: that is data,
    where a trailing tab or space can be an empty column or the very thing asked about."""
    if not isinstance(message, dict) or message.get("role") == "tool":
        return message
    out = dict(message)
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = normalize_text(content)
    elif isinstance(content, list):
        out["content"] = _normalize_parts(content, ("text",))
    return out


def _normalize_parts(parts: list[Any], kinds: tuple[str, ...]) -> list[Any]:
    """Each text part normalized, but only the last one trimmed: an upstream joins the parts
    without a separator, so ``["in 'a ", "b'"]`` asks about ``'a b'`` and ``["in 'a", "b'"]``
    about ``'ab'``."""
    texts = [
        i for i, part in enumerate(parts)
        if isinstance(part, dict) and part.get("type") in kinds
        and isinstance(part.get("text"), str)
    ]  # fmt: skip
    out = list(parts)
    for i in texts:
        out[i] = {**parts[i], "text": normalize_text(parts[i]["text"], trim=i == texts[-1])}
    return out


def _digest(value: object) -> str:
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (RecursionError, orjson.JSONEncodeError):
        raise BadRequestError("the request is nested too deeply") from None
    return hashlib.sha256(data).hexdigest()


def _numbers(value: Any) -> Any:
    try:
        return _canonical_numbers(value)
    except RecursionError:
        raise BadRequestError("the request is nested too deeply") from None


def _canonical_numbers(value: Any) -> Any:
    """``1.0`` and ``1`` mean the same to every API; give them one spelling. Strings, most of
    what a request holds, are passed over without a call (this runs on every request)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) is str else _canonical_numbers(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) is str else _canonical_numbers(v) for v in value]
    if kind is float and value.is_integer() and abs(value) < _MAX_EXACT_INT_FLOAT:
        return int(value)
    return value
