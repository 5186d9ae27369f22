"""``/dashboard``: the cache at a glance, live, behind the admin token.

The token is typed once into a login form; the browser then holds a session cookie (HttpOnly,
SameSite=Strict, ``Path=/dashboard``; Secure when the page came over HTTPS, which behind a proxy
that ends TLS is what its ``X-Forwarded-Proto`` or ``Forwarded`` says) whose value is its expiry
and an HMAC of it under the token, never the token itself, so the token is never in a URL, a log
or the page's script, and a copied cookie stops working after ``SESSION_SECONDS`` (12 h), on the
server's clock, whatever the browser does with it. Changing the token ends every session. The
path keeps the cookie off every other route: semcache forwards a ``/v1/*`` or ``/api/*``
request's headers, cookies included, to the upstream.

The page is static HTML, script and a charting library (uPlot, MIT, vendored in ``static/``): no
build step, nothing fetched from the internet. It polls ``/dashboard/data`` every two seconds.
"""

from __future__ import annotations

import hashlib
import hmac
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy.cache.answers import JSON, raw_response
from proxy.http.handlers import header_fields, read_body, services
from proxy.http.history import History
from proxy.semantic import report

COOKIE = "semcache_dashboard"
COOKIE_PATH = "/dashboard"
"""Where the browser sends the session: the page, its data, sign-in and sign-out; never a
route whose headers go on to the upstream."""
SESSION_SECONDS = 12 * 3600
TOP_ENTRIES = 10
STATIC = {
    "dashboard.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
    "uPlot.iife.min.js": b"text/javascript; charset=utf-8",
    "uPlot.min.css": b"text/css; charset=utf-8",
}
HTML = (b"content-type", b"text/html; charset=utf-8")
# The pages run only their own files: no inline script, nothing from elsewhere.
SECURITY = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def session_value(token: str, expires: int) -> str:
    """The cookie's value for a session that ends at ``expires`` (Unix seconds)."""
    mac = hmac.new(token.encode(), b"semcache dashboard session %d" % expires, hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


def _valid_session(value: str, token: str, now: float) -> bool:
    expires, _, _ = value.partition(".")
    if not (expires.isascii() and expires.isdigit()) or int(expires) <= now:
        return False
    return hmac.compare_digest(value.encode(), session_value(token, int(expires)).encode())


def signed_in(request: Request) -> bool:
    token = services(request).settings.admin_token
    if not token:  # unset, or empty: an empty token signs no one in
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    given = value.strip()
    if scheme.lower() == "bearer" and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return _valid_session(cookie, token, services(request).cache.clock())


async def page(request: Request) -> Response:
    if not services(request).settings.admin_token:
        return _page("off.html", 403)
    return _page("dashboard.html" if signed_in(request) else "login.html", 200)


async def login(request: Request) -> Response:
    svc = services(request)
    token = svc.settings.admin_token
    if not token:
        return _page("off.html", 403)
    raw = await read_body(request, 4096, header_fields(request.scope))
    given = parse_qs(raw.decode("latin-1")).get("token", [""])[0]
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return _page("login.html", 401, error=True)
    expires = int(svc.cache.clock()) + SESSION_SECONDS
    secure = "; Secure" if _over_https(request) else ""
    cookie = (
        f"{COOKIE}={session_value(token, expires)}; Max-Age={SESSION_SECONDS}; "
        f"Path={COOKIE_PATH}; HttpOnly; SameSite=Strict{secure}"
    )
    headers = [(b"location", b"/dashboard"), (b"set-cookie", cookie.encode()), *SECURITY]
    return raw_response(b"", 303, headers)


def _over_https(request: Request) -> bool:
    """Whether the browser reached the page over HTTPS: semcache itself serves plain HTTP, so
    over HTTPS means behind a proxy that ends TLS and says so (``X-Forwarded-Proto: https``,
    or ``proto=https`` in ``Forwarded``, RFC 7239). Trusting a client's word is safe here: it
    can only make its own cookie Secure, which is stricter."""
    if request.url.scheme == "https":
        return True
    said = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if said == "https":
        return True
    first = request.headers.get("forwarded", "").split(",")[0]
    for pair in first.split(";"):
        name, _, value = pair.strip().partition("=")
        if name.lower() == "proto" and value.strip('"').lower() == "https":
            return True
    return False


async def logout(request: Request) -> Response:
    """The session cookie cleared, and the one releases before ``Path=/dashboard`` set on /."""
    headers = [(b"location", b"/dashboard")]
    for path in (COOKIE_PATH, "/"):
        cookie = f"{COOKIE}=; Max-Age=0; Path={path}; HttpOnly; SameSite=Strict"
        headers.append((b"set-cookie", cookie.encode()))
    return raw_response(b"", 303, headers)


async def data(request: Request) -> Response:
    svc = services(request)
    if not signed_in(request):
        body = b'{"error": {"message": "sign in at /dashboard", "type": "authentication_error"}}'
        return raw_response(body, 401, [JSON])
    history: History = request.app.state.history
    snapshot = svc.metrics.snapshot(await svc.cache.stats())
    metrics = svc.metrics
    top = sorted(metrics.entry_hits.items(), key=lambda item: -item[1])[:TOP_ENTRIES]
    out: dict[str, Any] = {
        "now": history.sample(),
        "history": list(history.samples),
        "stats": snapshot,
        "store_kind": "memory" if svc.settings.redis_url is None else "redis",
        "semantic": {"state": svc.semantic.state, "verifier": svc.semantic.verifier.name},
        "models": {
            model: {"hits": n, "prompt_tokens": p, "completion_tokens": c}
            for model, (n, p, c) in metrics.saved_by_model.items()
        },
        "top_entries": [
            {"entry_id": entry_id, "hits": n, "model": metrics.entry_models.get(entry_id, "")}
            for entry_id, n in top
        ],
        "groups": [] if svc.semantic.adaptive is None else report(svc.semantic.adaptive),
    }
    return raw_response(orjson.dumps(out), 200, [JSON, (b"cache-control", b"no-store")])


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    kind = STATIC.get(name)
    if kind is None:
        return raw_response(b"not found", 404, [(b"content-type", b"text/plain")])
    body = _read(name)
    return raw_response(body, 200, [(b"content-type", kind), (b"cache-control", b"max-age=3600")])


def _page(name: str, status: int, *, error: bool = False) -> Response:
    body = _read(name)
    if error:
        body = body.replace(b'<p class="error" hidden>', b'<p class="error">')
    return raw_response(body, status, [HTML, *SECURITY])


def _read(name: str) -> bytes:
    return resources.files("proxy.http").joinpath("static", name).read_bytes()
