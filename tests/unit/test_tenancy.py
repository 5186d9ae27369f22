"""Tenant isolation, client keys and the admin token."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from proxy.cache.keys import chat_key
from proxy.cache.tenancy import SHARED_NAMESPACE, Tenancy
from proxy.errors import UnauthorizedError
from proxy.metrics import Metrics
from proxy.stores.guard import Cache
from proxy.stores.memory import MemoryStore
from tests.unit.harness import FakeClock, chat_body, completion, make_proxy

SECRET = "0123456789abcdef-test-secret"


def tenancy(**kw: Any) -> Tenancy:
    return Tenancy(
        secret=kw.get("secret", SECRET),
        shared=kw.get("shared", False),
        allowed_keys=kw.get("allowed", frozenset()),
    )


def test_namespace_is_a_keyed_hash_that_never_contains_the_key() -> None:
    ns = tenancy().namespace("sk-live-secret-123")
    assert "secret" not in ns
    assert len(ns) == 32
    assert ns == tenancy().namespace("sk-live-secret-123")
    assert ns != tenancy().namespace("sk-live-secret-124")
    assert ns != tenancy(secret="another-secret-of-16+").namespace("sk-live-secret-123")
    assert tenancy().namespace(None) == tenancy().namespace("") == SHARED_NAMESPACE


def test_a_query_or_header_scope_is_keyed_with_the_secret_never_a_bare_hash() -> None:
    """``?key=...`` (Gemini, Azure) is the caller's key: its scope is an HMAC with the secret, as
    a namespace is, so a store's keys cannot be checked against a guessed key without it."""
    auth = [(b"authorization", b"Bearer sk-a")]
    query = b"key=AIza-live-key-123"
    ns = tenancy().request_namespace(auth, query)
    base, _, scope = ns.partition("~")
    assert base == tenancy().namespace("sk-a")
    assert len(scope) == 16
    assert "AIza" not in ns
    assert scope != hashlib.sha256(query).hexdigest()[:16]
    assert ns == tenancy().request_namespace(auth, query)
    assert ns != tenancy(secret="another-secret-of-16+").request_namespace(auth, query)
    assert tenancy().request_namespace(auth, b"") == base


def test_x_cache_namespace_partitions_a_callers_namespace_and_nobody_elses() -> None:
    t = tenancy()
    auth = [(b"authorization", b"Bearer sk-a")]

    def ns(*headers: tuple[bytes, bytes], key: bytes = b"Bearer sk-a") -> str:
        return t.request_namespace([(b"authorization", key), *headers], b"")

    user_1 = ns((b"X-Cache-Namespace", b"user-1"))
    assert user_1 == ns((b"x-cache-namespace", b"user-1"))
    assert user_1.startswith(t.namespace("sk-a") + "~")  # still the caller's (feedback, admin)
    assert user_1 != ns((b"x-cache-namespace", b"user-2"))
    assert user_1 != t.request_namespace(auth, b"")
    assert user_1 != ns((b"x-cache-namespace", b"user-1"), key=b"Bearer sk-b")
    # Not confused with a routing header or a query carrying the same text:
    assert user_1 != ns((b"openai-beta", b"user-1"))
    assert user_1 != t.request_namespace(auth, b"user-1")


def test_shared_cache_puts_every_key_in_one_namespace() -> None:
    shared = tenancy(shared=True)
    assert shared.namespace("sk-a") == shared.namespace("sk-b") == SHARED_NAMESPACE


@given(
    a=st.text(min_size=1, max_size=40),
    b=st.text(min_size=1, max_size=40),
    text=st.text(max_size=80),
)
def test_no_two_tenants_ever_share_a_key(a: str, b: str, text: str) -> None:
    t = tenancy()
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    same = chat_key(t.namespace(a), body) == chat_key(t.namespace(b), body)
    assert same == (a == b)


class KeepingStore(MemoryStore):
    """Keeps the first secret offered, as Redis does (``SET NX``) for every replica."""

    kept: bytes | None = None

    async def shared_secret(self, candidate: bytes) -> bytes:
        if self.kept is None:
            self.kept = candidate
        return self.kept


@pytest.mark.anyio
async def test_generated_secret_is_stable_per_store() -> None:
    """Without SEMCACHE_SECRET, every process on one store (a replica, a restart) derives a
    key's namespace from the secret kept there; on another store it differs."""
    store, other = (KeepingStore(max_entries=10, max_bytes=10_000) for _ in range(2))

    async def started(on: MemoryStore) -> Tenancy:
        t = Tenancy(secret=None, shared=False, allowed_keys=frozenset())
        await t.start(Cache(on, Metrics()))
        return t

    first, second, elsewhere = await started(store), await started(store), await started(other)
    assert len(first.namespace("sk-1")) == 32
    assert second.namespace("sk-1") == first.namespace("sk-1")
    assert elsewhere.namespace("sk-1") != first.namespace("sk-1")


def test_client_keys_restrict_who_may_call() -> None:
    t = tenancy(allowed=frozenset({"sk-ok"}))
    t.authorize("sk-ok")
    with pytest.raises(UnauthorizedError):
        t.authorize("sk-other")
    with pytest.raises(UnauthorizedError):
        t.authorize(None)
    tenancy().authorize(None)  # no list: anyone


@pytest.mark.anyio
async def test_unknown_client_key_gets_a_401_and_never_reaches_upstream(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion())
    models = upstream_mock.get("/models").respond(200, json={"data": []})
    async with make_proxy(upstream_mock, clock, client_keys="sk-ok, sk-also") as proxy:
        denied = await proxy.chat(chat_body(), authorization="Bearer sk-nope")
        anonymous = await proxy.client.post("/v1/chat/completions", json=chat_body())
        other_route = await proxy.client.get("/v1/models", headers={"authorization": "Bearer x"})
        allowed = await proxy.chat(chat_body(), authorization="Bearer sk-also")
    assert [denied.status_code, anonymous.status_code, other_route.status_code] == [401] * 3
    assert denied.json()["error"]["code"] == "unauthorized"
    assert allowed.status_code == 200
    assert route.call_count == 1
    assert models.call_count == 0


@pytest.mark.anyio
async def test_shared_cache_lets_tenants_share_entries(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion())
    async with make_proxy(upstream_mock, clock, shared_cache=True) as proxy:
        await proxy.chat(chat_body(), authorization="Bearer sk-a")
        other = await proxy.chat(chat_body(), authorization="Bearer sk-b")
    assert other.headers["x-cache"] == "HIT"
    assert route.call_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("placeholder", "key_header"),
    [("Bearer EMPTY", "api-key"), ("Bearer", "x-api-key"), ("Bearer sk-none", "x-goog-api-key")],
)
async def test_a_shared_placeholder_bearer_never_shares_entries_across_real_keys(
    upstream_mock: respx.MockRouter, clock: FakeClock, placeholder: str, key_header: str
) -> None:
    """Must NOT hit: SDKs send a dummy ``Authorization`` beside the key the upstream reads
    (Azure's ``api-key``, Anthropic-style ``x-api-key``); those keys are different tenants."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion(f"for {request.headers[key_header]}"))

    route = upstream_mock.post("/chat/completions").mock(side_effect=answer)
    async with make_proxy(upstream_mock, clock) as proxy:
        first = {"authorization": placeholder, key_header: "tenant-a"}
        second = {"authorization": placeholder, key_header: "tenant-b"}
        a = await proxy.client.post("/v1/chat/completions", json=chat_body(), headers=first)
        b = await proxy.client.post("/v1/chat/completions", json=chat_body(), headers=second)
        again = await proxy.client.post("/v1/chat/completions", json=chat_body(), headers=first)
    assert b.headers["x-cache"] == "MISS"
    assert b.json()["choices"][0]["message"]["content"] == "for tenant-b"
    assert (a.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert route.call_count == 2


@pytest.mark.anyio
async def test_with_a_shared_cache_a_stored_chat_completion_is_never_shared(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Must NOT share: a ``store: true`` answer's id is a stored completion of the asking key's
    project; with tenants sharing entries another key could not fetch it."""
    route = upstream_mock.post("/chat/completions").respond(200, json=completion())
    stored = {**chat_body(), "store": True}
    async with make_proxy(upstream_mock, clock, shared_cache=True) as proxy:
        first = await proxy.client.post("/v1/chat/completions", json=stored,
                                        headers={"authorization": "Bearer sk-a"})  # fmt: skip
        other = await proxy.client.post("/v1/chat/completions", json=stored,
                                        headers={"authorization": "Bearer sk-b"})  # fmt: skip
    assert [r.headers["x-cache"] for r in (first, other)] == ["BYPASS", "BYPASS"]
    assert other.headers["x-cache-reason"] == "bypass:stored-response"
    assert route.call_count == 2


@pytest.mark.anyio
async def test_admin_token_guards_stats_metrics_and_clear(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    upstream_mock.post("/chat/completions").respond(200, json=completion())
    admin = {"authorization": "Bearer admin-token-1"}
    async with make_proxy(upstream_mock, clock, admin_token="admin-token-1") as proxy:
        await proxy.chat(chat_body())
        for path in ("/cache/stats", "/metrics"):
            assert (await proxy.client.get(path)).status_code == 401
            assert (
                await proxy.client.get(path, headers={"authorization": "Bearer no"})
            ).status_code == 401
            assert (await proxy.client.get(path, headers=admin)).status_code == 200
        assert (await proxy.client.delete("/cache")).status_code == 401
        cleared = await proxy.client.delete("/cache", headers=admin)
        assert cleared.json() == {"removed": 1}
        assert (await proxy.chat(chat_body())).headers["x-cache"] == "MISS"
        assert (await proxy.client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_clear_is_off_without_an_admin_token(proxy: Any) -> None:
    response = await proxy.client.delete("/cache")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.anyio
async def test_keys_and_prompts_never_reach_the_log(
    upstream_mock: respx.MockRouter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    upstream_mock.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    async with make_proxy(upstream_mock, clock) as proxy:
        await proxy.chat(chat_body("my secret prompt text"), authorization="Bearer sk-SECRETKEY")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the upstream failure was logged...
    assert "sk-SECRETKEY" not in logged  # ...without the key
    assert "my secret prompt text" not in logged


@pytest.mark.anyio
async def test_upstream_cookies_never_travel_to_another_tenant(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.get("/models").respond(
        200, json={"data": []}, headers={"set-cookie": "session=for-tenant-a; Path=/"}
    )
    async with make_proxy(upstream_mock, clock) as proxy:
        first = await proxy.client.get("/v1/models", headers={"authorization": "Bearer sk-a"})
        proxy.client.cookies.clear()  # tenant B is another client, with no cookies of A's
        await proxy.client.get("/v1/models", headers={"authorization": "Bearer sk-b"})
    assert first.headers["set-cookie"].startswith("session=for-tenant-a")  # relayed to A
    assert "cookie" not in route.calls.last.request.headers  # never replayed for B


@pytest.mark.anyio
async def test_a_non_ascii_admin_token_is_a_401_not_a_500(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(upstream_mock, clock, admin_token="admin-token-1") as proxy:
        response = await proxy.client.get(
            "/metrics", headers=[(b"authorization", b"Bearer \xe9t\xe9")]
        )
    assert response.status_code == 401


@pytest.mark.anyio
async def test_an_empty_admin_token_never_opens_the_admin_routes(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Must NOT: settings refuse an empty admin token, and should one get past them a bare
    ``Authorization: Bearer`` (or ``Bearer`` and spaces) is still no admin: no export of every
    tenant's entries, no DELETE /cache."""
    upstream_mock.post("/chat/completions").respond(200, json=completion("tenant A's answer"))
    made = make_proxy(upstream_mock, clock, admin_token="admin-token-1")
    object.__setattr__(made.settings, "admin_token", "")  # past the settings' own check
    async with made as proxy:
        await proxy.chat(chat_body("a private question"), authorization="Bearer sk-tenant-a")
        for header in ("Bearer", "Bearer ", "Bearer   ", "bearer"):
            bare = {"authorization": header}
            export = await proxy.client.get("/cache/export", headers=bare)
            assert export.status_code in (401, 403), (header, export.status_code)
            assert b"tenant A's answer" not in export.content
            for path in ("/cache/stats", "/metrics", "/cache/entries"):
                assert (await proxy.client.get(path, headers=bare)).status_code in (401, 403)
            assert (await proxy.client.delete("/cache", headers=bare)).status_code in (401, 403)
        assert (await proxy.chat(chat_body("a private question"))).status_code == 200
        hit = await proxy.chat(chat_body("a private question"), authorization="Bearer sk-tenant-a")
        assert hit.headers["x-cache"] == "HIT"  # nothing was cleared


ADMIN = {"authorization": "Bearer admin-token"}


@pytest.mark.anyio
async def test_the_admin_filters_by_a_namespace_as_its_listing_shows_it(clock: FakeClock) -> None:
    """``GET /cache/entries`` names each entry's namespace; an entry made with
    ``X-Cache-Namespace`` (or a query string) has a scoped one, ``<namespace>~<hmac>``. Given
    back as ``?namespace=``, that partition's entries are listed (and can be deleted: one end
    user's entries), not none: the filter compared only the part before ``~`` with all of it."""
    with respx.mock(assert_all_called=False) as router:
        router.post("http://upstream.test/v1/chat/completions").respond(200, json=completion())
        async with make_proxy(router, clock, admin_token="admin-token") as proxy:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for partition in ("user-1", "user-2"):
                sent = await proxy.client.post(
                    "/v1/chat/completions", json=body,
                    headers={"authorization": "Bearer sk-test-a", "x-cache-namespace": partition},
                )  # fmt: skip
                assert sent.headers["x-cache"] == "MISS"
            await proxy.client.post(
                "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-test-a"}
            )
            listed = (await proxy.client.get("/cache/entries", headers=ADMIN)).json()["entries"]
            scoped = sorted(e["namespace"] for e in listed if "~" in e["namespace"])
            assert len(scoped) == 2
            tenant = (await proxy.client.get(
                "/cache/entries", headers={**ADMIN, "x-cache-tenant-key": "sk-test-a"}
            )).json()["entries"]  # fmt: skip
            assert len(tenant) == 3  # the tenant's filter takes its partitions too
            one = (await proxy.client.get(
                "/cache/entries", params={"namespace": scoped[0]}, headers=ADMIN
            )).json()["entries"]  # fmt: skip
    assert [e["namespace"] for e in one] == [scoped[0]]


def _untemper(y: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output (its tempering undone)."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    t = y
    for _ in range(5):
        t = y ^ ((t << 7) & 0x9D2C5680)
    y = t
    t = y
    for _ in range(2):
        t = y ^ (t >> 11)
    return t & 0xFFFFFFFF


def test_entry_ids_cannot_be_predicted_from_earlier_ones() -> None:
    """Must NOT: a tenant sees the ``X-Cache-Entry-Id`` of each of its hits; from 312 of them a
    generator like Python's ``random`` (MT19937, 624 words of state) is known, and with it the
    ids of every entry stored after, another tenant's included (how many they stored, and the
    id their feedback and the admin's routes name). Ids come from the OS's generator."""
    import random

    cache = Cache(MemoryStore(max_entries=10, max_bytes=10_000), Metrics())
    seen = [int(cache.new_entry(b"x").id, 16) for _ in range(312)]
    words = []
    for value in seen:  # getrandbits(64): the first 32-bit output is the low half
        words += [value & 0xFFFFFFFF, value >> 32]
    mirror = random.Random()
    mirror.setstate((3, (*[_untemper(w) for w in words], 624), None))
    predicted = [f"{mirror.getrandbits(64):016x}" for _ in range(3)]
    assert [cache.new_entry(b"x").id for _ in range(3)] != predicted
