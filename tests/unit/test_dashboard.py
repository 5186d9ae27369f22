"""``/dashboard``: the sign-in, its cookie, and who may read its data."""

from __future__ import annotations

import pytest
import respx

from proxy.http.dashboard import COOKIE, session_value
from tests.unit.harness import FakeClock, chat_body, completion, make_proxy

pytestmark = pytest.mark.anyio

TOKEN = "dashboard-token-0123456789"


async def test_the_page_asks_for_the_token_then_sets_a_session_cookie(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        first = await p.client.get("/dashboard")
        assert first.status_code == 200
        assert 'name="token"' in first.text
        assert "default-src 'self'" in first.headers["content-security-policy"]
        refused = await p.client.post("/dashboard/login", data={"token": "nope"})
        assert refused.status_code == 401
        assert COOKIE not in refused.headers.get("set-cookie", "")
        signed = await p.client.post("/dashboard/login", data={"token": TOKEN})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie  # an HMAC of the token, never the token
        assert f"{COOKIE}={session_value(TOKEN)}" in cookie
        page = await p.client.get(
            "/dashboard", headers={"cookie": f"{COOKIE}={session_value(TOKEN)}"}
        )
        assert 'id="chart-requests"' in page.text


async def test_data_needs_the_session_or_the_token(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.post("/chat/completions").respond(200, json=completion("Paris"))
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        await p.chat(chat_body())
        await p.chat(chat_body())
        assert (await p.client.get("/dashboard/data")).status_code == 401
        forged = await p.client.get(
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session_value('guess')}"}
        )
        assert forged.status_code == 401
        by_cookie = await p.client.get(
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session_value(TOKEN)}"}
        )
        by_token = await p.client.get(
            "/dashboard/data", headers={"authorization": f"Bearer {TOKEN}"}
        )
    assert by_cookie.status_code == by_token.status_code == 200
    data = by_cookie.json()
    assert data["stats"]["hits"] == 1
    assert data["now"]["hits"] == 1
    assert data["now"]["hit_count"] == 1  # the hit's time to its head was measured
    assert data["models"]["gpt-test"]["hits"] == 1
    [top] = data["top_entries"]
    assert top["hits"] == 1


async def test_without_an_admin_token_the_dashboard_is_off(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(upstream_mock, clock) as p:
        page = await p.client.get("/dashboard")
        login = await p.client.post("/dashboard/login", data={"token": ""})
        data = await p.client.get(
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session_value('')}"}
        )
    assert page.status_code == 403
    assert "SEMCACHE_ADMIN_TOKEN" in page.text
    assert login.status_code == 403
    assert data.status_code == 401


@pytest.mark.parametrize("name", ["../dashboard.py", "dashboard.html", "nothing.js"])
async def test_only_the_pages_own_files_are_served(
    upstream_mock: respx.MockRouter, clock: FakeClock, name: str
) -> None:
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        response = await p.client.get(f"/dashboard/static/{name}")
    assert response.status_code == 404
