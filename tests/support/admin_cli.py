"""The ``semcache`` admin commands run as a user would, and a chat request, for e2e tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.proxy_process import ProxyProcess

SEMCACHE = str(Path(sys.executable).parent / "semcache")
TOKEN = "admin-token-for-the-cli-tests"


def cli(
    *args: str, stdin: bytes | None = None, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # the checkout under test, not the one installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if token is not None:
        env["SEMCACHE_ADMIN_TOKEN"] = token
    return subprocess.run(
        [SEMCACHE, *args],
        input=None if stdin is None else stdin.decode(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def chat(proxy: ProxyProcess, text: str, key: str) -> httpx.Response:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
    return httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
