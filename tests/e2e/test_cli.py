"""The real ``semcache serve`` and ``semcache probe``: health checks, start-up and debug lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.fake_upstream import FakeUpstream
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess

SEMCACHE = str(Path(sys.executable).parent / "semcache")


def _probe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEMCACHE, "probe", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_probe_follows_the_port_serve_was_given(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    address = tmp_path / "semcache.address"
    env = {"SEMCACHE_ADDRESS_FILE": str(address), "PATH": "/usr/bin:/bin"}
    # The port comes from a flag, not from SEMCACHE_PORT: the probe still finds it.
    with ProxyProcess(fake_upstream.url, env=env) as proxy:
        assert address.read_text().strip() == proxy.url
        assert _probe(env=env).returncode == 0
        assert _probe("--through", env=env).returncode == 0
        assert fake_upstream.calls("/v1/models") == 1
    # Stopped: the same probe fails.
    failed = _probe(env=env)
    assert failed.returncode == 1
    assert proxy.url in failed.stderr


def test_probe_through_fails_when_the_upstream_is_down(tmp_path: Path) -> None:
    dead_upstream = f"http://127.0.0.1:{free_port()}/v1"
    with ProxyProcess(dead_upstream) as proxy:
        env = {"PATH": "/usr/bin:/bin"}
        assert _probe("--url", proxy.url, env=env).returncode == 0  # semcache itself is up
        through = _probe("--url", proxy.url, "--through", env=env)
        assert through.returncode == 1
        assert "/v1/models answered 502" in through.stderr
        ready = _probe("--url", proxy.url, "--ready", env=env)
        assert ready.returncode == 1
        assert "/readyz answered 503" in ready.stderr


def test_probe_ready_asks_the_upstream_once_per_interval(fake_upstream: FakeUpstream) -> None:
    with ProxyProcess(fake_upstream.url) as proxy:
        env = {"PATH": "/usr/bin:/bin"}
        for _ in range(3):
            assert _probe("--url", proxy.url, "--ready", env=env).returncode == 0
        body = httpx.get(f"{proxy.url}/readyz", timeout=10).json()
    assert body["status"] == "ready"
    assert body["upstream"]["status"] == "ok"
    # Four readiness checks within the probe's interval: one GET /models upstream.
    assert fake_upstream.calls("/v1/models") == 1


def test_start_up_line_says_whether_semantic_matching_is_on(fake_upstream: FakeUpstream) -> None:
    with ProxyProcess(fake_upstream.url) as proxy:
        log = proxy.stderr_text()
    assert "semantic matching off: SEMCACHE_EMBED_MODEL is unset (exact caching only)" in log
    with ProxyProcess(fake_upstream.url, extra_args=["--embed-model", "hash:64"]) as proxy:
        log = proxy.stderr_text()
    assert "semantic matching on: embedder hash:64, verifier cosine" in log


def test_debug_logs_one_line_per_request_without_the_key(
    fake_upstream: FakeUpstream, question: str
) -> None:
    secret = "sk-never-logged-1234"
    with ProxyProcess(fake_upstream.url, extra_args=["--log-level", "debug"]) as proxy:
        body = {"model": "fake", "messages": [{"role": "user", "content": question}]}
        headers = {"authorization": f"Bearer {secret}"}
        for _ in range(2):
            response = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers)
            assert response.status_code == 200
        proxy.stop()  # the line is written once the answer is out: read the log when it is whole
        log = proxy.stderr_text()
    lines = [line for line in log.splitlines() if "semcache.requests" in line]
    chat = [line for line in lines if "POST /v1/chat/completions 200" in line]
    assert len(chat) == 2
    assert " MISS " in chat[0]
    assert " HIT (exact) " in chat[1]
    assert secret not in log
    assert question not in log
