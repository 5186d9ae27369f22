"""Ollama's native streams (NDJSON, one JSON object per line; Ollama API docs, "Generate a chat
completion" and "Generate a completion"): joined into the object a ``"stream": false`` call
returns, and that object replayed as the stream Ollama would have sent."""

from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.cache.pieces import share_logprobs
from proxy.requests import json_or_none
from proxy.upstream import least_bytes, partial_lines

_PIECES = re.compile(r"\S+\s*|\s+")
WORDS_PER_LINE = 3
TEXT_FIELD = {"chat": "content", "generate": "response"}


class LineParser:
    """Feed raw bytes; get back each complete line."""

    def __init__(self) -> None:
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        return [line for line in partial_lines(self._partial, chunk) if line.strip()]


class Joined:
    """A chat or generate stream joined: the text (and thinking) of every line in order, tool
    calls gathered, and the last line's ``done``, ``done_reason``, timings and ``context``."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[Any] = []
        self._logprobs: list[Any] = []
        self._last: dict[str, Any] | None = None
        self.broken = False
        self.held = 0
        """A lower bound of the result's bytes: its text's and thinking's characters, two for
        each tool call and the least each logprob item takes."""

    @property
    def done(self) -> bool:
        return self._last is not None and self._last.get("done") is True

    def feed(self, line: bytes) -> None:
        part = json_or_none(line)
        if not isinstance(part, dict) or "error" in part:
            self.broken = True
            return
        holder = part.get("message") if self._kind == "chat" else part
        if isinstance(holder, dict):
            text = holder.get(TEXT_FIELD[self._kind])
            if isinstance(text, str):
                self._text.append(text)
                self.held += len(text)
            if isinstance(holder.get("thinking"), str):
                self._thinking.append(holder["thinking"])
                self.held += len(holder["thinking"])
            if isinstance(holder.get("tool_calls"), list):
                self._tool_calls += holder["tool_calls"]
                self.held += 2 * len(holder["tool_calls"])
        if isinstance(part.get("logprobs"), list):
            # Ollama's whole answer carries every chunk's logprobs, appended.
            self._logprobs += part["logprobs"]
            self.held += sum(least_bytes(item) for item in part["logprobs"])
        self._last = part

    def result(self) -> dict[str, Any] | None:
        if self.broken or self._last is None or not self.done:
            return None
        out = dict(self._last)
        if self._logprobs:
            out["logprobs"] = self._logprobs
        text, thinking = "".join(self._text), "".join(self._thinking)
        if self._kind == "chat":
            message: dict[str, Any] = dict(out.get("message") or {"role": "assistant"})
            message["content"] = text
            if thinking:
                message["thinking"] = thinking
            if self._tool_calls:
                message["tool_calls"] = self._tool_calls
            out["message"] = message
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        return out


def replay(kind: str, result: dict[str, Any]) -> bytes:
    """The lines of a stream for a stored result: its text a few words per line (tool calls and
    thinking on the first), then the final line with ``done`` and the timings."""
    head: dict[str, Any] = {k: result[k] for k in ("model", "created_at") if k in result}
    logprobs = result.get("logprobs")
    result = {k: v for k, v in result.items() if k != "logprobs"}
    lines: list[dict[str, Any]] = []
    if kind == "chat":
        message = result.get("message") or {}
        first: dict[str, Any] = {"role": message.get("role", "assistant")}
        for extra in ("thinking", "tool_calls"):
            if extra in message:
                first[extra] = message[extra]
        pieces = _pieces(message.get("content", ""))
        for n, piece in enumerate(pieces):
            lines.append({**head, "message": {**(first if n == 0 else {"role": first["role"]}),
                                              "content": piece}, "done": False})  # fmt: skip
        final = {**result, "message": {"role": first["role"], "content": ""}}
    else:
        for n, piece in enumerate(_pieces(result.get("response", ""))):
            line: dict[str, Any] = {**head, "response": piece, "done": False}
            if n == 0 and "thinking" in result:
                line["thinking"] = result["thinking"]
            lines.append(line)
        final = {k: v for k, v in result.items() if k != "thinking"} | {"response": ""}
    if isinstance(logprobs, list) and logprobs:
        shares = share_logprobs(logprobs, [str(line.get("message", line).get(TEXT_FIELD[kind], ""))
                                   for line in lines])  # fmt: skip
        for line, share in zip(lines, shares, strict=True):
            if share:
                line["logprobs"] = share
    lines.append(final)
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _pieces(text: str) -> list[str]:
    words = _PIECES.findall(text) or [""]
    step = WORDS_PER_LINE
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]
