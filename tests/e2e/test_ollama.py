"""Ollama's native API through ``semcache serve``, with the real ``ollama`` Python library."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess


@pytest.fixture
def sdk(proxy: ProxyProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=proxy.url) as client:
        yield client


def test_chat_is_cached_streamed_or_not(
    sdk: ollama.Client, fake_upstream: FakeUpstream, question: str
) -> None:
    messages = [{"role": "user", "content": question}]
    first = sdk.chat(model="llama3.2:1b", messages=messages, stream=False)
    again = sdk.chat(model="llama3.2:1b", messages=messages, stream=False)
    assert first.message.content == again.message.content == f"ollama chat 1: {question}"
    streamed = "".join(
        part.message.content or ""
        for part in sdk.chat(model="llama3.2:1b", messages=messages, stream=True)
    )
    assert streamed == first.message.content
    assert fake_upstream.calls("/api/chat") == 1
    other = sdk.chat(
        model="llama3.2:1b", messages=[{"role": "user", "content": question + "?"}], stream=False
    )
    assert other.message.content == f"ollama chat 2: {question}?"
    assert fake_upstream.calls("/api/chat") == 2


def test_a_streamed_generate_serves_later_plain_calls(
    sdk: ollama.Client, fake_upstream: FakeUpstream, question: str
) -> None:
    streamed = "".join(
        part.response or ""
        for part in sdk.generate(model="llama3.2:1b", prompt=question, stream=True)
    )
    plain = sdk.generate(model="llama3.2:1b", prompt=question)
    assert plain.response == streamed == f"ollama generate 1: {question}"
    assert plain.context == [1, 2, 3]
    assert plain.done_reason == "stop"
    assert fake_upstream.calls("/api/generate") == 1
    different = sdk.generate(model="llama3.2:1b", prompt=question, options={"temperature": 0})
    assert different.response == f"ollama generate 2: {question}"


def test_embed_and_legacy_embeddings_are_cached(
    sdk: ollama.Client, fake_upstream: FakeUpstream, question: str
) -> None:
    first = sdk.embed(model="nomic-embed-text", input=[question, question + " again"])
    again = sdk.embed(model="nomic-embed-text", input=[question, question + " again"])
    assert first.embeddings == again.embeddings
    assert len(first.embeddings) == 2
    assert fake_upstream.calls("/api/embed") == 1
    legacy = [sdk.embeddings(model="nomic-embed-text", prompt=question) for _ in range(2)]
    assert legacy[0].embedding == legacy[1].embedding
    assert fake_upstream.calls("/api/embeddings") == 1


def test_headers_tenants_and_other_routes(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    body = {"model": "llama3.2:1b", "prompt": question, "stream": False}
    first = httpx.post(
        f"{proxy.url}/api/generate", json=body, headers={"authorization": "Bearer a"}, timeout=30
    )
    hit = httpx.post(
        f"{proxy.url}/api/generate", json=body, headers={"authorization": "Bearer a"}, timeout=30
    )
    other = httpx.post(
        f"{proxy.url}/api/generate", json=body, headers={"authorization": "Bearer b"}, timeout=30
    )
    assert (first.headers["x-cache"], hit.headers["x-cache"], other.headers["x-cache"]) == (
        "MISS",
        "HIT",
        "MISS",
    )
    assert "x-cache-reason" not in hit.headers
    assert first.headers["x-cache-reason"] == "no-entry"
    assert fake_upstream.calls("/api/generate") == 2
    tags = httpx.get(f"{proxy.url}/api/tags", timeout=10)
    assert tags.json()["models"][0]["name"] == "fake-model:latest"
    assert (tags.headers["x-cache"], tags.headers["x-cache-reason"]) == (
        "BYPASS",
        "not-cacheable:route",
    )
    bad = httpx.post(f"{proxy.url}/api/chat", json={"model": "m", "messages": "hi"}, timeout=10)
    assert bad.status_code == 400
    assert bad.json() == {"error": "messages must be an array"}
    assert fake_upstream.calls("/api/chat") == 0


@pytest.mark.parametrize("model", ["fake-length", "fake-error-500"])
def test_cut_or_failed_results_are_not_stored(
    proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str, model: str
) -> None:
    body = {"model": model, "prompt": question, "stream": False}
    for _ in range(2):
        response = httpx.post(f"{proxy.url}/api/generate", json=body, timeout=30)
        assert response.headers["x-cache"] == "MISS"
    assert fake_upstream.calls("/api/generate") == 2


def test_ollama_chat_is_matched_semantically_in_partitions_of_its_own(
    fake_upstream: FakeUpstream,
) -> None:
    with ProxyProcess(fake_upstream.url, env={"SEMCACHE_EMBED_MODEL": "hash:64"}) as proxy:
        with ollama.Client(host=proxy.url) as sdk:
            sdk.chat(
                model="m", messages=[{"role": "user", "content": "What is the capital of France?"}]
            )
            reworded = httpx.post(
                f"{proxy.url}/api/chat",
                json={"model": "m", "stream": False,
                      "messages": [{"role": "user", "content": "the capital of France is what?"}]},
                timeout=30,
            )  # fmt: skip
        assert reworded.headers["x-cache-lookup"] == "semantic"
        assert (
            reworded.json()["message"]["content"] == "ollama chat 1: What is the capital of France?"
        )
        assert fake_upstream.calls("/api/chat") == 1
        # An empty schema in ``format`` asks for a JSON object: another partition, never a hit.
        # How long the model stays loaded changes nothing: still a hit.
        asked = {
            "model": "m",
            "stream": False,
            "messages": [{"role": "user", "content": "the capital of France is what?"}],
        }
        as_object = httpx.post(f"{proxy.url}/api/chat", json={**asked, "format": {}}, timeout=30)
        assert as_object.headers["x-cache"] == "MISS"
        kept = httpx.post(f"{proxy.url}/api/chat", json={**asked, "keep_alive": "1m"}, timeout=30)
        assert kept.headers["x-cache"] == "HIT"
        assert fake_upstream.calls("/api/chat") == 2
        # The same question through the OpenAI route never gets the Ollama-format entry.
        openai_route = httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "the capital of France is what?"}],
            },
            timeout=30,
        )
        assert openai_route.headers["x-cache"] == "MISS"
        assert openai_route.json()["object"] == "chat.completion"
