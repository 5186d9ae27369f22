"""The answer judge: meaning, not bytes; strict on tool calls, numbers, yes/no and code."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from proxy.semantic.embedders import HashEmbedder
from proxy.semantic.judge import AnswerJudge, _numbers

pytestmark = pytest.mark.anyio


def answer(content: str | None = None, calls: list[tuple[str, str]] | None = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return {"choices": [{"index": 0, "message": message}]}


async def embed(texts: list[str]) -> npt.NDArray[np.float32]:
    hashed = HashEmbedder(256)
    return np.stack([hashed.encode(t) for t in texts])


judge = AnswerJudge(embed, min_similarity=0.8)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Paris is the capital of France.", "The capital of France is Paris."),
        ("Yes, it is safe.", "Yes: it is safe."),
    ],
)
async def test_the_same_answer_worded_otherwise(a: str, b: str) -> None:
    assert await judge.same(answer(a), answer(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("It weighs 1000 kg.", "It weighs 1200 kg."),
        ("Yes, it is safe to take.", "No, it is safe to take only with food."),
        ("Use ```py\nx = 1\n```", "Use ```py\nx = 2\n```"),
        ("Paris is the capital of France.", "Bananas grow in warm countries all year."),
        ("Paris.", None),
    ],
)
async def test_different_answers(a: str, b: str | None) -> None:
    assert not await judge.same(answer(a), answer(b))


async def alike(texts: list[str]) -> npt.NDArray[np.float32]:
    """An embedder that finds every two answers alike: the judge's rules alone decide."""
    return np.full((len(texts), 4), 0.5, dtype=np.float32)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("**Yes.** Ibuprofen is safe with food.", "**No.** Ibuprofen is safe with food."),
        ("# Yes\nIt is safe.", "# No\nIt is safe."),
        ("> Yes, take it with Ibuprofen.", "> No, take it with Ibuprofen."),
    ],
)
async def test_an_opening_yes_or_no_behind_markdown_is_still_compared(a: str, b: str) -> None:
    assert not await AnswerJudge(alike).same(answer(a), answer(b))
    assert await AnswerJudge(alike).same(answer(a), answer(a.replace("food", "meals")))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Run:\n~~~sh\nrm -rf /tmp/build\n~~~", "Run:\n~~~sh\nrm -rf /\n~~~"),
        ("Run:\n```sh\nrm -rf /tmp/build", "Run:\n```sh\nrm -rf /"),  # a fence left open
        ("Use ```sh\nrm -rf /tmp/build\n```", "Use ```sh\nrm -rf /\n```"),
    ],
)
async def test_code_in_any_fence_is_compared(a: str, b: str) -> None:
    assert not await AnswerJudge(alike).same(answer(a), answer(b))
    assert await AnswerJudge(alike).same(answer(a), answer(a.replace("Run:", "Run this:")))


def test_numbers_are_compared_by_value() -> None:
    assert _numbers("1,000 kg and 3.50 m") == _numbers("3.5 m and 1000 kg")
    assert _numbers("10 kg") != _numbers("100 kg")
    # A leading decimal point, an exponent and a Unicode minus are numbers too.
    assert _numbers("Take .5 mg") != _numbers("Take .25 mg")
    assert _numbers("Take .5 mg") == _numbers("Take 0.5 mg")
    assert _numbers("About 1e5 cells") != _numbers("About 1e9 cells")
    assert _numbers("About 1e5 cells") == _numbers("About 100000 cells")
    assert _numbers("It is \u22125 degrees") != _numbers("It is 5 degrees")
    assert _numbers("It is \u22125 degrees") == _numbers("It is -5 degrees")
    assert _numbers("Version 3.11. Then 7.") == _numbers("7 and 3.11")


async def test_tool_calls_compare_by_name_and_arguments_as_json() -> None:
    one = answer(calls=[("get_weather", '{"city": "Paris", "unit": "C"}')])
    same = answer(calls=[("get_weather", '{"unit":"C","city":"Paris"}')])
    other = answer(calls=[("get_weather", '{"city": "Lyon", "unit": "C"}')])
    assert await judge.same(one, same)
    assert not await judge.same(one, other)
    assert not await judge.same(one, answer("It is sunny in Paris."))


async def test_a_legacy_function_call_compares_like_a_tool_call() -> None:
    """``function_call`` (the API before tools): get_weather(Paris) is not get_weather(London)
    (both have no text, and were judged the same)."""

    def legacy(city: str) -> Any:
        call = {"name": "get_weather", "arguments": f'{{"city": "{city}"}}'}
        message = {"role": "assistant", "content": None, "function_call": call}
        return {"choices": [{"index": 0, "message": message}]}

    assert await judge.same(legacy("Paris"), legacy("Paris"))
    assert not await judge.same(legacy("Paris"), legacy("London"))
    assert not await judge.same(legacy("Paris"), answer("It is sunny in Paris."))


async def test_without_an_embedder_the_words_must_match() -> None:
    words = AnswerJudge(None)
    assert await words.same(answer("Paris, France."), answer("paris france"))
    assert not await words.same(answer("Paris is it."), answer("It is Paris."))


async def test_answers_naming_different_things_differ() -> None:
    a = answer("The capital is Canberra, in Australia.")
    b = answer("The capital is Vienna, in Austria.")
    assert not await judge.same(a, b)
    assert await judge.same(a, answer("The capital is Canberra, in Australia!"))
