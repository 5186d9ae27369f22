"""Ollama's native routes coalesce concurrent identical misses, as the other cached routes do."""

from __future__ import annotations

import anyio
import httpx
import pytest
import respx

from tests.unit.harness import FakeClock, Held, make_proxy

pytestmark = pytest.mark.anyio

RESULT = {"model": "m", "created_at": "t", "response": "Once upon a time", "done": True,
          "done_reason": "stop", "eval_count": 4, "prompt_eval_count": 3}  # fmt: skip


async def test_concurrent_identical_generates_make_one_upstream_call(clock: FakeClock) -> None:
    slow = Held(RESULT)
    with respx.mock(assert_all_called=False) as router:
        route = router.post("http://upstream.test/api/generate").mock(side_effect=slow)
        async with make_proxy(router, clock) as p:
            results: list[httpx.Response] = []

            async def ask() -> None:
                body = {"model": "m", "prompt": "Tell me a story", "stream": False}
                results.append(await p.client.post("/api/generate", json=body))

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(ask)
                await anyio.wait_all_tasks_blocked()
                slow.release.set()
    assert route.call_count == 1
    assert sorted(r.headers["x-cache"] for r in results) == ["HIT", "HIT", "HIT", "MISS"]
    assert all(r.json()["response"] == "Once upon a time" for r in results)
