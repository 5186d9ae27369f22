"""The dashboard in a real headless Chromium (Debian's), driven by Playwright: it signs in,
loads without console errors, and shows live numbers that change as requests are sent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess

playwright_api = pytest.importorskip("playwright.sync_api")

TOKEN = "dashboard-token-0123456789"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags Chromium needs as root in a sandbox with no network (see the machine notes).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on PATH")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def proxy(fake_upstream: FakeUpstream) -> Iterator[ProxyProcess]:
    env = {"SEMCACHE_ADMIN_TOKEN": TOKEN, "SEMCACHE_EMBED_MODEL": "hash:64"}
    with ProxyProcess(fake_upstream.url, env=env) as running:
        yield running


def chat(proxy: ProxyProcess, text: str) -> str:
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": "Bearer sk-dashboard"},
        timeout=30,
    )
    assert response.status_code == 200
    return response.headers["x-cache"]


def test_sign_in_and_watch_the_numbers_move(
    browser: object, proxy: ProxyProcess, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{proxy.url}/dashboard")
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    assert page.locator(".error").is_visible()
    problems.clear()  # the refused sign-in's 401 is the browser's own console line

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#chart-requests .uplot")
    assert TOKEN not in page.url
    assert page.text_content("#requests") == "0"

    assert chat(proxy, "What is the capital of France?") == "MISS"
    assert chat(proxy, "What is the capital of France?") == "HIT"
    assert chat(proxy, "the capital of France is what?") == "HIT"
    assert fake_upstream.calls("/v1/chat/completions") == 1

    # (No wait_for_function: the page's CSP forbids evaluating strings, as it should.)
    playwright_api.expect(page.locator("#requests")).to_have_text("3", timeout=10_000)
    assert page.text_content("#hit-rate") == "66.7 %"
    assert "exact 1 · semantic 1" in (page.text_content("#hit-split") or "")
    assert page.text_content("#tokens-saved") != "0"
    assert (page.text_content("#money-saved") or "").startswith("$")
    assert page.locator("#models tbody tr").count() == 1
    assert "gpt-4o-mini" in (page.text_content("#models") or "")
    assert "no-entry" in (page.text_content("#miss-reasons") or "")
    assert page.locator("#top-entries tbody tr").count() == 1
    # The semantic hit's model group: served at the calibrated line, too few comparisons for
    # an estimate yet (the same figures as /cache/stats "groups").
    assert page.locator("#groups tbody tr").count() == 1
    cells = page.locator("#groups tbody td").all_text_contents()
    dash = "\u2013"
    assert cells == [
        "cosine@0.95[hash:64]|gpt-4o-mini",
        "calibrated",
        "2",
        "0",
        "0",
        "too little evidence",
        dash,
    ]
    # Audits earn a credit of SEMCACHE_AUDIT_RATE (0.01) per hit: none after two hits.
    assert page.locator("#audits tbody td").all_text_contents() == ["none yet", ""]
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert problems == []

    cookies = page.context.cookies()
    [session] = [c for c in cookies if c["name"] == "semcache_dashboard"]
    assert session["httpOnly"] is True
    assert session["path"] == "/dashboard"  # never sent with a request semcache forwards
    assert session["value"] != TOKEN

    page.click("text=Sign out")
    page.wait_for_selector("#token")
    assert httpx.get(f"{proxy.url}/dashboard/data", timeout=10).status_code == 401
