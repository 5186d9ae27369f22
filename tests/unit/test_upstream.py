"""Which transport the upstream gets: semcache's own, or httpx's when a proxy is configured."""

from __future__ import annotations

import httpx
import pytest

from proxy.http1 import Http1Transport
from proxy.settings import Settings
from proxy.upstream import default_transport

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def settings(url: str = "https://api.example.test/v1") -> Settings:
    return Settings(upstream_url=url)


def test_semcache_transport_without_a_proxy() -> None:
    assert isinstance(default_transport(settings()), Http1Transport)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "ALL_PROXY", "https_proxy"])
def test_httpx_transport_through_an_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://proxy.example.test:3128")
    assert isinstance(default_transport(settings()), httpx.AsyncHTTPTransport)


def test_a_proxy_for_the_other_scheme_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    assert isinstance(default_transport(settings()), Http1Transport)
    assert isinstance(
        default_transport(settings("http://api.example.test/v1")), httpx.AsyncHTTPTransport
    )


def test_no_proxy_exempts_the_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,api.example.test")
    assert isinstance(default_transport(settings()), Http1Transport)
