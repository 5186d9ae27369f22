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
        # An item of a response the upstream keeps, by id: gone with that response.
        (
            {
                "input": [
                    {"type": "item_reference", "id": "msg_0"},
                    {"role": "user", "content": "And?"},
                ]
            },
            False,
            "server-state",
        ),
        (
            {"input": [{"id": "msg_0"}, {"role": "user", "content": "And?"}]},
            False,
            "server-state",
        ),  # the type may be left out (the openai SDK's ItemReference)
        (
            {
                "input": [
                    {
                        "type": "message",
                        "id": "msg_0",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi."}],
                    },
                    {"role": "user", "content": "And?"},
                ]
            },
            False,
            None,
        ),  # given whole
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


def replayed(stored: dict[str, Any]) -> list[dict[str, Any]]:
    parser = EventParser()
    return [orjson.loads(data) for data in parser.feed(replay(stored))]


def test_a_replay_hands_each_delta_the_logprobs_of_its_tokens() -> None:
    """With ``include: ["message.output_text.logprobs"]`` an upstream's deltas carry their
    tokens' logprobs and ``output_text.done`` all of them; a replay sent ``[]`` everywhere."""
    tokens = ["Paris", " is", " the", " capital", " of", " France", "."]
    logprobs = [{"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []}
                for t in tokens]  # fmt: skip
    part = {"type": "output_text", "annotations": [], "logprobs": logprobs,
            "text": "Paris is the capital of France."}  # fmt: skip
    events = replayed(response({**MESSAGE, "content": [part]}))
    added = next(e for e in events if e["type"] == "response.content_part.added")
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert added["part"]["logprobs"] == []
    assert len(deltas) > 1
    for delta in deltas:  # each delta's own tokens
        assert "".join(lp["token"] for lp in delta["logprobs"]).strip() == delta["delta"].strip()
    assert done["logprobs"] == logprobs


def test_a_replay_streams_a_reasoning_summary_and_announces_citations() -> None:
    """A reasoning item's summary streams as ``reasoning_summary_*`` events (the item opens with
    an empty summary), and each citation of a text as ``output_text.annotation.added``: a
    streaming UI built from the events showed no summary and no sources."""
    summary = {"type": "summary_text", "text": "The user asks for a capital city."}
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [summary]}
    citation = {"type": "url_citation", "start_index": 0, "end_index": 5,
                "url": "https://example.org/paris", "title": "Paris"}  # fmt: skip
    text_part = {"type": "output_text", "annotations": [citation], "text": TEXT}
    cited = {**MESSAGE, "content": [text_part]}
    events = replayed(response(reasoning, cited))
    opened = next(e for e in events if e["type"] == "response.output_item.added")
    assert opened["item"] == {**reasoning, "summary": []}  # no invented status either
    kinds = [e["type"] for e in events if "reasoning_summary" in e["type"]]
    assert kinds[0] == "response.reasoning_summary_part.added"
    assert kinds[-2:] == ["response.reasoning_summary_text.done",
                          "response.reasoning_summary_part.done"]  # fmt: skip
    streamed = "".join(
        e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"
    )
    assert streamed == summary["text"]
    announced = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert [(e["annotation_index"], e["annotation"]) for e in announced] == [(0, citation)]
    parts = [e["part"] for e in events if e["type"] == "response.content_part.added"]
    assert parts[0]["annotations"] == []


def test_only_completed_responses_with_output_are_whole() -> None:
    assert is_whole(response(MESSAGE))
    assert not is_whole(response(MESSAGE, status="incomplete"))
    assert not is_whole(response())
    ended = Ending()
    ended.feed(orjson.dumps({"type": "response.failed", "response": response(status="failed")}))
    assert ended.done
    assert ended.result() is None


def test_an_error_after_the_completed_response_leaves_nothing_to_store() -> None:
    """An ``error`` event is a failed stream wherever it comes, as on chat completions: the
    response it follows is not stored (the client saw the error)."""
    completed = {"type": "response.completed", "response": response(MESSAGE)}
    failure = {"type": "error", "code": "server_error", "message": "late", "param": None}
    for named in (b"", b"event: error\n"):  # OpenAI names it; the data alone says it too
        parser, ended = EventParser(), Ending()
        for data in parser.feed(
            b"event: response.completed\ndata: %s\n\n" % orjson.dumps(completed)
        ):
            ended.feed(data)
        assert ended.result() is not None
        for data in parser.feed(named + b"data: %s\n\n" % orjson.dumps(failure)):
            ended.feed(data)
        assert ended.done
        assert ended.result() is None


def test_a_replay_streams_a_refusal_as_refusal_events() -> None:
    """An upstream streams a refusal part as ``response.content_part.added`` with an empty
    ``refusal``, ``response.refusal.delta`` pieces and ``response.refusal.done`` (OpenAI API
    reference, "Streaming events"); a replay sent the whole refusal in the ``added`` event and
    no refusal event at all, so a client printing ``refusal.delta`` showed nothing on a hit."""
    said = "I'm sorry, but I can't help with that request."
    part = {"type": "refusal", "refusal": said}
    events = replayed(response({**MESSAGE, "content": [part]}))
    added = next(e for e in events if e["type"] == "response.content_part.added")
    assert added["part"] == {"type": "refusal", "refusal": ""}
    deltas = [e for e in events if e["type"] == "response.refusal.delta"]
    assert len(deltas) > 1
    assert "".join(e["delta"] for e in deltas) == said
    done = next(e for e in events if e["type"] == "response.refusal.done")
    assert done["refusal"] == said
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in [*deltas, done]} == {
        ("msg_1", 0, 0)
    }
    kinds = [e["type"] for e in events]
    assert kinds.index("response.refusal.done") < kinds.index("response.content_part.done")
    finished = next(e for e in events if e["type"] == "response.content_part.done")
    assert finished["part"] == part


def test_a_replayed_function_call_names_its_function_when_done() -> None:
    """``response.function_call_arguments.done`` carries the function's ``name`` (required in
    the OpenAI spec; openai-go reads it): a replay left it out."""
    events = replayed(response(CALL))
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_weather"
    assert done["arguments"] == CALL["arguments"]


def test_a_replay_streams_a_reasoning_items_text_as_reasoning_text_events() -> None:
    """A reasoning item with its text (``content``: ``reasoning_text`` parts, as gpt-oss behind
    vLLM or Ollama returns it) streams as ``response.content_part.added``,
    ``response.reasoning_text.delta`` pieces, ``response.reasoning_text.done`` and
    ``response.content_part.done`` (OpenAI API reference, "Streaming events"): a replay opened
    the item with all of its text and sent no reasoning event, so a client showing the model's
    thinking as it streams showed none on a hit."""
    thought = "The user asks for the capital of France. That is Paris."
    part = {"type": "reasoning_text", "text": thought}
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "content": [part]}
    events = replayed(response(reasoning, MESSAGE))
    opened = next(e for e in events if e["type"] == "response.output_item.added")
    assert opened["item"]["content"] == []
    where = {"item_id": "rs_1", "output_index": 0, "content_index": 0}
    ours = [e for e in events if e.get("item_id") == "rs_1"]
    assert ours[0] == {"type": "response.content_part.added", "sequence_number": ours[0][
        "sequence_number"], **where, "part": {"type": "reasoning_text", "text": ""}}  # fmt: skip
    deltas = [e for e in ours if e["type"] == "response.reasoning_text.delta"]
    assert len(deltas) > 1
    assert all({k: e[k] for k in where} == where for e in deltas)
    assert "".join(e["delta"] for e in deltas) == thought
    assert [e["type"] for e in ours[-2:]] == [
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    assert ours[-2]["text"] == thought
    assert ours[-1]["part"] == part
    closed = next(e for e in events if e["type"] == "response.output_item.done")
    assert closed["item"] == reasoning


def test_a_replay_opens_with_a_response_not_yet_completed() -> None:
    """``completed_at`` is set only once a Response is completed: ``response.created`` and
    ``response.in_progress`` say null, as an upstream's do; a replay sent the stored time."""
    stored = {**response(MESSAGE), "completed_at": 1_700_000_009}
    events = replayed(stored)
    for opening in events[:2]:
        assert opening["response"]["status"] == "in_progress"
        assert opening["response"]["completed_at"] is None
    assert events[-1]["response"] == stored
