"""The Responses API through ``semcache serve`` with the real openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.support.fake_upstream import RESPONSES_PATH, FakeUpstream
from tests.support.proxy_process import ProxyProcess


@pytest.fixture
def sdk(proxy: ProxyProcess) -> Iterator[OpenAI]:
    with OpenAI(base_url=proxy.base_url, api_key="sk-e2e-resp", max_retries=0) as client:
        yield client


def test_responses_create_is_cached_and_a_stream_replays_it(
    sdk: OpenAI, fake_upstream: FakeUpstream, question: str
) -> None:
    first = sdk.responses.with_raw_response.create(model="gpt-4.1", input=question)
    again = sdk.responses.with_raw_response.create(model="gpt-4.1", input=question)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    text = first.parse().output_text
    assert text == again.parse().output_text == f"response 1: {question}"
    with sdk.responses.stream(model="gpt-4.1", input=question) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert deltas == final.output_text == text
    assert final.id == first.parse().id  # the id the upstream gave: usable as previous_response_id
    assert fake_upstream.calls(RESPONSES_PATH) == 1
    assert sdk.responses.create(model="gpt-4.1", input=question + "?").output_text == (
        f"response 2: {question}?"
    )


def test_a_streamed_miss_serves_later_plain_calls_and_tool_calls_are_kept(
    sdk: OpenAI, fake_upstream: FakeUpstream, question: str
) -> None:
    city = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
              "parameters": city}]  # fmt: skip
    with sdk.responses.stream(model="gpt-4.1", input=question, tools=tools) as stream:  # type: ignore[arg-type]
        streamed = stream.get_final_response()
    plain = sdk.responses.with_raw_response.create(model="gpt-4.1", input=question, tools=tools)  # type: ignore[arg-type]
    assert plain.headers["x-cache"] == "HIT"
    [call] = [item for item in plain.parse().output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert call.arguments == streamed.output[0].arguments  # type: ignore[union-attr]
    assert fake_upstream.calls(RESPONSES_PATH) == 1


def test_server_state_and_store_choices_are_respected(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    headers = {"authorization": "Bearer sk-e2e-resp-2"}
    url = f"{proxy.url}/v1/responses"
    follow_up = {"model": "gpt-4.1", "input": question, "previous_response_id": "resp_fake_1"}
    for _ in range(2):
        passed = httpx.post(url, json=follow_up, headers=headers, timeout=30)
        assert (passed.headers["x-cache"], passed.headers["x-cache-reason"]) == (
            "BYPASS", "bypass:server-state"
        )  # fmt: skip
    kept = httpx.post(
        url, json={"model": "gpt-4.1", "input": question}, headers=headers, timeout=30
    )
    unkept = httpx.post(
        url,
        json={"model": "gpt-4.1", "input": question, "store": False},
        headers=headers,
        timeout=30,
    )
    assert unkept.headers["x-cache"] == "MISS"  # an id the upstream kept never answers store: false
    other = httpx.post(url, json={"model": "gpt-4.1", "input": question},
                       headers={"authorization": "Bearer sk-e2e-resp-3"}, timeout=30)  # fmt: skip
    assert other.headers["x-cache"] == "MISS"
    assert kept.headers["x-cache"] == "MISS"
    assert fake_upstream.calls(RESPONSES_PATH) == 2 + 3


def test_incomplete_responses_are_never_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    body = {"model": "fake-incomplete", "input": question}
    for stream in (False, True, False):
        response = httpx.post(
            f"{proxy.url}/v1/responses", json={**body, "stream": stream}, timeout=30
        )
        assert response.headers["x-cache"] == "MISS"
    assert fake_upstream.calls(RESPONSES_PATH) == 3


def test_store_false_requests_are_matched_semantically_with_the_sdk(
    fake_upstream: FakeUpstream,
) -> None:
    with (
        ProxyProcess(fake_upstream.url, env={"SEMCACHE_EMBED_MODEL": "hash:64"}) as proxy,
        OpenAI(base_url=proxy.base_url, api_key="sk-e2e-resp-sem", max_retries=0) as sdk,
    ):
        asked = "What is the capital of France?"
        first = sdk.responses.create(model="gpt-4.1", input=asked, store=False)
        reworded = sdk.responses.with_raw_response.create(
            model="gpt-4.1", input="the capital of France is what?", store=False
        )
        assert reworded.headers["x-cache-lookup"] == "semantic"
        assert reworded.parse().output_text == first.output_text == f"response 1: {asked}"
        with sdk.responses.stream(
            model="gpt-4.1", input="is the capital of France what?", store=False
        ) as stream:
            deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        assert deltas == first.output_text
        assert fake_upstream.calls(RESPONSES_PATH) == 1
        # Stored upstream (the default): exact only, so another wording asks the upstream.
        sdk.responses.create(model="gpt-4.1", input=asked)
        kept = sdk.responses.with_raw_response.create(
            model="gpt-4.1", input="the capital of France is what?"
        )
        assert (kept.headers["x-cache"], kept.headers["x-cache-reason"]) == (
            "MISS",
            "stored-response",
        )
        assert fake_upstream.calls(RESPONSES_PATH) == 3
