"""`semcache serve` with the in-process MiniLM embedder, driven by the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess


@pytest.fixture(scope="module")
def semantic_proxy(fake_upstream_server: FakeUpstream) -> Iterator[ProxyProcess]:
    env = {"SEMCACHE_EMBED_MODEL": "local:all-MiniLM-L6-v2", "HF_HUB_OFFLINE": "1"}
    with ProxyProcess(fake_upstream_server.url, env=env, ready_timeout=60) as proxy:
        yield proxy


def ask(sdk: OpenAI, text: str) -> tuple[str, str, str]:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": text}]
    )
    content = raw.parse().choices[0].message.content or ""
    return raw.headers["x-cache"], raw.headers.get("x-cache-lookup", ""), content


def test_paraphrase_hits_and_look_alike_misses(
    semantic_proxy: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    with OpenAI(base_url=semantic_proxy.base_url, api_key="sk-sem", max_retries=0) as sdk:
        first = ask(sdk, "What is the best way to learn Python?")
        paraphrase = ask(sdk, "What's the best way to learn Python?")
        look_alike = ask(sdk, "What is the best way to learn Java?")
        other_tenant = OpenAI(base_url=semantic_proxy.base_url, api_key="sk-other", max_retries=0)
        with other_tenant:
            foreign = ask(other_tenant, "What's the best way to learn Python?")
    assert first[0] == "MISS"
    assert paraphrase == ("HIT", "semantic", first[2])
    assert look_alike[:2] == ("MISS", "")
    assert foreign[0] == "MISS"
    assert fake_upstream.calls() == 3


def test_semantic_hit_streams(semantic_proxy: ProxyProcess, fake_upstream: FakeUpstream) -> None:
    with OpenAI(base_url=semantic_proxy.base_url, api_key="sk-sem-2", max_retries=0) as sdk:
        ask(sdk, "What is the capital of France?")
        stream = sdk.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "What's the capital of France?"}],
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "answer 1: What is the capital of France?"
    assert fake_upstream.calls() == 1
