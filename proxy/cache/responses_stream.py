"""Responses API streams (OpenAI API reference, "Streaming events"): what a stream ends with,
and a stored response replayed as the typed events an upstream sends.

A stream ends with ``response.completed`` (the whole response object), ``response.incomplete`` or
``response.failed``; only the first is stored. A replay sends ``response.created`` and
``response.in_progress``, then per output item ``response.output_item.added``, its text in
``response.output_text.delta`` pieces (with the content part's ``added``/``done`` around them,
each delta with the logprobs of the tokens it spells, an ``annotation.added`` per citation; a
refusal in ``response.refusal.delta`` pieces and ``response.refusal.done``), a
reasoning item's summary in ``response.reasoning_summary_*`` events and its text in
``response.reasoning_text.*`` ones, or a function call's
arguments, ``response.output_item.done``, and ``response.completed``. Every event carries its
``sequence_number``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.cache.pieces import share_logprobs
from proxy.requests import json_or_none

_PIECES = re.compile(r"\S+\s*|\s+")
WORDS_PER_DELTA = 3
ARGUMENT_CHARS_PER_DELTA = 16


_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


class Ending:
    """Watches a stream's events for its end: ``done`` once it ended, ``response`` when it
    ended completed."""

    held = 0
    """Nothing is joined: only the event that ends the stream is kept (as its line came)."""

    def __init__(self) -> None:
        self.done = False
        self.response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> None:
        event = json_or_none(data)
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        # An event named ``error`` comes as the parser's ERROR_EVENT_DATA, without its type.
        if kind in _ENDS or "error" in event:
            response = event.get("response")
            if kind == "response.completed" and isinstance(response, dict) and not self.done:
                self.response = response
            else:  # a failure, or anything after the end (an error event): nothing to store
                self.response = None
            self.done = True

    def result(self) -> dict[str, Any] | None:
        return self.response


def replay(response: dict[str, Any]) -> bytes:
    out: list[bytes] = []

    def send(kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": len(out), **fields}
        out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    if "completed_at" in response:  # set once it is completed, not before
        started["completed_at"] = None
    send("response.created", response=started)
    send("response.in_progress", response=started)
    for index, item in enumerate(response.get("output") or []):
        if not isinstance(item, dict):
            continue
        item_id = item.get("id", "")
        kind = item.get("type")
        opened = {**item, "status": "in_progress"} if "status" in item else dict(item)
        if kind == "message":
            opened["content"] = []
        elif kind == "function_call":
            opened["arguments"] = ""
        elif kind == "reasoning":
            for name in ("summary", "content"):
                if isinstance(item.get(name), list):
                    opened[name] = []
        send("response.output_item.added", output_index=index, item=opened)
        if kind == "message":
            for c, part in enumerate(item.get("content") or []):
                where = {"item_id": item_id, "output_index": index, "content_index": c}
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text = str(part.get("text", ""))
                    logprobs = part.get("logprobs")
                    logprobs = logprobs if isinstance(logprobs, list) else []
                    empty = {**part, "text": "", "annotations": []}
                    if "logprobs" in part:
                        empty["logprobs"] = []
                    send("response.content_part.added", **where, part=empty)
                    pieces = _pieces(text)
                    for piece, share in zip(pieces, share_logprobs(logprobs, pieces), strict=True):
                        send("response.output_text.delta", **where, delta=piece, logprobs=share)
                    annotations = part.get("annotations")
                    for a, annotation in enumerate(annotations or []):
                        send("response.output_text.annotation.added", **where,
                             annotation_index=a, annotation=annotation)  # fmt: skip
                    send("response.output_text.done", **where, text=text, logprobs=logprobs)
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    said = str(part.get("refusal", ""))
                    send("response.content_part.added", **where, part={**part, "refusal": ""})
                    for piece in _pieces(said):
                        send("response.refusal.delta", **where, delta=piece)
                    send("response.refusal.done", **where, refusal=said)
                else:
                    send("response.content_part.added", **where, part=part)
                send("response.content_part.done", **where, part=part)
        elif kind == "reasoning":
            reasoning = (
                ("summary", "summary_index", "response.reasoning_summary_part",
                 "response.reasoning_summary_text"),
                ("content", "content_index", "response.content_part", "response.reasoning_text"),
            )  # fmt: skip
            for field, counter, part_event, text_event in reasoning:
                for n, part in enumerate(item.get(field) or []):
                    if not isinstance(part, dict):
                        continue
                    where = {"item_id": item_id, "output_index": index, counter: n}
                    text = str(part.get("text", ""))
                    send(f"{part_event}.added", **where, part={**part, "text": ""})
                    for piece in _pieces(text):
                        send(f"{text_event}.delta", **where, delta=piece)
                    send(f"{text_event}.done", **where, text=text)
                    send(f"{part_event}.done", **where, part=part)
        elif kind == "function_call":
            arguments = str(item.get("arguments", ""))
            step = ARGUMENT_CHARS_PER_DELTA
            for start in range(0, len(arguments), step):
                send("response.function_call_arguments.delta", item_id=item_id,
                     output_index=index, delta=arguments[start : start + step])  # fmt: skip
            send("response.function_call_arguments.done", item_id=item_id, output_index=index,
                 name=item.get("name", ""), arguments=arguments)  # fmt: skip
        send("response.output_item.done", output_index=index, item=item)
    send("response.completed", response=response)
    return b"".join(out)


def is_whole(response: Any) -> bool:
    """Stored only when the upstream says it is done: ``completed``, with some output."""
    return (
        isinstance(response, dict)
        and response.get("status") == "completed"
        and isinstance(response.get("output"), list)
        and bool(response["output"])
    )


def _pieces(text: str) -> list[str]:
    words = _PIECES.findall(text) or [""]
    step = WORDS_PER_DELTA
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]
