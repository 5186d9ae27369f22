"""Server-sent events: an incremental parser for upstream streams, and the replay of a stored
completion as the chunk stream an upstream would have sent (OpenAI API reference, "Streaming").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from proxy.upstream.assembler import CHOICE_FIELDS

EVENT_END = b"\n\n"
DONE_EVENT = b"data: [DONE]\n\n"
_WORDS = re.compile(r"\S+\s*|\s+")
WORDS_PER_CHUNK = 3
ARGUMENT_CHARS_PER_CHUNK = 16


ERROR_EVENT_DATA = b'{"error": "event: error"}'
"""What :class:`EventParser` gives for an event named ``error`` (``event: error``, as some servers
send a failure mid-stream, with data that need not say so): an object with an ``error`` key, which
no stream whose answer is whole ever carries."""


class EventParser:
    """Feed raw bytes as they arrive; get back the ``data`` of each complete event (for an event
    named ``error``, :data:`ERROR_EVENT_DATA`)."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        """The line begun and not ended yet, in the pieces it came in: joined once it ends, so
        that a long line (an event of megabytes, read a few KB at a time) costs its length once,
        not once per read."""
        self._data: list[bytes] = []
        self._error = False

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = partial_lines(self._partial, chunk)
        if not lines:
            return []
        events: list[bytes] = []
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._error:
                    events.append(ERROR_EVENT_DATA)
                elif self._data:
                    events.append(b"\n".join(self._data))
                self._data = []
                self._error = False
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self._error = line[6:].strip() == b"error"
        return events


def partial_lines(partial: list[bytes], chunk: bytes) -> list[bytes]:
    """The lines ``chunk`` ends, ``partial`` (the line begun before it, in pieces) joined to the
    first; what follows the last newline is left in ``partial``."""
    if b"\n" not in chunk:
        if chunk:
            partial.append(chunk)
        return []
    if partial:
        partial.append(chunk)
        chunk = b"".join(partial)
        partial.clear()
    lines = chunk.split(b"\n")
    rest = lines.pop()
    if rest:
        partial.append(rest)
    return lines


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + EVENT_END


def replay(completion: dict[str, Any], boundaries: dict[str, Any], *, include_usage: bool) -> bytes:
    """The whole SSE body for a stored completion: per choice a role chunk, its text in pieces
    (the original boundaries when known, a few words each otherwise), tool-call deltas, a
    finish chunk; then a usage chunk when asked for and known; then ``[DONE]``."""
    envelope: dict[str, Any] = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    for key, value in completion.items():
        # system_fingerprint, service_tier, and any field an upstream adds (Perplexity's
        # ``citations``, Azure's ``prompt_filter_results``): on every chunk, as they came.
        if key not in _NOT_ENVELOPE:
            envelope[key] = value
    if include_usage:
        envelope["usage"] = None
    out: list[bytes] = []
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        # A choice's own additions (vLLM's ``stop_reason``, Azure's ``content_filter_results``)
        # come with its finish, as an upstream sends the last of them.
        extras = {k: v for k, v in choice.items() if k not in CHOICE_FIELDS}
        deltas = list(_choice_deltas(choice, boundaries.get(str(index), {})))
        for n, (delta, finish, logprobs) in enumerate(deltas):
            out_choice = {"index": index, "delta": delta, "logprobs": logprobs,
                          "finish_reason": finish}  # fmt: skip
            if n == len(deltas) - 1:
                out_choice.update(extras)
            out.append(event({**envelope, "choices": [out_choice]}))
    usage = completion.get("usage")
    if include_usage and usage is not None:
        out.append(event({**envelope, "choices": [], "usage": usage}))
    out.append(DONE_EVENT)
    return b"".join(out)


def _choice_deltas(
    choice: dict[str, Any], boundaries: dict[str, list[int]]
) -> Iterator[tuple[dict[str, Any], str | None, Any]]:
    message: dict[str, Any] = choice.get("message") or {}
    logprobs = _LogprobFeed(choice.get("logprobs"))
    # As the API streams it: "" before text, null before a tool or function call.
    content = "" if isinstance(message.get("content"), str) else None
    first: dict[str, Any] = {"role": message.get("role", "assistant"), "content": content}
    if message.get("refusal") is None and "refusal" in message:
        first["refusal"] = None
    yield first, None, None
    text_fields = [k for k, v in message.items() if isinstance(v, str) and k not in ("role",)]
    # Reasoning streams before the answer; the answer before a refusal.
    text_fields.sort(key=lambda k: (k == "content", k == "refusal"))
    for name in text_fields:
        pieces = _split(message[name], boundaries.get(name), _word_pieces)
        for j, piece in enumerate(pieces):
            yield {name: piece}, None, logprobs.take(name, piece, last=j == len(pieces) - 1)
    for t_index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        yield (
            {
                "tool_calls": [
                    {
                        "index": t_index,
                        "id": call.get("id"),
                        "type": call.get("type", "function"),
                        "function": {"name": function.get("name", ""), "arguments": ""},
                    }
                ]
            },
            None,
            None,
        )
        arguments = function.get("arguments") or ""
        for piece in _split(arguments, boundaries.get(f"tool:{t_index}"), _char_pieces):
            yield {"tool_calls": [{"index": t_index, "function": {"arguments": piece}}]}, None, None
    call = message.get("function_call")
    if isinstance(call, dict):  # the legacy ``functions`` API: one call, streamed the same way
        yield {"function_call": {"name": call.get("name", ""), "arguments": ""}}, None, None
        for piece in _char_pieces(call.get("arguments") or ""):
            yield {"function_call": {"arguments": piece}}, None, None
    for name, value in message.items():
        # Anything else the message carries (url citations' ``annotations``...), as it is, in a
        # delta of its own: never dropped from a replay.
        if name not in _REPLAYED and not isinstance(value, str) and value:
            yield {name: value}, None, None
    yield {}, choice.get("finish_reason"), None


_REPLAYED = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})
_NOT_ENVELOPE = frozenset({"id", "object", "created", "model", "choices", "usage"})


def _split(text: str, lengths: list[int] | None, fallback: Any) -> list[str]:
    if lengths and sum(lengths) == len(text) and all(n > 0 for n in lengths):
        pieces, start = [], 0
        for n in lengths:
            pieces.append(text[start : start + n])
            start += n
        return pieces
    result: list[str] = fallback(text)
    return result


def _word_pieces(text: str) -> list[str]:
    words = _WORDS.findall(text)
    return ["".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK)]


def _char_pieces(text: str) -> list[str]:
    step = ARGUMENT_CHARS_PER_CHUNK
    return [text[i : i + step] for i in range(0, len(text), step)]


class _LogprobFeed:
    """Hands the stored token logprobs out to the replayed text pieces they belong to."""

    def __init__(self, logprobs: Any) -> None:
        self._items: dict[str, list[Any]] = {}
        if isinstance(logprobs, dict):
            self._items = {k: v for k, v in logprobs.items() if isinstance(v, list)}
        self._next: dict[str, int] = {}
        self._token_chars: dict[str, int] = {}
        self._text_chars: dict[str, int] = {}

    def take(self, field: str, piece: str, *, last: bool) -> dict[str, Any] | None:
        items = self._items.get(field)
        if not items:
            return None
        start = i = self._next.get(field, 0)
        token_chars = self._token_chars.get(field, 0)
        text_chars = self._text_chars.get(field, 0) + len(piece)
        while i < len(items) and (last or token_chars < text_chars):
            token = items[i]
            token_chars += len(token.get("token", "")) if isinstance(token, dict) else 0
            i += 1
        self._next[field], self._token_chars[field] = i, token_chars
        self._text_chars[field] = text_chars
        return {field: items[start:i]}
