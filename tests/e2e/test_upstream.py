"""The upstream connection of a real ``semcache serve``: through a forward proxy named by the
environment (and around it by ``NO_PROXY``), to a TLS upstream whose CA is given by
``SSL_CERT_FILE``, and to an Azure-style base URL. Upstream calls are counted each time.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import trustme

from tests.support.fake_upstream import FakeUpstream
from tests.support.forward_proxy import ForwardProxy
from tests.support.load import chat_body
from tests.support.proxy_process import ProxyProcess

# Nothing from the test runner's environment decides the route: every variable is set.
_PROXY_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
DIRECT = {
    **{name: "" for name in _PROXY_NAMES},
    **{name.upper(): "" for name in _PROXY_NAMES},
    "SSL_CERT_FILE": "",
    "SSL_CERT_DIR": "",
}


def proxy_env(**names: str) -> dict[str, str]:
    """``DIRECT`` with these variables set, under both spellings."""
    env = dict(DIRECT)
    for name, value in names.items():
        env[name.lower()] = env[name.upper()] = value
    return env


def ask(proxy: ProxyProcess, prompt: str) -> httpx.Response:
    return httpx.post(
        proxy.base_url + "/chat/completions",
        content=chat_body(prompt),
        headers={"content-type": "application/json"},
        timeout=15,
    )


def asked_twice(proxy: ProxyProcess) -> tuple[httpx.Response, httpx.Response]:
    prompt = f"Which way does the request go? ({uuid.uuid4().hex[:8]})"
    return ask(proxy, prompt), ask(proxy, prompt)


def assert_miss_then_hit(first: httpx.Response, second: httpx.Response) -> None:
    assert (first.status_code, second.status_code) == (200, 200), first.text
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.json()["choices"] == second.json()["choices"]


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as proxy:
        yield proxy


def test_the_upstream_is_reached_through_the_environment_proxy(
    fake_upstream: FakeUpstream, forward_proxy: ForwardProxy
) -> None:
    env = proxy_env(http_proxy=forward_proxy.url)
    with ProxyProcess(fake_upstream.url, env=env) as proxy:
        assert_miss_then_hit(*asked_twice(proxy))
    assert fake_upstream.calls() == 1
    assert forward_proxy.seen == [("POST", fake_upstream.url + "/chat/completions")]


def test_proxy_credentials_in_the_url_are_sent_to_the_proxy(
    fake_upstream: FakeUpstream, forward_proxy: ForwardProxy
) -> None:
    with_user = forward_proxy.url.replace("http://", "http://semcache:s%40cret@")
    with ProxyProcess(fake_upstream.url, env=proxy_env(http_proxy=with_user)) as proxy:
        assert ask(proxy, f"Who asks? ({uuid.uuid4().hex[:8]})").status_code == 200
    assert fake_upstream.calls() == 1
    assert forward_proxy.credentials == [b"Basic " + base64.b64encode(b"semcache:s@cret")]


def test_no_proxy_bypasses_the_environment_proxy(
    fake_upstream: FakeUpstream, forward_proxy: ForwardProxy
) -> None:
    env = proxy_env(http_proxy=forward_proxy.url, all_proxy=forward_proxy.url, no_proxy="127.0.0.1")
    with ProxyProcess(fake_upstream.url, env=env) as proxy:
        assert_miss_then_hit(*asked_twice(proxy))
    assert fake_upstream.calls() == 1
    assert forward_proxy.seen == []


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeUpstream, Path]]:
    """A fake upstream serving HTTPS with a certificate from a test CA, and that CA's file."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_file, server_pem = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    with FakeUpstream(tls_certfile=str(server_pem)) as upstream:
        yield upstream, ca_file


def test_a_tls_upstream_trusted_through_ssl_cert_file(tls: tuple[FakeUpstream, Path]) -> None:
    upstream, ca_file = tls
    upstream.reset()
    assert upstream.url.startswith("https://")
    env = {**DIRECT, "SSL_CERT_FILE": str(ca_file)}
    with ProxyProcess(upstream.url, env=env) as proxy:
        assert_miss_then_hit(*asked_twice(proxy))
    assert upstream.calls() == 1


def test_an_untrusted_tls_upstream_is_a_clear_502(tls: tuple[FakeUpstream, Path]) -> None:
    upstream, _ = tls
    upstream.reset()
    with ProxyProcess(upstream.url, env=DIRECT) as proxy:
        first, second = asked_twice(proxy)
    for answer in (first, second):  # nothing was stored: both went to the upstream and failed
        assert answer.status_code == 502
        error = orjson.loads(answer.content)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "upstream_unreachable"
        assert "certificate" in error["message"].lower()
    assert upstream.calls() == 0  # the handshake failed: no request reached it


def test_a_tls_upstream_through_a_proxy_tunnel(
    tls: tuple[FakeUpstream, Path], forward_proxy: ForwardProxy
) -> None:
    upstream, ca_file = tls
    upstream.reset()
    env = {**proxy_env(https_proxy=forward_proxy.url), "SSL_CERT_FILE": str(ca_file)}
    with ProxyProcess(upstream.url, env=env) as proxy:
        assert_miss_then_hit(*asked_twice(proxy))
    assert upstream.calls() == 1
    assert forward_proxy.seen == [("CONNECT", f"127.0.0.1:{upstream.port}")]


def test_an_azure_style_base_url_keeps_its_query(fake_upstream: FakeUpstream) -> None:
    base = fake_upstream.url.removesuffix("/v1") + "/openai/deployments/gpt?api-version=2024-10-21"
    with ProxyProcess(base, env=DIRECT) as proxy:
        answer = ask(proxy, f"Azure? ({uuid.uuid4().hex[:8]})")
    assert answer.status_code == 404  # the fake upstream knows no such route: relayed as is
    [request] = fake_upstream.requests
    assert (request.method, request.path, request.query) == (
        "POST", "/openai/deployments/gpt/chat/completions", "api-version=2024-10-21",
    )  # fmt: skip
