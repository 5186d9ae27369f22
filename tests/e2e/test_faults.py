"""Failures around the proxy degrade to "no cache", never to a failed request."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.support.fake_upstream import FakeUpstream
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer


def ask(sdk: OpenAI, text: str) -> str:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": text}]
    )
    return raw.headers["x-cache"]


def test_redis_stopped_mid_test_requests_still_succeed_and_caching_resumes(
    redis_server: RedisServer, redis_url: str, fake_upstream: FakeUpstream
) -> None:
    with (
        ProxyProcess(fake_upstream.url, redis_url=redis_url) as proxy,
        OpenAI(base_url=proxy.base_url, api_key="sk-fault", max_retries=0) as sdk,
    ):
        assert [ask(sdk, "q1"), ask(sdk, "q1")] == ["MISS", "HIT"]
        redis_server.stop()
        assert [ask(sdk, "q1"), ask(sdk, "q2"), ask(sdk, "q2")] == ["MISS", "MISS", "MISS"]
        health = httpx.get(proxy.url + "/healthz").json()
        assert health["status"] == "degraded"
        assert health["store"] == "unreachable"
        assert health["store_errors_last_minute"] >= 3
        assert httpx.get(proxy.url + "/cache/stats").json()["store_errors"]
        redis_server.start()
        # The store retries a second after its last failure; poll, don't sleep blindly.
        deadline = time.monotonic() + 10
        while ask(sdk, "q3") != "HIT" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ask(sdk, "q3") == "HIT"
    assert fake_upstream.calls() >= 6


def test_unreachable_upstream_is_a_502() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with (
        ProxyProcess(dead) as proxy,
        OpenAI(base_url=proxy.base_url, api_key="sk", max_retries=0) as sdk,
        pytest.raises(openai.APIStatusError) as failed,
    ):
        ask(sdk, "anyone there?")
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "upstream_unreachable"  # type: ignore[index]


def test_bad_setting_fails_at_startup_with_one_line(fake_upstream: FakeUpstream) -> None:
    proxy = ProxyProcess(fake_upstream.url, env={"SEMCACHE_TTL": "soon"})
    with pytest.raises(RuntimeError) as failed:
        proxy.start()
    assert "SEMCACHE_TTL='soon' is not a valid int" in str(failed.value)
    proxy.close()
