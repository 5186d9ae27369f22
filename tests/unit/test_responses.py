"""The Responses API: its keys, what is passed through, and its streams replayed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.cache.keys import responses_key
from proxy.cache.responses import not_cacheable
from proxy.cache.responses_stream import Ending, is_whole, replay
from proxy.upstream import EventParser

BASE: dict[str, Any] = {"model": "gpt-4.1", "input": "What is the capital of France?"}


@pytest.mark.parametrize(
    "same",
    [
        {**BASE, "stream": True},
        {**BASE, "metadata": {"run": "7"}, "user": "u1", "prompt_cache_key": "k"},
        {**BASE, "input": "What is the capital of France?  \r\n"},
        {**BASE, "store": True},
    ],
    ids=["stream", "bookkeeping", "whitespace", "store-default"],
)
def test_what_cannot_change_the_answer_shares_a_key(same: dict[str, Any]) -> None:
    assert responses_key("ns", same) == responses_key("ns", BASE)


@pytest.mark.parametrize(
    "other",
    [
        {**BASE, "model": "gpt-4.1-mini"},
        {**BASE, "input": "What is the capital of Spain?"},
        {**BASE, "input": [{"role": "user", "content": "What is the capital of France?"}]},
        {**BASE, "instructions": "Answer in French."},
        {**BASE, "tools": [{"type": "function", "name": "f", "parameters": {}}]},
        {**BASE, "text": {"format": {"type": "json_object"}}},
        {**BASE, "reasoning": {"effort": "high"}},
        {**BASE, "temperature": 0.2},
        {**BASE, "max_output_tokens": 50},
        {**BASE, "include": ["reasoning.encrypted_content"]},
        {**BASE, "store": False},
    ],
    ids=["model", "input", "input-shape", "instructions", "tools", "text-format", "reasoning",
         "temperature", "max_output_tokens", "include", "store-false"],
)  # fmt: skip
def test_anything_that_can_change_the_answer_or_its_id_does_not(other: dict[str, Any]) -> None:
    assert responses_key("ns", other) != responses_key("ns", BASE)
    assert responses_key("ns", BASE) != responses_key("other-tenant", BASE)


@pytest.mark.parametrize(
    ("fields", "shared", "why"),
    [
        ({"previous_response_id": "resp_1"}, False, "server-state"),
        ({"conversation": "conv_1"}, False, "server-state"),
        ({"prompt": {"id": "pmpt_1"}}, False, "server-state"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, False, "server-state"),
        (
            {"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://x"}]},
            False,
            "server-state",
        ),
        ({"tools": [{"type": "code_interpreter", "container": "cntr_1"}]}, False, "server-state"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, False, None),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, False, None),
        ({"background": True}, False, "background"),
        ({}, True, "stored-response"),
        ({"store": False}, True, None),
        ({}, False, None),
    ],
)
def test_what_depends_on_server_state_is_passed_through(
    fields: dict[str, Any], shared: bool, why: str | None
) -> None:
    assert not_cacheable({**BASE, **fields}, shared=shared) == why


def response(*output: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "model": "m",
            "output": list(output), "usage": {"input_tokens": 3, "output_tokens": 9,
                                              "total_tokens": 12}}  # fmt: skip


TEXT = "Paris is the capital of France, and its largest city."
MESSAGE = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "annotations": [], "text": TEXT}]}  # fmt: skip
CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
        "arguments": '{"city": "Paris", "unit": "celsius"}', "status": "completed"}  # fmt: skip


@pytest.mark.parametrize(
    "output", [[MESSAGE], [CALL], [MESSAGE, CALL]], ids=["text", "call", "both"]
)
def test_a_replay_ends_with_the_response_and_spells_it_out(output: list[dict[str, Any]]) -> None:
    stored = response(*output)
    stream = replay(stored)
    parser, ending = EventParser(), Ending()
    events = []
    for i in range(0, len(stream), 11):  # any split of the bytes
        for data in parser.feed(stream[i : i + 11]):
            ending.feed(data)
            events.append(orjson.loads(data))
    assert ending.done
    assert ending.result() == stored
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[0]["response"]["status"] == "in_progress"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    arguments = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert text == "".join(i["content"][0]["text"] for i in output if i["type"] == "message")
    assert arguments == "".join(i["arguments"] for i in output if i["type"] == "function_call")


def test_only_completed_responses_with_output_are_whole() -> None:
    assert is_whole(response(MESSAGE))
    assert not is_whole(response(MESSAGE, status="incomplete"))
    assert not is_whole(response())
    ended = Ending()
    ended.feed(orjson.dumps({"type": "response.failed", "response": response(status="failed")}))
    assert ended.done
    assert ended.result() is None
