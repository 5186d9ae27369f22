"""Assemble streamed chat completion chunks into the completion a non-streaming call returns.

Pure: fed the ``data:`` payloads of a stream, one by one. Follows the chunk object of the OpenAI
API reference ("The chat completion chunk object"): per-choice deltas of ``role``, ``content``,
``refusal``, ``tool_calls`` (by index: ``id``, ``type``, ``function.name``, ``function.arguments``
spread over deltas), ``logprobs`` and ``finish_reason``; ``usage`` on a last chunk with no
choices. String fields that some upstreams add (``reasoning_content``, ``reasoning``) are
concatenated too; other fields of a choice (vLLM's ``stop_reason``, Azure's
``content_filter_results``) keep the last value they were given. Chunk boundaries are recorded
so that a hit can be replayed with the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"[DONE]"
# Envelope fields copied from the chunks to the completion.
_ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")
UNSAID = (None, "", 0)
"""Envelope values that say nothing (Azure's opening prompt-filter chunk has them)."""
CHUNK_FIELDS = frozenset({*_ENVELOPE, "object", "choices", "usage", "obfuscation"})
"""Chunk fields that are not an upstream's own additions (``obfuscation`` is per chunk noise)."""
CHOICE_FIELDS = frozenset({"index", "delta", "message", "logprobs", "finish_reason"})
"""A choice's own fields, in a chunk or a completion; any other is an upstream's addition."""
# finish_reason values that mean "the model said all it had to say" (OpenAI API reference,
# chat completion object); `function_call` is the legacy spelling of `tool_calls`.
COMPLETE_FINISH_REASONS = frozenset({"stop", "tool_calls", "function_call"})


@dataclass
class _ToolCall:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    role: str = "assistant"
    text: dict[str, list[str]] = field(default_factory=dict)
    """Streamed string fields (content, refusal, reasoning_content, ...) in received pieces."""
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    logprobs: dict[str, list[Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    """Fields an upstream adds to a choice (vLLM's ``stop_reason``, Azure's
    ``content_filter_results``): the last value each was given, kept in the completion."""


class StreamAssembler:
    def __init__(self, max_bytes: int | None = None) -> None:
        """``max_bytes``: the largest entry that may be stored. Once what is held must make a
        larger one, the assembler gives up (``too_large``) and lets go of it: the stream is
        still relayed, but what semcache holds of it stays bounded."""
        self.done = False
        self.failed = False
        self.too_large = False
        self._max_bytes = max_bytes
        self._held = 0
        """A lower bound of the entry's bytes: each piece's characters (each at least a byte
        in the stored JSON) and two for its length in the replay hints; a logprob item's token
        and the least its JSON takes."""
        self._envelope: dict[str, Any] = {}
        self._extras: dict[str, Any] = {}
        """Fields an upstream adds beside the envelope (Perplexity's ``citations``, Azure's
        ``prompt_filter_results``): the first value each has, kept in the completion."""
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None

    def feed(self, data: bytes) -> None:
        """Take one event's data. Anything unexpected marks the stream as not storable."""
        if self.failed:
            return
        if data.strip() == DONE:
            self.done = True
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.failed = True
            return
        if not isinstance(chunk, dict) or "error" in chunk or self.done:
            self.failed = True
            return
        for key in _ENVELOPE:
            # Azure OpenAI opens with a chunk of prompt filter results whose id and model are
            # "" and created 0: the envelope comes from the first chunk that says something.
            if chunk.get(key) not in UNSAID and key not in self._envelope:
                self._envelope[key] = chunk[key]
        for key, value in chunk.items():
            if key not in CHUNK_FIELDS and value is not None:
                self._extras.setdefault(key, value)
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            self.failed = True
            return
        for raw in choices:
            if not self._take_choice(raw):
                self.failed = True
                return
        if self._max_bytes is not None and self._held > self._max_bytes:
            self.failed = self.too_large = True
            self._choices.clear()  # let go of what can never be stored

    @property
    def complete(self) -> bool:
        """Upstream said ``[DONE]``, nothing went wrong, and every choice has a finish reason."""
        return (
            self.done
            and not self.failed
            and bool(self._choices)
            and all(c.finish_reason is not None for c in self._choices.values())
        )

    def completion(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self._envelope.get("id", ""),
            "object": "chat.completion",
            "created": self._envelope.get("created", 0),
            "model": self._envelope.get("model", ""),
        }
        for key in ("system_fingerprint", "service_tier"):
            if key in self._envelope:
                out[key] = self._envelope[key]
        out.update(self._extras)
        out["choices"] = [self._message(i, c) for i, c in sorted(self._choices.items())]
        if self._usage is not None:
            out["usage"] = self._usage
        return out

    def boundaries(self) -> dict[str, Any]:
        """Piece lengths per choice and field: ``{"0": {"content": [3, 5], "tool:0": [9]}}``."""
        out: dict[str, Any] = {}
        for index, choice in self._choices.items():
            fields = {name: [len(p) for p in pieces] for name, pieces in choice.text.items()}
            for t_index, call in choice.tool_calls.items():
                fields[f"tool:{t_index}"] = [len(p) for p in call.arguments]
            out[str(index)] = fields
        return out

    def _take_choice(self, raw: object) -> bool:
        if not isinstance(raw, dict) or type(raw.get("index", 0)) is not int:
            return False
        choice = self._choices.setdefault(raw.get("index", 0), _Choice())
        delta = raw.get("delta") or {}
        if not isinstance(delta, dict):
            return False
        for key, value in delta.items():
            if key == "role" and isinstance(value, str):
                choice.role = value
            elif key == "tool_calls" and value is not None:
                if not isinstance(value, list) or not all(
                    self._take_tool(choice, t) for t in value
                ):
                    return False
            elif isinstance(value, str):
                if value:
                    choice.text.setdefault(key, []).append(value)
                    self._held += len(value) + 2
            elif value is not None:
                return False  # a field we cannot assemble (annotations, audio, ...): don't store
        logprobs = raw.get("logprobs")
        if isinstance(logprobs, dict):
            for key, items in logprobs.items():
                if isinstance(items, list):
                    choice.logprobs.setdefault(key, []).extend(items)
                    self._held += sum(least_bytes(item) for item in items)
        if raw.get("finish_reason") is not None:
            choice.finish_reason = raw["finish_reason"]
        for key, value in raw.items():
            if key not in CHOICE_FIELDS and value is not None:
                choice.extras[key] = value
        return True

    def _take_tool(self, choice: _Choice, raw: object) -> bool:
        if not isinstance(raw, dict):
            return False
        index = raw.get("index", len(choice.tool_calls))
        if type(index) is not int:
            return False
        call = choice.tool_calls.setdefault(index, _ToolCall())
        # DashScope (Qwen) repeats ``"id": ""`` on every continuation delta: not a new id.
        if isinstance(raw.get("id"), str) and raw["id"]:
            call.id = raw["id"]
        if isinstance(raw.get("type"), str) and raw["type"]:
            call.type = raw["type"]
        function = raw.get("function") or {}
        if not isinstance(function, dict):
            return False
        if isinstance(function.get("name"), str):
            call.name += function["name"]
            self._held += len(function["name"])
        if isinstance(function.get("arguments"), str) and function["arguments"]:
            call.arguments.append(function["arguments"])
            self._held += len(function["arguments"]) + 2
        return True

    @staticmethod
    def _message(index: int, choice: _Choice) -> dict[str, Any]:
        message: dict[str, Any] = {"role": choice.role}
        texts = {name: "".join(pieces) for name, pieces in choice.text.items()}
        message["content"] = texts.pop("content", None)
        message["refusal"] = texts.pop("refusal", None)
        message.update(texts)
        if choice.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(choice.tool_calls.items())
            ]
        return {
            "index": index,
            "message": message,
            "logprobs": choice.logprobs or None,
            "finish_reason": choice.finish_reason,
            **choice.extras,
        }


def completion_is_storable(status_code: int, completion: object) -> bool:
    """Whether an upstream's chat completion is a complete success: status 200, every choice
    finished with ``stop`` or ``tool_calls``, each with non-empty content or tool calls. Only
    these are stored (the cache's drivers) or compared with a stored answer (the semantic
    audit); errors, ``length``-truncated, filtered and empty answers are served but never
    stored."""
    if status_code != 200 or not isinstance(completion, dict):
        return False
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(_choice_is_complete(choice) for choice in choices)


def _choice_is_complete(choice: object) -> bool:
    if not isinstance(choice, dict) or choice.get("finish_reason") not in COMPLETE_FINISH_REASONS:
        return False
    message = choice.get("message")
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        return True
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list) and tool_calls:
        return True
    return isinstance(message.get("function_call"), dict)


def least_bytes(item: object) -> int:
    """The fewest bytes a logprob item takes in JSON: braces, each key quoted with its colon
    and a value of at least one byte; its token's characters, its top logprobs the same way."""
    if not isinstance(item, dict):
        return 1
    size = 2 + sum(len(key) + 4 for key in item)
    token = item.get("token")
    if isinstance(token, str):
        size += len(token) + 1
    top = item.get("top_logprobs")
    if isinstance(top, list):
        size += sum(least_bytes(t) for t in top)
    return size
