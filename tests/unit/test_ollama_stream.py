"""Ollama's NDJSON streams: joined into the non-streamed result, and replayed from it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.cache.keys import ollama_key
from proxy.cache.ollama import is_whole
from proxy.cache.ollama_stream import Joined, LineParser, replay

STATS = {"done": True, "done_reason": "stop", "eval_count": 7, "total_duration": 5}


def logprobs(*tokens: str) -> list[dict[str, Any]]:
    return [{"token": t, "logprob": -0.5, "bytes": list(t.encode())} for t in tokens]


def chat_result(content: str, **message: Any) -> dict[str, Any]:
    return {"model": "m", "created_at": "t", "message": {"role": "assistant",
            "content": content, **message}, **STATS}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("chat", chat_result("Paris is the capital of France, and its largest city.")),
        ("chat", chat_result("", tool_calls=[{"function": {"name": "f", "arguments": {"x": 1}}}])),
        ("chat", chat_result("Paris.", thinking="The user asks for a capital.")),
        ("generate", {"model": "m", "created_at": "t", "response": "Once upon a time there was",
                      "context": [1, 2, 3], **STATS}),
        ("chat", {**chat_result("Paris is the capital of France."),
                  "logprobs": logprobs("Paris", " is", " the", " capital", " of", " France", ".")}),
        ("generate", {"model": "m", "created_at": "t", "response": "Once upon a time",
                      "logprobs": logprobs("Once", " upon", " a", " time"), **STATS}),
    ],
    ids=["chat", "tool-calls", "thinking", "generate", "chat-logprobs", "generate-logprobs"],
)  # fmt: skip
def test_a_replay_joins_back_to_the_result(kind: str, result: dict[str, Any]) -> None:
    stream = replay(kind, result)
    joined, parser = Joined(kind), LineParser()
    for i in range(0, len(stream), 7):  # any split of the bytes
        for line in parser.feed(stream[i : i + 7]):
            joined.feed(line)
    assert joined.result() == result
    lines = [orjson.loads(line) for line in stream.splitlines()]
    assert all(line["done"] is False for line in lines[:-1])
    # Each line carries the logprobs of the tokens that spell its own text, as Ollama streams.
    for line in lines[:-1]:
        text = line["message"]["content"] if kind == "chat" else line["response"]
        spelled = "".join(t["token"] for t in line.get("logprobs", []))
        assert spelled.strip() == (text.strip() if "logprobs" in result else "")
    assert "logprobs" not in lines[-1]


def test_a_stream_without_its_done_line_or_with_an_error_is_not_whole() -> None:
    cut = Joined("chat")
    cut.feed(orjson.dumps({"model": "m", "message": {"role": "assistant", "content": "Par"},
                           "done": False}))  # fmt: skip
    assert cut.result() is None
    failed = Joined("generate")
    failed.feed(b'{"error": "model ran out of memory"}')
    failed.feed(orjson.dumps({"model": "m", "response": "", **STATS}))
    assert failed.result() is None


@pytest.mark.parametrize(
    ("kind", "result", "whole"),
    [
        ("chat", chat_result("ok"), True),
        ("chat", {**chat_result("ok"), "done_reason": "length"}, False),
        ("chat", chat_result(""), False),
        ("generate", {"response": "ok", **STATS}, True),
        ("generate", {"response": "ok", "done": False}, False),
        ("embed", {"embeddings": [[0.1, 0.2]]}, True),
        ("embed", {"embeddings": []}, False),
        ("embeddings", {"embedding": []}, False),
    ],
)
def test_only_whole_results_are_stored(kind: str, result: dict[str, Any], whole: bool) -> None:
    assert is_whole(kind, result) is whole


BASE = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    "same",
    [
        {**BASE, "stream": False},
        {**BASE, "keep_alive": "10m"},
        {**BASE, "tools": [], "options": None, "format": None},
        {**BASE, "options": {}, "images": []},
        {**BASE, "messages": [{"role": "user", "content": "Hi \r\n"}]},
    ],
    ids=["stream", "keep_alive", "nulls-and-empties", "empty-options", "whitespace"],
)
def test_what_cannot_change_the_answer_shares_a_key(same: dict[str, Any]) -> None:
    assert ollama_key("ns", "chat", same) == ollama_key("ns", "chat", BASE)


@pytest.mark.parametrize(
    "other",
    [
        {**BASE, "model": "llama3.1"},
        {**BASE, "options": {"temperature": 0}},
        {**BASE, "format": "json"},
        {**BASE, "format": {}},  # a JSON schema: the answer must be an object
        {**BASE, "format": []},
        {**BASE, "think": True},
        {**BASE, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**BASE, "messages": [{"role": "user", "content": "Hello"}]},
    ],
    ids=[
        "model",
        "options",
        "format",
        "format-empty-schema",
        "format-empty-list",
        "think",
        "tools",
        "messages",
    ],
)
def test_anything_that_can_change_the_answer_does_not(other: dict[str, Any]) -> None:
    assert ollama_key("ns", "chat", other) != ollama_key("ns", "chat", BASE)
    assert ollama_key("ns", "chat", BASE) != ollama_key("other-tenant", "chat", BASE)
    assert ollama_key("ns", "chat", BASE) != ollama_key("ns", "generate", BASE)
