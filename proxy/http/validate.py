"""Request bodies -> typed requests, or a BadRequestError that never reaches upstream.

Only what caching relies on is checked; everything else is the upstream's to judge, so that
semcache rejects nothing the upstream would have accepted.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from proxy.errors import BadRequestError
from proxy.requests import ChatRequest, EmbeddingRequest, parse_object


class _Duplicate(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs) or _folded_twice(out):
        raise _Duplicate
    return out


def _folded_twice(obj: dict[str, Any]) -> bool:
    """Whether two keys of ``obj`` are one name to Go's encoding/json (Ollama's reader), which
    matches a struct's fields case-insensitively, Unicode folding included (``Model`` and
    ``model``; ``system`` spelled with a long s, U+017F, and ``system``), the last one written
    winning. Python's ``casefold`` folds at least as much as Go does (folding more never caches
    a wrong answer, it only passes a request through)."""
    if len(obj) < 2:
        return False
    folded = {k.casefold() for k in obj}
    return len(folded) != len(obj) or len({k.upper().casefold() for k in obj}) != len(obj)


def _folds_twice(value: Any) -> bool:
    """:func:`_folded_twice` for any object in ``value``, at any depth. First the cheap way (one
    walk gathering every key name of the body): when no two names anywhere fold alike, no two in
    one object do, which is nearly every body; else each object is looked at."""
    names: set[str] = set()
    objects: list[dict[str, Any]] = []
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if type(item) is dict:
            names.update(item)
            objects.append(item)
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push(child)
    if len(names) < 2 or not _folded_twice(dict.fromkeys(names)):
        return False
    return any(_folded_twice(obj) for obj in objects)


_SPACED_KEY_END = re.compile(rb'"\s+:')
_FAST_CHECK_BYTES = 8192
"""Past this the fast path's four scans of ``raw`` cost more than Python's reader."""


def has_duplicate_keys(raw: bytes, parsed: Any = None) -> bool:
    r"""Whether an object in ``raw`` (valid JSON) names a key twice, exactly or but for case.
    Servers disagree on what that means: the last value wins in Python's and orjson's reading,
    Go decodes both into one map (Ollama's ``options``), and Go reads ``"Model"`` as ``model``
    (case-insensitive field names, the last one written winning), so ``{"model": A, "Model": B}``
    is B to Ollama and ``{"Model": B, "model": A}`` is A, while semcache's key, of the keys
    sorted, is one. The key semcache derives may then not be the request the upstream reads,
    so such a request is passed through, never cached.

    Fast path (``parsed``: orjson's reading of ``raw``): when no key of ``raw`` has space
    before its colon, every key ends in ``":``, and so do the string contents' own ``":``;
    orjson writes the parsed object back with one ``":`` per key it kept and the same string
    contents, unless ``raw`` escaped characters as ``\u``. So without ``\u`` and spaced
    colons in ``raw``, as many ``":`` in ``raw`` as in orjson's writing means no key was
    dropped: no duplicate. Otherwise Python's reader counts the keys of each object (about
    twice the orjson parse)."""
    if (
        parsed is not None
        and len(raw) <= _FAST_CHECK_BYTES
        and b"\\u" not in raw
        and _SPACED_KEY_END.search(raw) is None
        and raw.count(b'":') == _key_ends(parsed)
    ):
        return _folds_twice(parsed)
    try:
        json.loads(raw, object_pairs_hook=_unique)
    except (_Duplicate, ValueError, RecursionError):
        return True  # a body Python's reader takes otherwise than orjson's: not cached either
    return False


def unkeyable(raw: bytes, parsed: Any) -> str | None:
    """Why the key semcache would derive from ``raw`` (valid JSON; ``parsed``: orjson's reading
    of it) may not be the request the upstream reads, so that it is passed through, uncached:
    ``duplicate-keys`` (:func:`has_duplicate_keys`), ``big-number``
    (:func:`has_inexact_numbers`); None when it is."""
    if has_duplicate_keys(raw, parsed):
        return "duplicate-keys"
    if has_inexact_numbers(raw, parsed):
        return "big-number"
    return None


def said_json(content_type: str | None) -> bool:
    """Whether a request's ``Content-Type`` lets its body be read as JSON: none at all, or
    ``application/json`` with any parameters (``; charset=utf-8``), in any case (RFC 9110
    §8.3.1). FastAPI (vLLM, most Python servers) reads only these as JSON and answers any other
    type, ``text/plain`` or curl's ``-d`` default (form-urlencoded), with a 422; the openai and
    ollama libraries send ``application/json``."""
    if content_type is None or content_type == "application/json":
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media in ("", "application/json")


def said_utf8(content_type: str | None) -> bool:
    """Whether a request's ``Content-Type`` leaves its body UTF-8: no ``charset`` parameter, or
    ``utf-8`` (any case, quoted or not). JSON is UTF-8 (RFC 8259 §8.1), but a server may honour
    a declared ``charset=iso-8859-1`` (Express's body-parser answers 415 to it), and then the
    same bytes do not say what semcache reads: such a body is passed through, never cached."""
    if content_type is None or ";" not in content_type:
        return True
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() in ("utf-8", "utf8")
    return True


_DIGITS_AS_ONES = bytes(49 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"1" * 19
"""An integer orjson reads exactly is in [-2**63, 2**64): 20 digits at most, 19 when negative.
A run of 19 digits is looked for with ``translate`` and ``in`` (a regex is ten times dearer)."""


def has_inexact_numbers(raw: bytes, parsed: Any) -> bool:
    """Whether ``raw`` (valid JSON) spells an integer orjson cannot hold (beyond 64 bits): orjson
    reads it as the nearest float, so ``12345678901234567890123`` and ``...124`` make one key,
    while Python's reader (the upstream's, a vLLM's) keeps each exactly: a JSON schema's
    ``const`` or ``enum``, a tool's parameter, a ``seed``, answered differently. Such a request
    is passed through, never cached. Only a body with a run of 19 digits is read a second time."""
    if _LONG_RUN not in raw.translate(_DIGITS_AS_ONES):
        return False
    try:
        exact = json.loads(raw)
    except (ValueError, RecursionError):
        return True
    return _has_big_int(exact)


def _has_big_int(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is int and not -(2**63) <= item < 2**64:
            return True
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def _key_ends(parsed: Any) -> int:
    """``":`` in orjson's writing of ``parsed``; -1 when it cannot write it (too deep)."""
    try:
        return orjson.dumps(parsed).count(b'":')
    except orjson.JSONEncodeError:
        return -1


def chat_request(raw: bytes) -> ChatRequest:
    body = parse_object(raw)
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequestError(
                f"messages[{i}] must be an object with a string 'role'", param=f"messages[{i}]"
            )
    return _sampled(body, raw, model)


def completion_request(raw: bytes) -> ChatRequest:
    """``POST /v1/completions`` (legacy): ``prompt`` instead of ``messages``, the same other
    fields (OpenAI API reference, "Completions")."""
    body = parse_object(raw)
    model = _model(body)
    prompt = body.get("prompt")
    if not (
        isinstance(prompt, str)
        or (isinstance(prompt, list) and prompt and all(_is_item(p) for p in prompt))
        or (isinstance(prompt, list) and prompt and all(_is_token(t) for t in prompt))
    ):
        raise BadRequestError(
            "'prompt' must be a string, an array of strings, or token arrays", param="prompt"
        )
    return _sampled(body, raw, model)


def responses_request(raw: bytes) -> ChatRequest:
    """``POST /v1/responses``: ``input`` a string or an array of items (OpenAI API reference,
    "Create a model response"); the other fields are the upstream's to judge."""
    body = parse_object(raw)
    if any(body.get(name) is not None for name in ("previous_response_id", "conversation",
                                                   "prompt")):  # fmt: skip
        # Passed through (server state): the upstream alone knows what such a request needs.
        model = body.get("model")
        return _sampled(body, raw, model if isinstance(model, str) else "")
    model = _model(body)
    given = body.get("input")
    if not (isinstance(given, str) or (isinstance(given, list) and given)):
        raise BadRequestError("'input' must be a string or a non-empty array", param="input")
    return _sampled(body, raw, model)


def _sampled(body: dict[str, Any], raw: bytes, model: str) -> ChatRequest:
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequestError("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise BadRequestError("'temperature' must be a number", param="temperature")
    return ChatRequest(
        body=body,
        raw=raw,
        model=model,
        stream=bool(stream),
        include_usage=include_usage,
        temperature=None if temperature is None else float(temperature),
    )


def embedding_request(raw: bytes) -> EmbeddingRequest:
    body = parse_object(raw)
    model = _model(body)
    if "input" not in body and isinstance(body.get("messages"), list):
        return EmbeddingRequest(
            body=body, model=model, items=[], single=False, base64=False,
            passthrough="messages-input",
        )  # fmt: skip
    value = body.get("input")
    items: list[str | list[int]]
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(_is_token(t) for t in value)
    ):
        items, single = [value], True
    elif isinstance(value, list) and value and all(_is_item(v) for v in value):
        items, single = list(value), False
    else:
        raise BadRequestError(
            "'input' must be a string, an array of strings, an array of token ids "
            "or an array of token arrays, and not empty",
            param="input",
        )
    encoding = body.get("encoding_format", "float")
    passthrough = None
    if encoding not in ("float", "base64", None):
        if not isinstance(encoding, str):
            raise BadRequestError("'encoding_format' must be a string", param="encoding_format")
        passthrough = "encoding-format"
    elif len({type(item) for item in items}) > 1:
        passthrough = "mixed-input"
    return EmbeddingRequest(
        body=body, model=model, items=items, single=single, base64=encoding == "base64",
        passthrough=passthrough,
    )  # fmt: skip


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequestError("'model' must be a non-empty string", param="model")
    return model


def _is_token(value: object) -> bool:
    return type(value) is int


def _is_item(value: object) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and bool(value) and all(_is_token(t) for t in value)
