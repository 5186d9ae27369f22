"""``/dashboard``: the sign-in, its cookie, and who may read its data."""

from __future__ import annotations

import pytest
import respx

from proxy.http.dashboard import COOKIE, SESSION_SECONDS, session_value
from tests.unit.harness import FakeClock, chat_body, completion, make_proxy

pytestmark = pytest.mark.anyio

TOKEN = "dashboard-token-0123456789"


def session(clock: FakeClock, token: str = TOKEN) -> str:
    """The cookie value a sign-in now gives."""
    return session_value(token, int(clock()) + SESSION_SECONDS)


async def test_a_session_ends_on_the_servers_clock_and_cannot_be_extended(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A copied cookie stops working after SESSION_SECONDS, whatever the browser keeps; its
    expiry cannot be moved without the token; over HTTPS the cookie is Secure."""
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        signed = await p.client.post("/dashboard/login", data={"token": TOKEN})
        value = signed.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        p.client.cookies.clear()  # sent by hand below

        def with_cookie(value: str) -> dict[str, str]:
            return {"cookie": f"{COOKIE}={value}"}

        assert (
            await p.client.get("/dashboard/data", headers=with_cookie(value))
        ).status_code == 200
        clock.advance(SESSION_SECONDS - 1)
        assert (
            await p.client.get("/dashboard/data", headers=with_cookie(value))
        ).status_code == 200
        clock.advance(1)
        assert (
            await p.client.get("/dashboard/data", headers=with_cookie(value))
        ).status_code == 401
        expires, mac = value.split(".")
        moved = f"{int(expires) + SESSION_SECONDS}.{mac}"
        assert (
            await p.client.get("/dashboard/data", headers=with_cookie(moved))
        ).status_code == 401
        for junk in ("", ".", "x.y", f"{expires}", "-1.ab"):
            refused = await p.client.get("/dashboard/data", headers=with_cookie(junk))
            assert refused.status_code == 401
        secure = await p.client.post("https://semcache.test/dashboard/login", data={"token": TOKEN})
        assert "; Secure" in secure.headers["set-cookie"]


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
        assert TOKEN not in cookie  # an HMAC under the token, never the token
        assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back
        assert f"{COOKIE}={session(clock)}" in cookie
        page = await p.client.get("/dashboard", headers={"cookie": f"{COOKIE}={session(clock)}"})
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
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session(clock, 'guess')}"}
        )
        assert forged.status_code == 401
        by_cookie = await p.client.get(
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session(clock)}"}
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
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session(clock, '')}"}
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


async def test_an_empty_admin_token_signs_no_one_in(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Must NOT: with an empty admin token (refused by the settings; here forced past them),
    neither an empty sign-in, a bare ``Bearer`` nor a cookie signed with the empty key opens
    the dashboard's data."""
    made = make_proxy(upstream_mock, clock, admin_token=TOKEN)
    object.__setattr__(made.settings, "admin_token", "")
    async with made as p:
        page = await p.client.get("/dashboard", headers={"authorization": "Bearer"})
        login = await p.client.post("/dashboard/login", data={"token": ""})
        bare = await p.client.get("/dashboard/data", headers={"authorization": "Bearer "})
        forged = await p.client.get(
            "/dashboard/data", headers={"cookie": f"{COOKIE}={session(clock, '')}"}
        )
    assert page.status_code == 403
    assert login.status_code == 403
    assert "set-cookie" not in login.headers
    assert bare.status_code == 401
    assert forged.status_code == 401


@pytest.mark.parametrize(
    "forwarded",
    [{"x-forwarded-proto": "https"}, {"forwarded": 'for=192.0.2.1;proto="https";host=a.test'}],
)
async def test_behind_a_proxy_that_ends_tls_the_session_cookie_is_secure(
    upstream_mock: respx.MockRouter, clock: FakeClock, forwarded: dict[str, str]
) -> None:
    """semcache serves plain HTTP only (no TLS option, and uvicorn's forwarded headers are off),
    so a dashboard over HTTPS is always behind a proxy that ends TLS: the sign-in's cookie must
    be Secure there, or the browser hands the session to any plain-HTTP request to the host.
    A client can only make its own cookie stricter by sending the header, never looser."""
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        behind = await p.client.post("/dashboard/login", data={"token": TOKEN}, headers=forwarded)
        plain = await p.client.post(
            "/dashboard/login", data={"token": TOKEN}, headers={"x-forwarded-proto": "http"}
        )
    assert "; Secure" in behind.headers["set-cookie"]
    assert "Secure" not in plain.headers["set-cookie"]


async def test_the_session_cookie_is_never_sent_upstream(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """The session cookie is scoped to /dashboard: a browser signed in sends it with no
    /v1/* or /api/* request, which semcache forwards with its headers to the upstream (a
    third party holding a 12 h admin session). Signing out clears the cookie a release that
    scoped it to / gave as well."""
    models = upstream_mock.get("/models").respond(200, json={"data": []})
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        signed = await p.client.post("/dashboard/login", data={"token": TOKEN})
        assert "; Path=/dashboard;" in signed.headers["set-cookie"]
        assert (await p.client.get("/dashboard/data")).status_code == 200  # the jar sends it
        await p.client.get("/v1/models", headers={"authorization": "Bearer sk-test-a"})
        out = await p.client.post("/dashboard/logout")
    sent = models.calls.last.request.headers.get("cookie", "")
    assert COOKIE not in sent
    cleared = out.headers.get_list("set-cookie")
    assert any("Path=/dashboard;" in c and "Max-Age=0" in c for c in cleared)
    assert any("Path=/;" in c and "Max-Age=0" in c for c in cleared)
