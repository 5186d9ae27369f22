"""Legacy text completions through ``semcache serve`` with the real openai SDK."""

from __future__ import annotations

from openai import OpenAI

from tests.support.fake_upstream import COMPLETIONS_PATH, FakeUpstream
from tests.support.proxy_process import ProxyProcess


def test_completions_create_is_cached_streamed_or_not(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    sdk = OpenAI(base_url=proxy.base_url, api_key="sk-e2e-cmpl", max_retries=0)
    first = sdk.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt=question, max_tokens=20
    )
    again = sdk.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt=question, max_tokens=20
    )
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    text = first.parse().choices[0].text
    assert text == again.parse().choices[0].text == f" completion 1: {question}"

    stream = sdk.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=question, max_tokens=20, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream if chunk.choices) == text
    other = sdk.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=question + "!", max_tokens=20
    )
    assert other.choices[0].text == f" completion 2: {question}!"
    assert fake_upstream.calls(COMPLETIONS_PATH) == 2


def test_a_streamed_miss_serves_a_plain_hit(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    sdk = OpenAI(base_url=proxy.base_url, api_key="sk-e2e-cmpl-2", max_retries=0)
    streamed = "".join(
        chunk.choices[0].text
        for chunk in sdk.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=question, stream=True,
            stream_options={"include_usage": True},
        )
        if chunk.choices
    )  # fmt: skip
    plain = sdk.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt=question
    )
    assert plain.headers["x-cache"] == "HIT"
    assert plain.parse().choices[0].text == streamed
    assert plain.parse().usage is not None
    assert fake_upstream.calls(COMPLETIONS_PATH) == 1
