"""The canonical request: one spelling for whatever means the same to the upstream, and its digest.

Text normalized (NFC, line ends, trailing space), numbers given one spelling, the fields that
cannot change an answer dropped. :mod:`proxy.cache.keys` derives each route's key from it and
:mod:`proxy.semantic.partition` the semantic partition; :func:`embedding_key` is here because
two layers share it (the ``/v1/embeddings`` route and the HTTP embedder's own cache).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from proxy.errors import BadRequestError

# Chat fields that cannot change the answer: how it is delivered (`stream`, `stream_options`) and
# bookkeeping that the API reference says is for abuse monitoring or billing. `store` is kept
# apart (see `canonical_chat`). The answer names its `service_tier`: a hit names the asking
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
EMBEDDING_BYTES_FIELDS = frozenset({"embed_dtype", "endianness"})
"""vLLM's fields that say what a base64 vector's bytes are (float16, bfloat16, fp8; big-endian)
rather than little-endian float32: with one of them the two formats carry different data, and
``encoding_format`` is part of the key."""

_MAX_EXACT_INT_FLOAT = 2.0**53


def canonical_chat(body: Mapping[str, Any]) -> dict[str, Any]:
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
            value = canonical_numbers(value)
        canonical[name] = value
    return canonical


def embedding_key(
    namespace: str,
    params: Mapping[str, Any],
    item: str | list[int],
    *,
    endpoint: str | None = None,
) -> str:
    """Key of one embedding input item; ``params`` is the request minus ignored fields.
    ``endpoint``: an embeddings API other than the upstream's (semcache's own embedder), hashed
    beside the request, never written into it: no client body can then name it."""
    canonical = {
        k: canonical_numbers(v) for k, v in params.items() if k not in EMBEDDING_IGNORED_FIELDS
    }
    if not EMBEDDING_BYTES_FIELDS.isdisjoint(params):
        canonical["encoding_format"] = params.get("encoding_format") or "float"
    canonical["input"] = item
    hashed: object = canonical if endpoint is None else [canonical, endpoint]
    return f"emb:{namespace}:{digest(hashed)}"


def normalize_text(text: str, *, trim: bool = True) -> str:
    """NFC, CRLF -> LF, trailing whitespace trimmed (with ``trim``). Leading whitespace stays:
    it can be the indentation of code the prompt asks about."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    return text.rstrip() if trim else text


def normalize_messages(messages: list[Any]) -> list[Any]:
    """Each message's text normalized, but for a final assistant message: that is a prefill
    (Ollama, DeepSeek's and Mistral's ``prefix``) the model continues, to the last space."""
    return but_a_prefill(messages, normalize_message)


def but_a_prefill(messages: list[Any], normalize: Callable[[Any], Any]) -> list[Any]:
    """``normalize`` applied to each message but a final assistant one (a prefill)."""
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
        out["content"] = normalize_parts(content, ("text",))
    return out


def normalize_parts(parts: list[Any], kinds: tuple[str, ...]) -> list[Any]:
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


def digest(value: object) -> str:
    """SHA-256 of ``value`` as JSON with sorted keys; too deep a value is a 400."""
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (RecursionError, orjson.JSONEncodeError):
        raise BadRequestError("the request is nested too deeply") from None
    return hashlib.sha256(data).hexdigest()


def canonical_numbers(value: Any) -> Any:
    """``value`` with its numbers given one spelling (:func:`_numbers_of`); too deep is a 400."""
    try:
        return _numbers_of(value)
    except RecursionError:
        raise BadRequestError("the request is nested too deeply") from None


def _numbers_of(value: Any) -> Any:
    """``1.0`` and ``1`` mean the same to every API; give them one spelling. Strings, most of
    what a request holds, are passed over without a call (this runs on every request)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) is str else _numbers_of(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) is str else _numbers_of(v) for v in value]
    if kind is float and value.is_integer() and abs(value) < _MAX_EXACT_INT_FLOAT:
        return int(value)
    return value
