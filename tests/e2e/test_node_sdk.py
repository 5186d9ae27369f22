"""The openai Node SDK (npm ``openai``, pinned in tests/node) through ``semcache serve``, on both
stores: chat, streams with and without usage, tools, embeddings and a bad request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess

NODE_DIR = Path(__file__).parents[1] / "node"


@pytest.fixture(scope="session")
def node() -> str:
    """``node`` with the SDK installed from the lock file (``npm ci`` when it is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have node and npm for the openai Node SDK test")
        pytest.skip("node and npm are not installed")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return node


def test_the_node_sdk_works_through_the_proxy(
    node: str, proxy: ProxyProcess, fake_upstream: FakeUpstream
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OPENAI_BASE_URL": proxy.base_url,
        "OPENAI_API_KEY": "sk-node-test",
        "SEMCACHE_TEST_TAG": uuid.uuid4().hex[:8],
    }
    done = subprocess.run(
        [node, "sdk.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)

    miss, hit = report["plain"]
    assert (miss["cache"], hit["cache"], hit["lookup"]) == ("MISS", "HIT", "exact")
    assert hit["content"] == miss["content"]
    assert miss["content"].startswith("answer ")
    assert hit["usage"] == miss["usage"]
    assert hit["usage"]["total_tokens"] > 0

    streamed = report["streamWithUsage"]
    assert streamed["cache"] == "HIT"
    assert streamed["content"] == miss["content"]
    assert streamed["usage"] == miss["usage"]
    assert streamed["chunks"] > 2

    fresh = report["streamWithoutUsage"]
    assert fresh["cache"] == "MISS"
    assert fresh["usage"] is None  # not asked for: not given
    after = report["plainAfterStream"]
    assert after["cache"] == "HIT"
    assert after["content"] == fresh["content"]
    assert after["usage"]["total_tokens"] > 0  # the entry knows its usage all the same

    tool_miss, tool_hit = report["tools"]
    assert tool_hit["cache"] == "HIT"
    assert tool_hit["toolCalls"] == tool_miss["toolCalls"]
    assert tool_hit["toolCalls"][0]["function"]["name"] == "get_weather"

    embed_miss, embed_hit = report["embeddings"]
    assert (embed_miss["cache"], embed_hit["cache"]) == ("MISS", "HIT")
    assert embed_hit["dims"] == embed_miss["dims"] == [8, 8]
    assert embed_hit["first"] == embed_miss["first"]

    bad = report["badRequest"]
    assert bad["status"] == 400
    assert bad["name"] == "BadRequestError"
    assert "messages" in bad["message"]

    assert fake_upstream.calls() == 3  # one per distinct question: every repeat was a hit
    assert fake_upstream.calls("/v1/embeddings") == 1
