"""Pure pieces of streaming: the SSE parser, the chunk assembler and the replay."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.upstream import EventParser, StreamAssembler, completion_is_storable, replay
from proxy.upstream.sse import ERROR_EVENT_DATA


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 123,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return orjson.dumps(body)


def sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


TEXT_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "The capital"}),
    chunk({"content": " of France"}),
    chunk({"content": " is Paris."}),
    chunk({}, "stop"),
    orjson.dumps({"id": "chatcmpl-s", "choices": [], "usage": {"total_tokens": 11}}),
    b"[DONE]",
]


def parse_all(raw: bytes, piece: int) -> list[bytes]:
    parser = EventParser()
    events: list[bytes] = []
    for i in range(0, len(raw), piece):
        events += parser.feed(raw[i : i + piece])
    return events


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 100_000])
def test_parser_finds_every_event_however_the_bytes_are_split(piece: int) -> None:
    raw = sse(*TEXT_STREAM)
    assert parse_all(raw, piece) == TEXT_STREAM


def test_parser_handles_crlf_comments_and_multiline_data() -> None:
    raw = b": keep-alive\r\n\r\nevent: message\r\ndata: a\r\ndata:b\r\n\r\ndata: [DONE]\r\n\r\n"
    assert parse_all(raw, 5) == [b"a\nb", b"[DONE]"]


@pytest.mark.parametrize("piece", [1, 9, 100_000])
def test_an_event_named_error_makes_the_stream_unstorable(piece: int) -> None:
    """Some servers (older vLLM) send a failure mid-stream as ``event: error`` whose data has no
    ``error`` key; what follows it must not make the stream look whole."""
    failure = b'event: error\ndata: {"message": "overloaded", "type": "server_error"}\n\n'
    raw = sse(*TEXT_STREAM[:2]) + failure + sse(*TEXT_STREAM[2:])
    events = parse_all(raw, piece)
    assert events == [*TEXT_STREAM[:2], ERROR_EVENT_DATA, *TEXT_STREAM[2:]]
    assembler = assemble(events)
    assert assembler.failed
    assert not assembler.complete


def assemble(payloads: list[bytes]) -> StreamAssembler:
    assembler = StreamAssembler()
    for p in payloads:
        assembler.feed(p)
    return assembler


def test_assembles_text_usage_and_envelope() -> None:
    a = assemble(TEXT_STREAM)
    assert a.complete
    completion = a.completion()
    assert completion["id"] == "chatcmpl-s"
    assert completion["object"] == "chat.completion"
    assert completion["system_fingerprint"] == "fp_1"
    assert completion["usage"] == {"total_tokens": 11}
    message = completion["choices"][0]["message"]
    assert message["content"] == "The capital of France is Paris."
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert a.boundaries() == {"0": {"content": [11, 10, 10]}}
    assert completion_is_storable(200, completion)


def test_assembles_tool_calls_spread_over_deltas() -> None:
    a = assemble(
        [
            chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                   "function": {"name": "get_time", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
            b"[DONE]",
        ]
    )  # fmt: skip
    message = a.completion()["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]  # fmt: skip
    assert a.complete
    assert a.boundaries()["0"]["tool:0"] == [4, 13]


def test_keeps_reasoning_refusal_and_logprobs() -> None:
    lp = [{"token": "Hi", "logprob": -0.1, "bytes": None, "top_logprobs": []}]
    a = assemble(
        [
            chunk({"role": "assistant", "reasoning_content": "think"}),
            chunk({"reasoning_content": "ing"}),
            b'{"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": '
            + orjson.dumps(lp)
            + b"}}]}",
            chunk({"refusal": "no"}, "stop"),
            b"[DONE]",
        ]
    )
    choice = a.completion()["choices"][0]
    assert choice["message"]["reasoning_content"] == "thinking"
    assert choice["message"]["refusal"] == "no"
    assert choice["logprobs"] == {"content": lp}


def test_an_empty_id_on_a_continuation_delta_keeps_the_calls_own() -> None:
    """Alibaba Cloud's DashScope (Qwen) repeats a tool call's ``id`` (and ``function.name``) as
    ``""`` on every continuation delta. A client reading the stream (the openai SDK joins the
    strings) has the call's id; the entry had ``""``, and a hit answered the call with an id no
    tool result can refer to."""

    def call(index: int, id_: str, name: str, arguments: str) -> dict[str, Any]:
        return {"index": index, "id": id_, "type": "function",
                "function": {"name": name, "arguments": arguments}}  # fmt: skip

    first = {
        "role": "assistant",
        "content": None,
        "tool_calls": [call(0, "call_1", "get_weather", "")],
    }
    a = assemble(
        [
            chunk(first),
            chunk({"tool_calls": [call(0, "", "", '{"city": ')]}),
            chunk({"tool_calls": [call(0, "", "", '"Paris"}')]}),
            chunk({"tool_calls": [call(1, "call_2", "get_time", "{}")]}),
            chunk({"tool_calls": [call(1, "", "", "")]}),
            chunk({}, "tool_calls"),
            b"[DONE]",
        ]
    )
    assert a.complete
    calls = a.completion()["choices"][0]["message"]["tool_calls"]
    assert calls == [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]  # fmt: skip
    stream = replay(a.completion(), a.boundaries(), include_usage=False)
    replayed = [orjson.loads(e) for e in parse_all(stream, 100_000)[:-1]]
    ids = [t.get("id") for e in replayed for t in e["choices"][0]["delta"].get("tool_calls", [])]
    assert [i for i in ids if i is not None] == ["call_1", "call_2"]


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param(TEXT_STREAM[:-1], id="no-done"),
        pytest.param([*TEXT_STREAM[:3], b"[DONE]"], id="no-finish-reason"),
        pytest.param([*TEXT_STREAM[:3], b'{"error": {"message": "boom"}}'], id="error-event"),
        pytest.param([*TEXT_STREAM[:3], b"{not json"], id="garbage"),
        pytest.param([*TEXT_STREAM, chunk({"content": "late"})], id="data-after-done"),
        pytest.param([b"[DONE]"], id="empty"),
    ],
)
def test_incomplete_or_broken_streams_are_not_complete(payloads: list[bytes]) -> None:
    assert not assemble(payloads).complete


def test_length_finished_stream_is_complete_but_not_storable() -> None:
    a = assemble([chunk({"content": "The"}), chunk({}, "length"), b"[DONE]"])
    assert a.complete
    assert not completion_is_storable(200, a.completion())


def replayed(completion: dict[str, Any], boundaries: dict[str, Any], usage: bool) -> list[Any]:
    events = parse_all(replay(completion, boundaries, include_usage=usage), 1000)
    assert events[-1] == b"[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


def test_replay_of_a_streamed_entry_keeps_the_original_chunks() -> None:
    a = assemble(TEXT_STREAM)
    chunks = replayed(a.completion(), a.boundaries(), usage=True)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [d.get("content") for d in deltas[1:4]] == ["The capital", " of France", " is Paris."]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 123,
        "model": "m",
        "system_fingerprint": "fp_1",
        "usage": {"total_tokens": 11},
        "choices": [],
    }
    assert {(c["id"], c["created"], c["model"]) for c in chunks} == {("chatcmpl-s", 123, "m")}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_replay_without_usage_has_no_usage_chunk() -> None:
    a = assemble(TEXT_STREAM)
    chunks = replayed(a.completion(), a.boundaries(), usage=False)
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_replay_of_a_non_streamed_entry_splits_words_and_tool_arguments() -> None:
    text = "one two three four five six seven"
    completion: dict[str, Any] = {
        "id": "x",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "f", "arguments": '{"a": "0123456789abcdef"}'}}]},
                "finish_reason": "tool_calls",
            }
        ],
    }  # fmt: skip
    chunks = replayed(completion, {}, usage=False)
    a = StreamAssembler()
    for c in chunks:
        a.feed(orjson.dumps(c))
    a.feed(b"[DONE]")
    assert a.completion()["choices"][0]["message"]["content"] == text
    assert (
        a.completion()["choices"][0]["message"]["tool_calls"]
        == completion["choices"][0]["message"]["tool_calls"]
    )
    assert len(a.boundaries()["0"]["content"]) == 3
    assert len(a.boundaries()["0"]["tool:0"]) == 2


def test_replay_hands_logprobs_to_their_pieces() -> None:
    tokens = [{"token": t, "logprob": -1.0} for t in ["The", " capital", " of", " France"]]
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of France"},
                "logprobs": {"content": tokens},
                "finish_reason": "stop",
            }
        ]
    }
    chunks = replayed(completion, {"0": {"content": [11, 10]}}, usage=False)
    handed = [c["choices"][0]["logprobs"] for c in chunks]
    assert handed[1] == {"content": tokens[:2]}
    assert handed[2] == {"content": tokens[2:]}


def test_round_trip_with_several_choices() -> None:
    completion = {
        "id": "x",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"},
             "finish_reason": "stop"}
            for i in range(3)
        ],
    }  # fmt: skip
    a = StreamAssembler()
    for c in replayed(completion, {}, usage=False):
        a.feed(orjson.dumps(c))
    a.feed(b"[DONE]")
    assert [c["message"]["content"] for c in a.completion()["choices"]] == [
        "answer 0",
        "answer 1",
        "answer 2",
    ]


def test_a_delta_field_that_is_not_text_makes_the_stream_unstorable() -> None:
    annotations = [{"type": "url_citation", "url_citation": {"url": "https://example.com"}}]
    a = assemble(
        [chunk({"role": "assistant", "content": "See the source."}),
         chunk({"annotations": annotations}, "stop"), b"[DONE]"]
    )  # fmt: skip
    assert not a.complete


def accumulated(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """A choice's message rebuilt from its deltas as the SDKs do: strings appended, objects
    merged field by field, anything else taken as it comes."""

    def merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if isinstance(value, str) and isinstance(into.get(key), str):
                into[key] += value
            elif isinstance(value, dict):
                merge(into.setdefault(key, {}), value)
            elif value is not None or key not in into:
                into[key] = value

    message: dict[str, Any] = {}
    for c in chunks:
        for choice in c["choices"]:
            merge(message, choice["delta"])
    return message


def one_choice(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "x", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}  # fmt: skip


def test_a_legacy_function_call_and_annotations_survive_a_replay() -> None:
    """Must NOT drop: a stored answer to the legacy ``functions`` API, or one with url
    citations, streamed to a client that asked for a stream."""
    call = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}
    citation = {"url": "https://example.test/a", "start_index": 0, "end_index": 5}
    cited = [{"type": "url_citation", "url_citation": citation}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"role": "assistant", "content": None, "function_call": call}, "function_call"),
        ({"role": "assistant", "content": "Paris", "annotations": cited}, "stop"),
    ]
    for message, finish in cases:
        completion = one_choice(message, finish)
        chunks = replayed(completion, {}, usage=False)
        rebuilt = accumulated(chunks)
        assert {k: v for k, v in rebuilt.items() if v is not None} == {
            k: v for k, v in message.items() if v is not None
        }
        assert chunks[-1]["choices"][0]["finish_reason"] == finish


def test_the_first_delta_says_content_null_before_a_call_and_empty_before_text() -> None:
    """As the API streams them; an SDK rebuilds ``content`` from the first delta onwards."""
    tool = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    calls: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [tool]}
    text: dict[str, Any] = {"role": "assistant", "content": "Hi", "refusal": None}
    cases: list[tuple[dict[str, Any], str | None]] = [(calls, None), (text, "")]
    for message, first in cases:
        completion = one_choice(message, "stop")
        chunks = replayed(completion, {}, usage=False)
        assert chunks[0]["choices"][0]["delta"]["content"] == first
        assert accumulated(chunks)["content"] == message["content"]


def test_empty_annotations_are_not_replayed() -> None:
    message = {"role": "assistant", "content": "Hi", "annotations": []}
    completion = one_choice(message, "stop")
    assert all(
        "annotations" not in c["choices"][0]["delta"] for c in replayed(completion, {}, usage=False)
    )


def test_an_azure_stream_takes_its_envelope_from_the_first_chunk_that_says_something() -> None:
    """Azure OpenAI opens a stream with prompt filter results, ``"id": ""``, ``"model": ""``
    and ``"created": 0``; a stored entry (and every hit it serves) must not carry those."""
    filters = orjson.dumps({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                            "prompt_filter_results": [{"prompt_index": 0}]})  # fmt: skip
    a = assemble([filters, *TEXT_STREAM])
    completion = a.completion()
    assert (completion["id"], completion["created"], completion["model"]) == (
        "chatcmpl-s",
        123,
        "m",
    )


def test_top_level_fields_an_upstream_adds_survive_the_entry_and_its_replays() -> None:
    """Must NOT drop: fields an upstream adds beside the envelope (Perplexity's ``citations``
    and ``search_results`` on every chunk, Azure's ``prompt_filter_results``) reach the client
    on a miss, and the SDK keeps them (its final completion takes the first chunk's fields):
    a hit, streamed or not, carries them too."""
    citations = ["https://example.org/paris"]
    extra: dict[str, Any] = {"citations": citations, "search_results": [{"url": citations[0]}]}
    stream = [
        chunk({"role": "assistant", "content": ""}, **extra),
        chunk({"content": "Paris."}, **extra),
        chunk({}, "stop", **extra),
        b"[DONE]",
    ]
    a = assemble(stream)
    completion = a.completion()
    assert {k: completion.get(k) for k in extra} == extra
    for stored in (completion, {**completion, "usage": {"total_tokens": 3}}):
        for usage in (False, True):
            chunks = replayed(stored, a.boundaries(), usage=usage)
            assert all({k: c.get(k) for k in extra} == extra for c in chunks)
    filters = {"prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    opening = orjson.dumps({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                            **filters})  # fmt: skip
    azure = assemble([opening, *TEXT_STREAM]).completion()
    assert azure["prompt_filter_results"] == filters["prompt_filter_results"]
    noise = assemble([chunk({"content": "Hi"}, "stop", obfuscation="x"), b"[DONE]"])
    assert "obfuscation" not in noise.completion()


def choice_chunk(delta: dict[str, Any], finish: str | None = None, **fields: Any) -> bytes:
    """A chunk whose one choice carries ``fields`` of an upstream's own beside the usual."""
    body = orjson.loads(chunk(delta, finish))
    body["choices"][0].update(fields)
    return orjson.dumps(body)


def test_fields_an_upstream_adds_to_a_choice_survive_the_entry_and_its_replays() -> None:
    """Must NOT drop: vLLM's ``stop_reason`` (the stop string or token that ended the answer)
    on the last chunk, Azure's ``content_filter_results`` on each: the entry keeps the last
    value of each, a non-streamed hit has them in its choice and a streamed one on its last
    chunk (an SDK reading ``choice.content_filter_results`` on a hit found none)."""
    safe = {"hate": {"filtered": False, "severity": "safe"}}
    stream = [
        choice_chunk({"role": "assistant", "content": ""}),
        choice_chunk({"content": "Paris"}, content_filter_results={"hate": {"filtered": True}}),
        choice_chunk({"content": "."}, content_filter_results=safe),
        choice_chunk({}, "stop", stop_reason="</s>", content_filter_results=None),
        b"[DONE]",
    ]
    a = assemble(stream)
    choice = a.completion()["choices"][0]
    assert (choice["stop_reason"], choice["content_filter_results"]) == ("</s>", safe)
    assert choice["message"]["content"] == "Paris."
    for boundaries in (a.boundaries(), {}):  # stored from a stream, or from a whole answer
        chunks = replayed(a.completion(), boundaries, usage=False)
        last = chunks[-1]["choices"][0]
        assert (last["finish_reason"], last["stop_reason"]) == ("stop", "</s>")
        assert last["content_filter_results"] == safe
        assert all(set(c["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
                   for c in chunks[:-1])  # fmt: skip
        assert assemble([*map(orjson.dumps, chunks), b"[DONE]"]).completion() == a.completion()


def test_an_answer_too_large_to_store_is_let_go_of_as_it_streams() -> None:
    """Memory stays bounded: past the largest entry, the assembler keeps nothing more (the
    stream is still relayed whole; only what semcache holds of it is bounded)."""
    import tracemalloc

    piece = "x" * 8192
    parser, assembler = EventParser(), StreamAssembler(max_bytes=64 * 1024)
    tracemalloc.start()
    try:
        assembler.feed(chunk({"role": "assistant", "content": ""}))
        for _ in range(2000):  # 16 MB of text
            for data in parser.feed(sse(chunk({"content": piece}))):
                assembler.feed(data)
        for data in parser.feed(sse(chunk({}, "stop"), b"[DONE]")):
            assembler.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert assembler.too_large
    assert not assembler.complete
    assert peak < 2 * 1024 * 1024


def with_logprobs(payload: bytes, logprobs: dict[str, Any]) -> bytes:
    body = orjson.loads(payload)
    body["choices"][0]["logprobs"] = logprobs
    return orjson.dumps(body)


def test_the_bound_never_refuses_an_answer_that_fits() -> None:
    """What the assembler counts is a lower bound of the entry's bytes: an answer whose entry
    (body and replay hints) is exactly the bound is still stored, with logprobs and tools."""
    top = {"token": "é", "logprob": -0.5, "bytes": [195, 169]}
    logprobs = {"content": [{**top, "top_logprobs": [top]}]}
    call = {"index": 0, "id": "t", "function": {"name": "f", "arguments": "{"}}
    payloads = [
        chunk({"role": "assistant", "content": ""}),
        *[with_logprobs(chunk({"content": "é"}), logprobs) for _ in range(50)],
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        chunk({}, "stop"),
        b"[DONE]",
    ]
    whole, size = _entry(payloads)
    bounded = _bounded(payloads, size)
    assert bounded.complete
    assert not bounded.too_large
    assert bounded.completion() == whole.completion()


def _entry(payloads: list[bytes]) -> tuple[StreamAssembler, int]:
    """The stream assembled without a bound, and the bytes of the entry it makes."""
    whole = assemble(payloads)
    return whole, len(orjson.dumps(whole.completion())) + len(orjson.dumps(whole.boundaries()))


def _bounded(payloads: list[bytes], max_bytes: int) -> StreamAssembler:
    bounded = StreamAssembler(max_bytes=max_bytes)
    for data in payloads:
        bounded.feed(data)
    return bounded


def _one_kind(kind: str) -> list[bytes]:
    """A stream whose entry is mostly one thing the assembler counts: text, a tool's arguments,
    or logprobs (ASCII, so that a character is a byte)."""
    top = {"token": "ab", "logprob": -0.5, "bytes": [97, 98]}
    pieces = {
        "text": [chunk({"content": "a" * 40}) for _ in range(50)],
        "arguments": [
            chunk({"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f"}}]}),
            *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x" * 40}}]})
              for _ in range(50)],
        ],
        "logprobs": [with_logprobs(chunk({"content": ""}), {"content": [{**top, "top_logprobs":
                     [top, top]}]}) for _ in range(50)],
    }[kind]  # fmt: skip
    return [chunk({"role": "assistant", "content": ""}), *pieces, chunk({}, "stop"), b"[DONE]"]


@pytest.mark.parametrize("kind", ["text", "arguments", "logprobs"])
def test_the_bound_never_refuses_an_answer_of_one_kind_that_fits(kind: str) -> None:
    """As above, with the entry made mostly of one kind of piece: what the assembler counts of
    it must stay below its bytes in the entry, whichever it is (an overcount of one kind is lost
    in a mixed answer far below the bound)."""
    payloads = _one_kind(kind)
    whole, size = _entry(payloads)
    bounded = _bounded(payloads, size)
    assert bounded.complete
    assert bounded.completion() == whole.completion()
    assert _bounded(payloads, size // 2).too_large  # and the bound is not a mere formality


@pytest.mark.parametrize("reader", ["events", "ndjson lines", "usage stripper"])
def test_a_long_line_read_in_small_pieces_costs_its_length_once(reader: str) -> None:
    """An event (or NDJSON line) of megabytes read 1 KB at a time: each read used to copy the
    whole line begun so far, quadratic time on the event loop (64 MB took 13 s). Fed here with
    a deadline, it must end long before the quadratic way would."""
    import time

    from proxy.cache.ollama_stream import LineParser
    from proxy.upstream import UsageStripper

    line = b'data: {"content": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    feed: Any
    if reader == "events":
        feed = EventParser().feed
    elif reader == "ndjson lines":
        feed = LineParser().feed
    else:
        feed = UsageStripper().feed
    out: list[Any] = []
    deadline = time.monotonic() + 2.0
    for i in range(0, len(line), 1024):
        out.append(feed(line[i : i + 1024]))
        assert time.monotonic() < deadline, f"quadratic: {i} bytes read in 2 s"
    out.append(feed(b"\n\n"))
    if reader == "events":
        assert out[-1] == [line[6:]]
    elif reader == "ndjson lines":
        assert out[-1] == [line]
    else:
        assert b"".join(out) == line + b"\n\n"
