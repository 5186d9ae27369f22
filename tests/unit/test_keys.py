from __future__ import annotations

from typing import Any

import pytest

from proxy.cache.keys import api_key_from, chat_key, identity_from, responses_key
from proxy.canonical import embedding_key, normalize_text

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer sk-1"}, "sk-1"),
        ({"authorization": "bearer  sk-1 "}, "sk-1"),
        ({"authorization": "Basic abc"}, "Basic abc"),
        ({"api-key": "azure-1"}, "azure-1"),
        ({}, None),
    ],
)
def test_api_key_from_headers(headers: dict[str, str], key: str | None) -> None:
    assert api_key_from(headers) == key


@pytest.mark.parametrize(
    ("headers", "identity"),
    [
        ([(b"authorization", b"Bearer sk-1")], "sk-1"),  # one credential: the key, as before
        ([(b"api-key", b"azure-1")], "azure-1"),
        ([(b"content-type", b"application/json")], None),
        (
            [(b"authorization", b"Bearer EMPTY"), (b"api-key", b"azure-1")],
            "authorization:Bearer EMPTY\napi-key:azure-1",
        ),
        ([(b"x-api-key", b"a"), (b"x-api-key", b"b")], "x-api-key:a\nx-api-key:b"),
    ],
)
def test_identity_is_every_credential_sent(
    headers: list[tuple[bytes, bytes]], identity: str | None
) -> None:
    assert identity_from(headers) == identity


def test_a_placeholder_bearer_does_not_merge_the_real_keys_beside_it() -> None:
    """Must NOT share: the upstream authenticates whichever it reads, so both count."""
    placeholder = (b"authorization", b"Bearer EMPTY")
    a = identity_from([placeholder, (b"api-key", b"tenant-a")])
    b = identity_from([placeholder, (b"api-key", b"tenant-b")])
    c = identity_from([(b"authorization", b"Bearer"), (b"x-api-key", b"tenant-a")])
    assert len({a, b, c, identity_from([placeholder])}) == 4


def test_key_starts_with_route_and_namespace() -> None:
    assert chat_key("ns1", BODY).startswith("chat:ns1:")
    assert chat_key("ns1", BODY) != chat_key("ns2", BODY)


def test_key_ignores_field_order_and_delivery_fields() -> None:
    reordered = {"messages": BODY["messages"], "model": "m", "stream": True, "user": "u"}
    assert chat_key("ns", reordered) == chat_key("ns", BODY)


def test_a_stored_completion_is_not_one_made_without_store() -> None:
    """Must NOT share: with ``store: true`` the answer's id is a stored completion the client
    may fetch; an answer made with store false (the default) has none."""
    assert chat_key("ns", {**BODY, "store": False}) == chat_key("ns", BODY)
    assert chat_key("ns", {**BODY, "store": None}) == chat_key("ns", BODY)
    assert chat_key("ns", {**BODY, "store": True}) != chat_key("ns", BODY)


def test_normalize_text() -> None:
    assert normalize_text("e\u0301\r\nx \t\n") == "\u00e9\nx"


def test_indentation_and_a_prefill_change_the_key() -> None:
    """Must NOT share: leading whitespace can be the indentation of the code asked about, and a
    final assistant message is a prefill the model continues from its last character."""

    def chat(*messages: dict[str, str]) -> str:
        return chat_key("ns", {**BODY, "messages": list(messages)})

    question = {"role": "user", "content": "Is this valid Python?\n    print('hi')"}
    assert chat({"role": "user", "content": "    print('hi')"}) != chat(
        {"role": "user", "content": "print('hi')"}
    )
    assert chat(question, {"role": "assistant", "content": "```python\n"}) != chat(
        question, {"role": "assistant", "content": "```python"}
    )
    # Trailing whitespace of any other message still means nothing.
    assert chat({"role": "user", "content": "Hi\n"}) == chat({"role": "user", "content": "Hi"})
    earlier = [{"role": "assistant", "content": "Hello \n"}, {"role": "user", "content": "Hi"}]
    assert chat(*earlier) == chat({"role": "assistant", "content": "Hello"}, earlier[1])


def test_a_tool_result_and_inner_parts_keep_their_trailing_whitespace() -> None:
    """Must NOT share: a tool's result is data (a trailing tab is an empty column), and parts
    are joined without a separator, so a space at the end of an inner part is inside the text."""

    def chat(*messages: dict[str, Any]) -> str:
        return chat_key("ns", {**BODY, "messages": list(messages)})

    call = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "read", "arguments": "{}"}}]}  # fmt: skip
    ask = {"role": "user", "content": "How many columns has the row?"}
    tool = {"role": "tool", "tool_call_id": "c1", "content": "a\tb\t"}
    assert chat(ask, call, tool, ask) != chat(ask, call, {**tool, "content": "a\tb"}, ask)

    def parts(*texts: str) -> str:
        return chat({"role": "user", "content": [{"type": "text", "text": t} for t in texts]})

    assert parts("Count the spaces in 'a ", "b'") != parts("Count the spaces in 'a", "b'")
    assert parts("Hi ", "there \n") == parts("Hi ", "there")  # the end is still trimmed

    def responses(*texts: str) -> str:
        content = [{"type": "input_text", "text": t} for t in texts]
        return responses_key("ns", {"model": "m", "input": [{"role": "user", "content": content}]})

    assert responses("in 'a ", "b'") != responses("in 'a", "b'")
    assert responses("Hi", "there \n") == responses("Hi", "there")


def test_a_responses_prefill_changes_the_key() -> None:
    def responses(last: str) -> str:
        items = [
            {"role": "user", "content": "Write a haiku"},
            {"role": "assistant", "content": last},
        ]
        return responses_key("ns", {"model": "m", "input": items})

    assert responses("Autumn ") != responses("Autumn")


def test_inner_whitespace_and_case_still_matter() -> None:
    spaced = {**BODY, "messages": [{"role": "user", "content": "H i"}]}
    lower = {**BODY, "messages": [{"role": "user", "content": "hi"}]}
    assert len({chat_key("ns", b) for b in (BODY, spaced, lower)}) == 3


def test_integral_floats_equal_ints_but_bools_do_not() -> None:
    assert chat_key("ns", {**BODY, "n": 1}) == chat_key("ns", {**BODY, "n": 1.0})
    assert chat_key("ns", {**BODY, "logprobs": True}) != chat_key("ns", {**BODY, "logprobs": 1})
    big = 2**60 + 1
    assert chat_key("ns", {**BODY, "seed": big}) != chat_key("ns", {**BODY, "seed": float(big)})


def test_role_changes_the_key() -> None:
    system = {**BODY, "messages": [{"role": "system", "content": "Hi"}]}
    assert chat_key("ns", system) != chat_key("ns", BODY)


def test_embedding_key_ignores_format_but_not_dimensions() -> None:
    params = {"model": "e", "input": ["a", "b"]}
    base = embedding_key("ns", params, "a")
    assert embedding_key("ns", {**params, "encoding_format": "base64"}, "a") == base
    assert embedding_key("ns", {**params, "dimensions": 256}, "a") != base
    assert embedding_key("ns", params, "b") != base
    assert embedding_key("ns", params, [1, 2]) != embedding_key("ns", params, "[1, 2]")
    assert base.startswith("emb:ns:")
