"""Screenshot of the dashboard with traffic on it, for the README (``docs/dashboard.png``).

    .venv/bin/python bench/dashboard_screenshot.py [--seconds 60] [--out docs/dashboard.png]

Starts the fake upstream (20 ms per answer) and ``semcache serve`` (memory store, the hash
embedder), sends a mix of repeated, reworded and new questions for ``--seconds`` (the charts
sample every 5 s), then signs in to ``/dashboard`` in Debian's headless Chromium through
Playwright and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.test_dashboard import CHROMIUM, FLAGS  # noqa: E402
from tests.support.fake_upstream import FakeUpstream  # noqa: E402
from tests.support.proxy_process import ProxyProcess  # noqa: E402

TOKEN = "screenshot-token-0123456789"
QUESTIONS = [
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "What is the boiling point of water at sea level?",
    "How many bytes are in a kilobyte?",
    "Who wrote Pride and Prejudice?",
]
MODELS = ["gpt-4o-mini", "gpt-4.1-mini"]


def traffic(proxy: ProxyProcess, seconds: float) -> None:
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        while time.monotonic() < deadline:
            question = rng.choice(QUESTIONS)
            kind = rng.random()
            if kind < 0.25:  # the same words reordered: a semantic hit for the hash embedder
                words = question.rstrip("?").split()
                rng.shuffle(words)
                question = " ".join(words) + "?"
            elif kind < 0.45:
                question = f"{question} (case {rng.randrange(10_000)})"
            client.post(
                "/v1/chat/completions",
                json={
                    "model": rng.choice(MODELS),
                    "messages": [{"role": "user", "content": question}],
                },
                headers={"authorization": f"Bearer sk-team-{rng.randrange(2)}"},
            )
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("bench/dashboard_screenshot.py: needs chromium on PATH (apt install chromium)")
    env = {"SEMCACHE_ADMIN_TOKEN": TOKEN, "SEMCACHE_EMBED_MODEL": "hash:64"}
    with (
        FakeUpstream(latency_seconds=0.02) as upstream,
        ProxyProcess(upstream.url, env=env) as proxy,
    ):
        traffic(proxy, args.seconds)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{proxy.url}/dashboard")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("#chart-latency .uplot")).to_be_visible()
            page.wait_for_timeout(2500)  # one poll after the charts exist
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
