"""The real openai SDK, over real HTTP, against `semcache serve` and a fake upstream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import openai
import pytest
from openai import AsyncOpenAI, Omit, OpenAI, omit
from openai.types.chat import ChatCompletion, ChatCompletionToolUnionParam

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess
from tests.support.sdk import function_calls

if TYPE_CHECKING:
    from openai._legacy_response import LegacyAPIResponse  # what with_raw_response returns


def client(proxy: ProxyProcess, key: str = "sk-e2e-a") -> OpenAI:
    return OpenAI(base_url=proxy.base_url, api_key=key, max_retries=0)


def ask(
    sdk: OpenAI,
    text: str,
    model: str = "gpt-fake",
    temperature: float | Omit = omit,
    tools: Iterable[ChatCompletionToolUnionParam] | Omit = omit,
) -> LegacyAPIResponse[ChatCompletion]:
    return sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        temperature=temperature,
        tools=tools,
    )


def test_repeat_is_one_upstream_call_sync(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with client(proxy) as sdk:
        first = ask(sdk, question)
        second = ask(sdk, question)
    assert fake_upstream.calls() == 1
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-lookup"] == "exact"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().choices[0].message.content == f"answer 1: {question}"


@pytest.mark.anyio
async def test_repeat_is_one_upstream_call_async(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    async with AsyncOpenAI(base_url=proxy.base_url, api_key="sk-e2e-a", max_retries=0) as sdk:
        answers = []
        for _ in range(3):
            raw = await sdk.chat.completions.with_raw_response.create(
                model="gpt-fake", messages=[{"role": "user", "content": question}]
            )
            answers.append((raw.headers["x-cache"], raw.parse().choices[0].message.content))
    assert [state for state, _ in answers] == ["MISS", "HIT", "HIT"]
    assert {content for _, content in answers} == {f"answer 1: {question}"}
    assert fake_upstream.calls() == 1


def test_other_key_other_model_other_temperature_all_miss(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with client(proxy) as sdk, client(proxy, "sk-e2e-b") as other:
        ask(sdk, question)
        contents = [
            ask(other, question).parse().choices[0].message.content,
            ask(sdk, question, model="gpt-fake-2").parse().choices[0].message.content,
            ask(sdk, question, temperature=0.3).parse().choices[0].message.content,
        ]
    assert contents == [f"answer {n}: {question}" for n in (2, 3, 4)]
    assert fake_upstream.calls() == 4


def test_x_cache_namespace_partitions_one_keys_entries(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    """Must NOT hit: one key, the same question, another ``X-Cache-Namespace`` (the SDK's
    ``extra_headers``); the same value hits; the header never reaches the upstream."""
    with client(proxy) as sdk:
        states = [
            sdk.chat.completions.with_raw_response.create(
                model="gpt-fake",
                messages=[{"role": "user", "content": question}],
                extra_headers={"X-Cache-Namespace": user} if user else None,
            ).headers["x-cache"]
            for user in ("user-1", "user-2", None, "user-1")
        ]
    assert states == ["MISS", "MISS", "MISS", "HIT"]
    assert fake_upstream.calls() == 3
    assert all("x-cache-namespace" not in r.headers for r in fake_upstream.requests)


@pytest.mark.parametrize("model", ["fake-length", "fake-empty"])
def test_truncated_or_empty_answers_are_not_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str, model: str
) -> None:
    with client(proxy) as sdk:
        states = [ask(sdk, question, model=model).headers["x-cache"] for _ in range(2)]
    assert states == ["MISS", "MISS"]
    assert fake_upstream.calls() == 2


def test_upstream_errors_reach_the_sdk_and_are_not_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with client(proxy) as sdk:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                ask(sdk, question, model="fake-error-500")
        with pytest.raises(openai.RateLimitError) as limited:
            ask(sdk, question, model="fake-429")
    assert limited.value.response.headers["retry-after"] == "7"
    assert fake_upstream.calls() == 3


def test_tool_calls_are_cached(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    tools: list[ChatCompletionToolUnionParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    ]
    with client(proxy) as sdk:
        first = ask(sdk, question, model="fake-tools", tools=tools)
        second = ask(sdk, question, model="fake-tools", tools=tools)
    assert second.headers["x-cache"] == "HIT"
    call = function_calls(second.parse())[0]
    original = function_calls(first.parse())[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == original.function.arguments
    assert fake_upstream.calls() == 1


def test_streaming_is_relayed(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with client(proxy) as sdk:
        stream = sdk.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": question}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == f"answer 1: {question}"


def test_bad_input_never_reaches_upstream(proxy: ProxyProcess, fake_upstream: FakeUpstream) -> None:
    with client(proxy) as sdk, pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-fake", messages=[])
    assert bad.value.status_code == 400
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["param"] == "messages"
    assert fake_upstream.calls() == 0


def test_embeddings_are_cached_per_item(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    with client(proxy) as sdk:
        first = sdk.embeddings.create(model="emb-fake", input=[question, "b " + question])
        second = sdk.embeddings.with_raw_response.create(
            model="emb-fake", input=["c " + question, question]
        )
        float_format = sdk.embeddings.create(
            model="emb-fake", input=question, encoding_format="float"
        )
    assert fake_upstream.embedding_items == [2, 1]
    assert second.headers["x-cache-hit-items"] == "1/2"
    assert second.parse().data[1].embedding == first.data[0].embedding
    assert float_format.data[0].embedding == pytest.approx(first.data[0].embedding)


def test_other_routes_pass_through(proxy: ProxyProcess, fake_upstream: FakeUpstream) -> None:
    with client(proxy) as sdk:
        models = sdk.models.list()
    assert models.data
    assert fake_upstream.requests[-1].path == "/v1/models"
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-e2e-a"
