"""``POST /v1/completions`` (legacy text completions, still served by vLLM, Ollama and OpenAI):
exact caching (:mod:`proxy.cache.exact`), streamed or not; only choices that ended with ``stop``
are stored.

Exact only: a text completion continues its prompt character by character, so two prompts that
mean the same are still different requests (and the prompt is not normalized: a trailing space
changes what a model writes next). A stream's chunks are joined into the completion a
non-streaming call returns (OpenAI API reference, "Completions" and its streaming chunks).
"""

from __future__ import annotations

import re
from typing import Any

from proxy.cache.exact import Format
from proxy.cache.keys import completion_key
from proxy.cache.policy import completion_tokens_saved, with_served_tier
from proxy.requests import ChatRequest, json_or_none
from proxy.upstream import DONE_EVENT, UNSAID, event

_PIECES = re.compile(r"\S+\s*|\s+")
WORDS_PER_CHUNK = 3
ENVELOPE = ("id", "created", "model", "system_fingerprint", "service_tier")
"""What every chunk of a stream repeats, kept from the first that says it, and replayed on
each."""


class Joined:
    """The chunks of a streamed text completion joined into the object a non-streaming call
    returns: each choice's ``text`` in order, its ``logprobs`` (each list joined: ``tokens``,
    ``token_logprobs``, ``top_logprobs``, ``text_offset``), its ``finish_reason``, and
    ``usage`` if sent."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._texts: dict[int, list[str]] = {}
        self._logprobs: dict[int, dict[str, Any]] = {}
        self._finish: dict[int, Any] = {}
        self._usage: Any = None
        self.done = False
        self.broken = False
        self.held = 0
        """A lower bound of the result's bytes: its texts' characters, a logprob list's
        strings' characters (quoted) and at least one byte for each of its other items."""

    def feed(self, data: bytes) -> None:
        if data.strip() == b"[DONE]":
            self.done = True
            return
        chunk = json_or_none(data)
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        for field in ENVELOPE:
            if chunk.get(field) not in UNSAID and field not in self._head:
                self._head[field] = chunk[field]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                self.broken = True
                return
            index = choice.get("index", 0)
            text = choice.get("text")
            if isinstance(text, str):
                self._texts.setdefault(index, []).append(text)
                self.held += len(text)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                joined = self._logprobs.setdefault(index, {})
                for name, items in logprobs.items():
                    kept = joined.setdefault(name, None if items is None else [])
                    if items is None and kept is None:
                        continue  # e.g. "top_logprobs": null throughout
                    if not isinstance(items, list) or not isinstance(kept, list):
                        self.broken = True  # a shape this cannot join: not stored
                        return
                    kept.extend(items)
                    self.held += sum(len(i) + 2 if isinstance(i, str) else 1 for i in items)
            elif logprobs is not None:
                self.broken = True
                return
            if choice.get("finish_reason") is not None:
                self._finish[index] = choice["finish_reason"]

    def result(self) -> dict[str, Any] | None:
        if not self.done or self.broken or not self._texts:
            return None
        choices = [
            {"text": "".join(self._texts[i]), "index": i, "logprobs": self._logprobs.get(i),
             "finish_reason": self._finish.get(i)}
            for i in sorted(self._texts)
        ]  # fmt: skip
        out = {**self._head, "object": "text_completion", "choices": choices}
        if self._usage is not None:
            out["usage"] = self._usage
        return out


def replay(completion: dict[str, Any], *, include_usage: bool) -> bytes:
    """A stored text completion as the stream an upstream sends: each choice's text a few
    words per chunk, its finish reason on the last, usage when asked for (``"usage": null`` on
    every other chunk then, as OpenAI sends it), then ``[DONE]``."""
    head: dict[str, Any] = {k: completion[k] for k in ENVELOPE if k in completion}
    head["object"] = "text_completion"
    usage = include_usage and "usage" in completion
    out: list[bytes] = []
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        pieces = _pieces(choice.get("text", ""), choice.get("logprobs"))
        for n, (piece, logprobs) in enumerate(pieces):
            finish = choice.get("finish_reason") if n == len(pieces) - 1 else None
            choice_out = {"text": piece, "index": index, "logprobs": logprobs,
                          "finish_reason": finish}  # fmt: skip
            chunk = {**head, "choices": [choice_out]}
            if usage:
                chunk["usage"] = None
            out.append(event(chunk))
    if usage:
        out.append(event({**head, "choices": [], "usage": completion["usage"]}))
    out.append(DONE_EVENT)
    return b"".join(out)


def _pieces(text: str, logprobs: Any) -> list[tuple[str, Any]]:
    """A choice's text in chunks, each with its share of the logprobs: a few words each, or,
    with logprobs, a few tokens each (one chunk with all of them if the tokens do not spell
    the text)."""
    if not isinstance(logprobs, dict) or not logprobs:
        words = _PIECES.findall(text) or [""]
        step = WORDS_PER_CHUNK
        return [("".join(words[i : i + step]), None) for i in range(0, len(words), step)]
    tokens = logprobs.get("tokens")
    lists = [v for v in logprobs.values() if isinstance(v, list)]
    if (
        not isinstance(tokens, list)
        or not all(isinstance(t, str) for t in tokens)
        or "".join(tokens) != text
        or any(len(v) != len(tokens) for v in lists)
        or not tokens
    ):
        return [(text, logprobs)]
    step = WORDS_PER_CHUNK
    return [
        (
            "".join(tokens[i : i + step]),
            {k: v[i : i + step] if isinstance(v, list) else v for k, v in logprobs.items()},
        )
        for i in range(0, len(tokens), step)
    ]


def _is_complete(completion: dict[str, Any]) -> bool:
    choices = completion.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") == "stop" for c in choices)
        and all(isinstance(c.get("text"), str) for c in choices)
    )


def _replay(completion: dict[str, Any], request: ChatRequest) -> bytes:
    return replay(completion, include_usage=request.include_usage)


COMPLETIONS = Format(
    route="completions",
    path="/completions",
    key=completion_key,
    whole=_is_complete,
    tokens=completion_tokens_saved,
    joiner=Joined,
    replay=_replay,
    echo=with_served_tier,
    echoes=b'"service_tier"',
    asks_usage=True,
)
