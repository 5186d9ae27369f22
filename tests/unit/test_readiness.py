"""``GET /readyz``: ready while the upstream answers its (rate-limited) probe."""

from __future__ import annotations

import httpx
import pytest
import respx

from proxy.http import readiness
from proxy.semantic.embedders import HashEmbedder
from tests.unit.harness import FakeClock, make_proxy

pytestmark = pytest.mark.anyio


async def test_ready_when_the_upstream_answers(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.get("/models").respond(200, json={"object": "list", "data": []})
    async with make_proxy(upstream_mock, clock) as p:
        first = await p.client.get("/readyz")
        second = await p.client.get("/readyz")
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert body["status"] == "ready"
    assert body["upstream"]["status"] == "ok"
    assert body["store"] == "ok"
    assert route.call_count == 1  # the second check used the first probe's verdict


async def test_a_401_without_an_own_key_still_means_the_upstream_is_there(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.get("/models").respond(401, json={"error": {"message": "no key"}})
    async with make_proxy(upstream_mock, clock) as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["upstream"]["status"] == "ok"


async def test_semcaches_own_key_refused_is_unready(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.get("/models").respond(401, json={"error": {"message": "bad key"}})
    async with make_proxy(upstream_mock, clock, upstream_api_key="sk-upstream") as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["upstream"]["status"] == "unauthorized"
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-upstream"


@pytest.mark.parametrize(
    ("mock", "expected"),
    [
        (httpx.Response(503, text="down"), "error"),
        (httpx.ConnectError("refused"), "unreachable"),
    ],
    ids=["5xx", "refused"],
)
async def test_an_upstream_that_does_not_answer_is_unready(
    upstream_mock: respx.MockRouter,
    clock: FakeClock,
    mock: httpx.Response | Exception,
    expected: str,
) -> None:
    upstream_mock.get("/models").mock(side_effect=[mock])
    async with make_proxy(upstream_mock, clock) as p:
        response = await p.client.get("/readyz")
        health = await p.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unready"
    assert response.json()["upstream"]["status"] == expected
    assert health.status_code == 200  # alive all the same: liveness is not readiness


async def test_the_probe_is_repeated_once_its_verdict_is_old(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.get("/models").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json={"data": []})]
    )
    async with make_proxy(upstream_mock, clock) as p:
        down = await p.client.get("/readyz")
        clock.advance(readiness.PROBE_SECONDS / 2)
        still = await p.client.get("/readyz")
        clock.advance(readiness.PROBE_SECONDS)
        back = await p.client.get("/readyz")
    assert [down.status_code, still.status_code, back.status_code] == [503, 503, 200]
    assert route.call_count == 2


async def test_semantic_matching_wanted_but_off_is_degraded_not_unready(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.get("/models").respond(200, json={"data": []})

    class Dead(HashEmbedder):
        async def start(self) -> None:
            from proxy.semantic.embedders import EmbedderError

            raise EmbedderError("cannot load")

    async with make_proxy(upstream_mock, clock, embedder=Dead(8), embed_model="hash:8") as p:
        response = await p.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["semantic"] == "off"
