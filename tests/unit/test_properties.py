"""Property tests of the pure request-path pieces: validation, cache keys and SSE round trips."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import random
import unicodedata
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxy.cache.keys import chat_key
from proxy.canonical import CHAT_IGNORED_FIELDS, normalize_text
from proxy.errors import BadRequestError
from proxy.http.validate import chat_request
from proxy.upstream import EventParser, StreamAssembler, replay

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every character, lone surrogates included: json.dumps escapes them (\ud800) or, with
# ensure_ascii=False, they become invalid UTF-8 bytes.
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(["\r\n", "\r", "\n", " ", "\t", "\u00a0", "e\u0301", "\u0000", "\ufeff"]),
    ),
    max_size=30,
).map("".join)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHAR, max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(ANY_CHAR, max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)
ROLES = st.sampled_from(["user", "system", "assistant", "tool"])
MESSAGE_LIKE = st.fixed_dictionaries(
    {"role": st.one_of(ROLES, ROLES, JSON_VALUES)},
    optional={"content": JSON_VALUES, "name": JSON_VALUES, "tool_calls": JSON_VALUES},
)
MESSAGES = st.lists(st.one_of(MESSAGE_LIKE, MESSAGE_LIKE, JSON_VALUES), min_size=1, max_size=3)
# Bodies shaped like chat requests, so that many examples get past the first checks.
CHAT_LIKE = st.fixed_dictionaries(
    {
        "model": st.one_of(st.text(ANY_CHAR, min_size=1, max_size=10), st.just("m"), JSON_VALUES),
        "messages": st.one_of(MESSAGES, MESSAGES, JSON_VALUES),
    },
    optional={
        "stream": st.one_of(st.booleans(), st.none(), JSON_VALUES),
        "stream_options": JSON_VALUES,
        "temperature": st.one_of(st.floats(), st.integers(), JSON_VALUES),
        "n": JSON_VALUES,
        "tools": JSON_VALUES,
        "x_unknown": JSON_VALUES,
    },
)


def encode(value: Any, ensure_ascii: bool) -> bytes:
    """JSON text the way any client might send it: NaN, huge integers and lone surrogates
    included (stdlib json writes all three; orjson would refuse)."""
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def parse_path(raw: bytes) -> None:
    """Validation, then the key the request would be cached under."""
    chat = chat_request(raw)
    assert isinstance(chat.model, str)
    assert chat.model.strip()
    assert isinstance(chat.stream, bool)
    assert chat.temperature is None or isinstance(chat.temperature, float)
    assert isinstance(chat.body["messages"], list)
    assert chat.body["messages"]
    assert chat_key("ns", chat.body).startswith("chat:ns:")


# -- (a) validation never fails with anything but a 400 ----------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_chat_request_on_arbitrary_bytes_raises_only_bad_request(raw: bytes) -> None:
    with contextlib.suppress(BadRequestError):
        parse_path(raw)


@SETTINGS
@given(st.one_of(JSON_VALUES, CHAT_LIKE), st.booleans())
def test_chat_request_on_arbitrary_json_raises_only_bad_request(
    value: Any, ensure_ascii: bool
) -> None:
    with contextlib.suppress(BadRequestError):
        parse_path(encode(value, ensure_ascii))


@SETTINGS
@given(
    st.integers(min_value=1, max_value=3000),
    st.sampled_from(["[", '{"k":']),
    st.sampled_from(["content", "tools"]),
)
def test_chat_request_on_deep_nesting_raises_only_bad_request(
    depth: int, opener: str, where: str
) -> None:
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + "1.0" + closer * depth
    if where == "content":
        raw = '{"model": "m", "messages": [{"role": "user", "content": ' + deep + "}]}"
    else:  # outside the messages, where numbers are canonicalized
        raw = '{"model": "m", "messages": [{"role": "user", "content": "q"}], "tools": ' + deep
        raw += "}"
    with contextlib.suppress(BadRequestError):
        parse_path(raw.encode())


# -- (b) the cache key -------------------------------------------------------------------------

# JSON values without integral floats: 1 and 1.0 are one value to the key on purpose.
PLAIN_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    TEXT,
)
PLAIN_VALUES = st.recursive(
    PLAIN_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_NAMES = st.one_of(
    st.sampled_from(
        ["temperature", "top_p", "max_tokens", "n", "seed", "stop", "tools", "tool_choice",
         "response_format", "logit_bias", "logprobs", "reasoning_effort", "x_vendor_field"]
    ),
    st.text(min_size=1, max_size=8),
).filter(lambda name: name not in {*CHAT_IGNORED_FIELDS, "model", "messages"})  # fmt: skip
CONTENT = st.one_of(
    TEXT,
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
            st.fixed_dictionaries({"type": st.just("image_url"), "image_url": PLAIN_VALUES}),
        ),
        max_size=3,
    ),
    st.none(),
)
BODIES = st.fixed_dictionaries(
    {
        "model": st.text(min_size=1, max_size=10),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": CONTENT},
                optional={"name": st.text(max_size=5)},
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "temperature": st.floats(0, 2).filter(lambda x: not x.is_integer()),
        "seed": st.integers(0, 2**32),
        "stop": PLAIN_VALUES,
        "stream": st.booleans(),
        "user": st.text(max_size=5),
    },
)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON (``True`` and ``1`` differ, unlike in Python)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@SETTINGS
@given(BODIES, st.randoms(use_true_random=False))
def test_key_is_deterministic_and_ignores_key_order(
    body: dict[str, Any], rng: random.Random
) -> None:
    key = chat_key("ns", body)
    assert chat_key("ns", copy.deepcopy(body)) == key
    assert chat_key("ns", shuffled(body, rng)) == key
    assert chat_key("other-ns", body) != key


@SETTINGS
@given(BODIES, FIELD_NAMES, PLAIN_VALUES, PLAIN_VALUES)
def test_any_change_to_an_answer_changing_field_changes_the_key(
    body: dict[str, Any], name: str, old: Any, new: Any
) -> None:
    assume(not same_json(old, new))
    before = {**body, name: old}
    assert chat_key("ns", {**body, name: new}) != chat_key("ns", before)
    without = {k: v for k, v in before.items() if k != name}
    assert chat_key("ns", without) != chat_key("ns", before)


@SETTINGS
@given(BODIES, st.sampled_from(sorted(CHAT_IGNORED_FIELDS)), PLAIN_VALUES)
def test_delivery_and_bookkeeping_fields_do_not_change_the_key(
    body: dict[str, Any], name: str, value: Any
) -> None:
    assert chat_key("ns", {**body, name: value}) == chat_key("ns", body)


@SETTINGS
@given(BODIES, st.data())
def test_message_text_changes_the_key_beyond_normalisation(
    body: dict[str, Any], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(body["messages"]) - 1))
    old, new = data.draw(TEXT), data.draw(TEXT)
    as_part = data.draw(st.booleans())

    def with_text(text: str) -> dict[str, Any]:
        messages = copy.deepcopy(body["messages"])
        messages[index]["content"] = [{"type": "text", "text": text}] if as_part else text
        return {**body, "messages": messages}

    messages = body["messages"]
    prefill = index == len(messages) - 1 and messages[index]["role"] == "assistant"
    same = old == new if prefill else normalize_text(old) == normalize_text(new)
    assert (chat_key("ns", with_text(old)) == chat_key("ns", with_text(new))) == same


@SETTINGS
@given(BODIES, TEXT, st.sampled_from(["\r\n", " ", "\t", "\n", " \r\n "]))
def test_documented_normalisation_keeps_the_key(body: dict[str, Any], text: str, pad: str) -> None:
    """NFD instead of NFC, CRLF instead of LF and trailing whitespace: one key (but in a final
    assistant message, a prefill, kept as sent)."""
    assume(body["messages"][-1]["role"] != "assistant")

    def with_text(value: str) -> dict[str, Any]:
        messages = copy.deepcopy(body["messages"])
        messages[-1]["content"] = value
        return {**body, "messages": messages}

    text = text.replace("\r", "")
    variant = unicodedata.normalize("NFD", text).replace("\n", "\r\n") + pad
    assert chat_key("ns", with_text(variant)) == chat_key("ns", with_text(text))


@SETTINGS
@given(BODIES, st.data())
def test_role_and_model_change_the_key(body: dict[str, Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(body["messages"]) - 1))
    role = data.draw(st.sampled_from(["system", "user", "assistant", "tool", "developer"]))
    assume(role != body["messages"][index]["role"])
    messages = copy.deepcopy(body["messages"])
    messages[index]["role"] = role
    assert chat_key("ns", {**body, "messages": messages}) != chat_key("ns", body)
    model = data.draw(st.text(min_size=1, max_size=10))
    assume(model != body["model"])
    assert chat_key("ns", {**body, "model": model}) != chat_key("ns", body)


# -- (c) SSE: replay -> parser -> assembler gives the completion back --------------------------

ANSWER_TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(["\n", "\n\n", "data: ", "[DONE]", " ", "\r\n", "\u2028", "\U0001f916"]),
    ),
    min_size=1,
    max_size=60,
).map("".join)
TOOL_CALLS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=12),
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {
                    "name": st.text(min_size=1, max_size=12),
                    "arguments": st.one_of(
                        st.just(""),
                        JSON_VALUES.filter(lambda v: not isinstance(v, float)).map(
                            lambda v: json.dumps(v)
                        ),
                        ANSWER_TEXT,
                    ),
                }
            ),
        }
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def completions(draw: st.DrawFn) -> dict[str, Any]:
    choices = []
    for index in range(draw(st.integers(1, 3))):
        message: dict[str, Any] = {"role": "assistant"}
        tools = draw(st.one_of(st.none(), TOOL_CALLS))
        message["content"] = draw(ANSWER_TEXT) if tools is None else draw(st.none() | ANSWER_TEXT)
        if tools is not None:
            message["tool_calls"] = tools
        if draw(st.booleans()):
            message["refusal"] = draw(st.none() | ANSWER_TEXT)
        if draw(st.integers(0, 4)) == 0:
            message["reasoning_content"] = draw(ANSWER_TEXT)
        finish = draw(st.sampled_from(["stop", "tool_calls", "length", "content_filter"]))
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
        )
    completion: dict[str, Any] = {
        "id": "chatcmpl-" + draw(st.text("abcdef0123456789", min_size=1, max_size=8)),
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": draw(st.text(min_size=1, max_size=12)),
        "choices": choices,
    }
    if draw(st.booleans()):
        completion["system_fingerprint"] = "fp_" + draw(st.text("abc123", max_size=6))
    if draw(st.booleans()):
        tokens = draw(st.integers(0, 10_000))
        completion["usage"] = {
            "prompt_tokens": 1,
            "completion_tokens": tokens,
            "total_tokens": tokens + 1,
        }
    return completion


@st.composite
def boundaries_for(draw: st.DrawFn, completion: dict[str, Any]) -> dict[str, Any]:
    """Chunk lengths the way a stored stream records them, sometimes wrong or missing."""
    out: dict[str, Any] = {}
    for choice in completion["choices"]:
        fields: dict[str, list[int]] = {}
        message = choice["message"]
        texts = {k: v for k, v in message.items() if isinstance(v, str) and k != "role"}
        for index, call in enumerate(message.get("tool_calls") or []):
            texts[f"tool:{index}"] = call["function"]["arguments"]
        for name, text in texts.items():
            kind = draw(st.sampled_from(["split", "split", "none", "wrong"]))
            if kind == "split" and text:
                cuts = sorted(draw(st.sets(st.integers(1, len(text)), max_size=6)) | {len(text)})
                fields[name] = [b - a for a, b in zip([0, *cuts], cuts, strict=False) if b > a]
            elif kind == "wrong":
                fields[name] = draw(st.lists(st.integers(-3, 50), max_size=4))
        out[str(choice["index"])] = fields
    return out


def feed_in_pieces(raw: bytes, cuts: list[int]) -> StreamAssembler:
    """Parse ``raw`` fed in the pieces between ``cuts`` (any points, even mid-character)."""
    parser = EventParser()
    assembler = StreamAssembler()
    points = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    for start, end in itertools.pairwise(points):
        for data in parser.feed(raw[start:end]):
            assembler.feed(data)
    return assembler


@settings(max_examples=80, deadline=None)
@given(st.data(), completions(), st.booleans(), st.lists(st.integers(0, 10**6), max_size=40))
def test_replayed_stream_reassembles_to_the_same_completion(
    data: st.DataObject, completion: dict[str, Any], include_usage: bool, cuts: list[int]
) -> None:
    boundaries = data.draw(boundaries_for(completion))
    raw = replay(completion, boundaries, include_usage=include_usage)
    assembler = feed_in_pieces(raw, cuts)

    assert assembler.complete
    got = assembler.completion()
    for key in ("id", "created", "model", "system_fingerprint"):
        assert got.get(key) == completion.get(key)
    if include_usage and "usage" in completion:
        assert got["usage"] == completion["usage"]
    else:
        assert "usage" not in got
    assert len(got["choices"]) == len(completion["choices"])
    for sent, back in zip(completion["choices"], got["choices"], strict=True):
        assert back["index"] == sent["index"]
        assert back["finish_reason"] == sent["finish_reason"]
        message = sent["message"]
        assert back["message"]["role"] == "assistant"
        assert back["message"]["content"] == message["content"]
        assert back["message"]["refusal"] == message.get("refusal")
        assert back["message"].get("reasoning_content") == message.get("reasoning_content")
        assert back["message"].get("tool_calls") == message.get("tool_calls")
    # A stored stream answers a non-streamed request: the assembled JSON must be writable.
    orjson.dumps(got)
