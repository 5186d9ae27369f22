"""Shadow mode, audits and feedback through the app (respx upstream, bag-of-words embedder)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx

from proxy.metrics import Metrics
from proxy.semantic.audit import Auditor, Candidate
from proxy.semantic.embedders import HashEmbedder
from proxy.semantic.lookup import SemanticCache
from proxy.stores import Entry
from tests.unit.harness import (
    QUESTION,
    SAME_WORDS,
    FakeClock,
    Proxy,
    chat_body,
    completion,
    make_proxy,
)

pytestmark = pytest.mark.anyio

KEY_A, KEY_B = "sk-tenant-a", "sk-tenant-b"


def semantic(proxy: Proxy) -> SemanticCache:
    found: SemanticCache = proxy.app.state.services.semantic
    return found


async def settle(proxy: Proxy) -> dict[str, Any]:
    """Let the background comparisons finish, sync the evidence, read the model's group."""
    found = semantic(proxy)
    assert found.auditor is not None
    assert found.adaptive is not None
    await found.auditor.drain()
    await found.adaptive.sync()
    admin = {"authorization": "Bearer admin-token-123"}
    stats = (await proxy.client.get("/cache/stats", headers=admin)).json()
    (group,) = stats["groups"]
    assert group["group"] == found.group("gpt-test") == "cosine@0.95[hash:64]|gpt-test"
    return dict(group)


def answers(*texts: str) -> Any:
    """An upstream that answers ``texts`` in turn (the last one from then on)."""

    def answer(request: httpx.Request, route: Any) -> httpx.Response:
        return httpx.Response(200, json=completion(texts[min(route.call_count, len(texts) - 1)]))

    return answer


@pytest.fixture
async def shadow(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), semantic_mode="shadow"
    ) as p:
        yield p


async def test_shadow_mode_never_serves_and_judges_each_would_be_hit(shadow: Proxy) -> None:
    route = shadow.upstream.post("/chat/completions").mock(
        side_effect=answers("Paris is the capital.", "The capital is Paris.", "It is Lyon, 42.")
    )
    first = await shadow.chat(chat_body(QUESTION))
    again = await shadow.chat(chat_body(SAME_WORDS))
    assert first.headers["x-cache"] == again.headers["x-cache"] == "MISS"
    assert "x-cache-shadow" not in first.headers
    assert again.headers["x-cache-shadow"] == "HIT"
    assert again.json()["choices"][0]["message"]["content"] == "The capital is Paris."
    third = await shadow.chat(chat_body("Of France, what is the capital?"))
    assert third.headers["x-cache"] == "MISS"
    assert route.call_count == 3  # every request went upstream
    group = await settle(shadow)
    assert group["lookups"] == 3  # the first found nothing to compare with
    assert group["shadow"]["would_be_hits"] == 2
    assert group["shadow"]["judged_wrong"] == 1  # "42" and Lyon: not the same answer
    assert group["shadow"]["hit_rate"] == pytest.approx(2 / 3)
    interval = group["shadow"]["wrong_hit_rate"]
    assert interval["estimate"] == pytest.approx(1 / 3)
    assert interval["low95"] < 1 / 3 < interval["high95"]


async def test_shadow_would_be_hits_never_judged_are_not_counted_as_right(shadow: Proxy) -> None:
    """A would-be hit whose fresh answer is not stored (Cache-Control: no-store) is never
    compared: the estimate comes from those judged, not 0 % from treating the rest as right."""
    shadow.upstream.post("/chat/completions").mock(
        side_effect=answers("Paris is the capital.", "It is Lyon, 42.")
    )
    await shadow.chat(chat_body(QUESTION))
    unjudged = [await shadow.chat(chat_body(SAME_WORDS), **{"cache-control": "no-store"})
                for _ in range(4)]  # fmt: skip
    assert all(r.headers["x-cache-shadow"] == "HIT" for r in unjudged)
    group = await settle(shadow)
    assert (group["shadow"]["would_be_hits"], group["shadow"]["judged"]) == (4, 0)
    assert group["shadow"]["wrong_hit_rate"] is None  # nothing judged: nothing to say
    judged = await shadow.chat(chat_body(SAME_WORDS))  # stored: compared, found wrong
    assert judged.headers["x-cache-shadow"] == "HIT"
    group = await settle(shadow)
    assert (group["shadow"]["judged"], group["shadow"]["judged_wrong"]) == (1, 1)
    interval = group["shadow"]["wrong_hit_rate"]
    assert interval["estimate"] == pytest.approx(5 / 6)  # 5 would-be hits in 6, all wrong
    assert interval["low95"] < 5 / 6 < interval["high95"]


async def test_shadow_mode_still_serves_exact_hits(shadow: Proxy) -> None:
    route = shadow.upstream.post("/chat/completions").mock(side_effect=answers("Paris."))
    await shadow.chat(chat_body(QUESTION))
    assert (await shadow.chat(chat_body(QUESTION))).headers["x-cache"] == "HIT"
    assert route.call_count == 1


@pytest.fixture
async def audited(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), audit_rate=1.0, max_inflight=1
    ) as p:
        yield p


async def test_an_audit_never_delays_the_client(audited: Proxy) -> None:
    released, held = anyio.Event(), anyio.Event()
    asked: list[str] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        asked.append(request.content.decode())
        if len(asked) == 2:  # the audit: held until the test lets it go
            held.set()
            await released.wait()
        return httpx.Response(200, json=completion("Paris is the capital."))

    audited.upstream.post("/chat/completions").mock(side_effect=upstream)
    await audited.chat(chat_body(QUESTION))
    with anyio.fail_after(2):
        hit = await audited.chat(chat_body(SAME_WORDS))
        assert hit.headers["x-cache-lookup"] == "semantic"
        await held.wait()  # the audit is in flight, held...
        # ...and takes no upstream slot (SEMCACHE_MAX_INFLIGHT=1): a miss still goes through.
        other = await audited.chat(chat_body("How tall is the Eiffel Tower?"))
        assert other.headers["x-cache"] == "MISS"
    assert SAME_WORDS in asked[1]
    assert '"stream"' not in asked[1]
    released.set()
    group = await settle(audited)
    assert group["verdicts"] == {"audit_same": 1}


async def test_a_failed_audit_never_fails_the_client(audited: Proxy) -> None:
    calls: list[int] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > 1:
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json=completion("Paris is the capital."))

    audited.upstream.post("/chat/completions").mock(side_effect=upstream)
    await audited.chat(chat_body(QUESTION))
    hit = await audited.chat(chat_body(SAME_WORDS))
    assert hit.status_code == 200
    assert hit.headers["x-cache"] == "HIT"
    await settle(audited)
    stats = (await audited.client.get("/cache/stats")).json()
    assert stats["audits"] == {"audit upstream_error": 1}
    # A 429 pauses audits: the next hit is not audited.
    assert (await audited.chat(chat_body(SAME_WORDS))).headers["x-cache"] == "HIT"
    assert len(calls) == 2


@pytest.mark.parametrize(
    "fresh",
    [
        {"error": {"message": "upstream overloaded", "type": "server_error"}},  # sent with 200
        completion("The capital of France is", finish="length"),
        completion("", finish="stop"),
    ],
    ids=["error-with-200", "cut", "empty"],
)
async def test_an_audit_that_gets_no_whole_answer_is_no_evidence(
    audited: Proxy, fresh: dict[str, Any]
) -> None:
    """Nothing to compare the served answer with: the audit counts as an upstream error, the
    line learns nothing, and the entry is still served semantically."""
    calls: list[int] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=completion("Paris is the capital.") if len(calls) == 1
                              else fresh)  # fmt: skip

    audited.upstream.post("/chat/completions").mock(side_effect=upstream)
    await audited.chat(chat_body(QUESTION))
    assert (await audited.chat(chat_body(SAME_WORDS))).headers["x-cache"] == "HIT"
    group = await settle(audited)
    stats = (await audited.client.get("/cache/stats")).json()
    assert stats["audits"] == {"audit upstream_error": 1}
    assert group.get("evidence", {}).get("different", 0) == 0
    assert (await audited.chat(chat_body(SAME_WORDS))).headers["x-cache-lookup"] == "semantic"


async def test_a_hit_an_audit_finds_wrong_is_never_served_semantically_again(
    audited: Proxy,
) -> None:
    route = audited.upstream.post("/chat/completions").mock(
        side_effect=answers("Paris is the capital.", "No: the capital is Lyon since 2042.")
    )
    await audited.chat(chat_body(QUESTION))
    assert (await audited.chat(chat_body(SAME_WORDS))).headers["x-cache"] == "HIT"
    group = await settle(audited)
    assert group["verdicts"] == {"audit_different": 1}
    assert group["evidence"] == {"compared": 1, "different": 1}
    again = await audited.chat(chat_body(SAME_WORDS))
    assert again.headers["x-cache"] == "MISS"  # the entry lost its vector
    assert (await audited.chat(chat_body(QUESTION))).headers["x-cache"] == "HIT"  # exact: kept
    assert route.call_count == 3


async def test_exact_hits_at_temperature_zero_measure_the_upstream(audited: Proxy) -> None:
    audited.upstream.post("/chat/completions").mock(
        side_effect=answers("Paris is the capital.", "The capital is Paris.")
    )
    body = chat_body(QUESTION, temperature=0)
    await audited.chat(body)
    assert (await audited.chat(body)).headers["x-cache-lookup"] == "exact"
    group = await settle(audited)
    assert group["verdicts"] == {"exact_same": 1}
    assert group["evidence"]["compared"] == 0  # not evidence about matching


@pytest.fixture
async def tenants(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), admin_token="admin-token-123"
    ) as p:
        p.upstream.post("/chat/completions").mock(side_effect=answers("Paris.", "Paris!"))
        yield p


async def feedback(proxy: Proxy, body: Any, token: str) -> httpx.Response:
    return await proxy.client.post(
        "/cache/feedback", json=body, headers={"authorization": f"Bearer {token}"}
    )


async def test_feedback_from_another_tenant_is_refused(tenants: Proxy) -> None:
    await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    hit = await tenants.chat(chat_body(SAME_WORDS), authorization=f"Bearer {KEY_A}")
    entry_id = hit.headers["x-cache-entry-id"]
    refused = await feedback(tenants, {"entry_id": entry_id}, KEY_B)
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "invalid_request_error"
    # Nothing changed for tenant A.
    again = await tenants.chat(chat_body(SAME_WORDS), authorization=f"Bearer {KEY_A}")
    assert again.headers["x-cache-lookup"] == "semantic"


async def test_feedback_stops_semantic_hits_and_counts_as_a_wrong_hit(tenants: Proxy) -> None:
    await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    hit = await tenants.chat(chat_body(SAME_WORDS), authorization=f"Bearer {KEY_A}")
    reported = await feedback(tenants, {"entry_id": hit.headers["x-cache-entry-id"]}, KEY_A)
    assert reported.status_code == 200
    assert reported.json() == {
        "entry_id": hit.headers["x-cache-entry-id"],
        "semantic": "stopped",
        "deleted": False,
        "counted_as_wrong_hit": True,
    }
    miss = await tenants.chat(chat_body(SAME_WORDS), authorization=f"Bearer {KEY_A}")
    assert miss.headers["x-cache"] == "MISS"
    exact = await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    assert exact.headers["x-cache-lookup"] == "exact"
    group = await settle(tenants)
    assert group["verdicts"] == {"feedback_wrong": 1}
    assert group["evidence"] == {"compared": 1, "different": 1}


async def test_one_tenants_reports_count_as_evidence_a_few_an_hour(tenants: Proxy) -> None:
    """The evidence is pooled per model across tenants: one key's reports (its word, not an
    upstream answer) count ten an hour, so it cannot switch semantic hits off for everyone;
    past that a report still stops its entry. The admin's always count."""
    hits = []
    for i in range(12):
        await tenants.chat(chat_body(f"what is the capital of country {i}"),
                           authorization=f"Bearer {KEY_A}")  # fmt: skip
        hit = await tenants.chat(chat_body(f"the capital of country {i} is what"),
                                 authorization=f"Bearer {KEY_A}")  # fmt: skip
        assert hit.headers["x-cache-lookup"] == "semantic"
        hits.append(hit.headers["x-cache-entry-id"])
    counted = []
    for entry_id in hits[:11]:
        answer = await feedback(tenants, {"entry_id": entry_id}, KEY_A)
        assert (answer.status_code, answer.json()["semantic"]) == (200, "stopped")
        counted.append(answer.json()["counted_as_wrong_hit"])
    assert counted == [True] * 10 + [False]
    admin = await feedback(tenants, {"entry_id": hits[11]}, "admin-token-123")
    assert admin.json()["counted_as_wrong_hit"] is True
    group = await settle(tenants)
    assert group["verdicts"] == {"feedback_wrong": 11}


async def test_a_second_credential_header_does_not_buy_a_key_more_reports(
    tenants: Proxy,
) -> None:
    """An extra header the upstream ignores (a junk ``api-key`` beside the real ``Authorization``)
    makes a namespace of its own; the reports of one key still count ten an hour, whichever
    other credential headers each request carried."""
    counted = []
    for i in range(12):
        extra = {"authorization": f"Bearer {KEY_A}", "api-key": f"junk-{i}"}
        await tenants.chat(chat_body(f"what is the capital of country {i}"), **extra)
        hit = await tenants.chat(chat_body(f"the capital of country {i} is what"), **extra)
        assert hit.headers["x-cache-lookup"] == "semantic"
        answer = await tenants.client.post(
            "/cache/feedback", json={"entry_id": hit.headers["x-cache-entry-id"]}, headers=extra
        )
        assert (answer.status_code, answer.json()["semantic"]) == (200, "stopped")
        counted.append(answer.json()["counted_as_wrong_hit"])
    assert counted == [True] * 10 + [False] * 2


async def test_feedback_scope_all_deletes_and_the_admin_may_report(tenants: Proxy) -> None:
    await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    hit = await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    body = {"entry_id": hit.headers["x-cache-entry-id"], "scope": "all"}
    reported = await feedback(tenants, body, "admin-token-123")
    assert reported.status_code == 200
    assert reported.json()["deleted"] is True
    again = await tenants.chat(chat_body(QUESTION), authorization=f"Bearer {KEY_A}")
    assert again.headers["x-cache"] == "MISS"


async def test_a_report_on_a_replaced_answer_leaves_the_newer_one(tenants: Proxy) -> None:
    """``scope: all`` deletes the reported entry only: when a refresh (``no-cache``) has
    stored a new answer under the same key since, that answer is not the one reported."""
    auth = f"Bearer {KEY_A}"
    await tenants.chat(chat_body(QUESTION), authorization=auth)
    old = await tenants.chat(chat_body(QUESTION), authorization=auth)
    fresh = await tenants.chat(
        chat_body(QUESTION), authorization=auth, **{"cache-control": "no-cache"}
    )
    new = await tenants.chat(chat_body(QUESTION), authorization=auth)
    assert new.headers["x-cache-entry-id"] != old.headers["x-cache-entry-id"]
    assert new.json()["choices"][0]["message"]["content"] == "Paris!"
    body = {"entry_id": old.headers["x-cache-entry-id"], "scope": "all"}
    reported = await feedback(tenants, body, KEY_A)
    assert (reported.status_code, reported.json()["deleted"]) == (200, False)
    again = await tenants.chat(chat_body(QUESTION), authorization=auth)
    assert again.headers["x-cache"] == "HIT"
    assert again.headers["x-cache-entry-id"] == new.headers["x-cache-entry-id"]
    semantic_hit = await tenants.chat(chat_body(SAME_WORDS), authorization=auth)
    assert semantic_hit.headers["x-cache-lookup"] == "semantic"
    assert fresh.status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"entry_id": "nothex"}, 400),
        ({"entry_id": "0123456789abcdef", "scope": "everything"}, 400),
        ([1, 2], 400),
        ({"entry_id": "0123456789abcdef"}, 404),
    ],
)
async def test_bad_or_unknown_feedback(tenants: Proxy, body: Any, status: int) -> None:
    response = await feedback(tenants, body, KEY_A)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_no_line_lifts_a_rule_s_refusal(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Must not hit: even with the line moved as low as it goes, a look-alike that a rule
    refuses (another number) is never served; a paraphrase still is."""
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64)) as proxy:
        route = proxy.upstream.post("/chat/completions").mock(side_effect=answers("4.", "5."))
        found = semantic(proxy)
        assert found.adaptive is not None
        found.adaptive.group(found.group("gpt-test")).offset_bin = 0  # margin -1.0: anything goes
        await proxy.chat(chat_body("What is 2 plus 2 in total?"))
        other = await proxy.chat(chat_body("What is 2 plus 3 in total?"))
        assert other.headers["x-cache"] == "MISS"
        same = await proxy.chat(chat_body("In total, what is 2 plus 2?"))
        assert same.headers["x-cache-lookup"] == "semantic"
        assert route.call_count == 2


async def test_without_semantic_matching_nothing_is_audited(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    async with make_proxy(upstream_mock, clock, audit_rate=1.0) as proxy:
        route = proxy.upstream.post("/chat/completions").mock(side_effect=answers("Paris."))
        for _ in range(3):
            await proxy.chat(chat_body(QUESTION, temperature=0))
        stats = (await proxy.client.get("/cache/stats")).json()
    assert stats["audits"] == {}
    assert route.call_count == 1


async def test_a_model_name_from_a_body_cannot_write_into_metrics_or_the_log(
    tenants: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    """Model names are the client's: a quote and newlines in one (or a megabyte of it) become a
    digest in the group's name, never a forged series, a forged log line or unbounded memory."""
    forged = 'gpt-4o"} 1\nsemcache_tokens_saved_total 999999\nx{a="'
    tenants.upstream.post("/chat/completions").mock(side_effect=answers("Paris."))
    for model in (forged, "m" * 1_000_000):
        body = {**chat_body(QUESTION), "model": model}
        await tenants.chat(body, authorization="Bearer sk-a")
        await tenants.chat({**body, "messages": [{"role": "user", "content": SAME_WORDS}]},
                           authorization="Bearer sk-a")  # fmt: skip
    found = semantic(tenants)
    assert found.adaptive is not None
    await found.adaptive.sync()
    admin = {"authorization": "Bearer admin-token-123"}
    metrics = (await tenants.client.get("/metrics", headers=admin)).text
    assert "semcache_tokens_saved_total 999999" not in metrics
    assert not any(line.startswith("x{") for line in metrics.splitlines())
    groups = (await tenants.client.get("/cache/stats", headers=admin)).json()["groups"]
    names = [g["group"] for g in groups]
    assert len(names) == 2
    assert all(len(name) < 200 and "\n" not in name and '"' not in name for name in names)
    assert "999999" not in caplog.text


async def test_hits_during_a_pause_never_add_up_to_a_burst_of_audits() -> None:
    """At most one audit per 1/rate hits: the credit earned while paused after a 429 is capped
    at one audit (1,000 hits at 0.01 made ten audits in a row once the pause ended)."""
    auditor = Auditor(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        Metrics(),
        rate=0.25,
        concurrency=1,
    )
    candidate = Candidate("g", 0.1, "p", "k")

    def hits(n: int) -> list[bool]:
        return [
            auditor.maybe_audit(candidate, exact=False, url="u", headers=(), body={})
            for _ in range(n)
        ]

    auditor._paused_until = time.monotonic() + 3600
    assert not any(hits(1000))
    auditor._paused_until = 0.0
    assert hits(8) == [True, False, False, False, True, False, False, False]


async def test_audits_queued_before_a_429_wait_out_the_pause() -> None:
    """A 429 pauses audits: those already queued behind the one that got it are not sent
    either (they were sent, one 429 after another, to an upstream asking for a rest)."""
    sent: list[bytes] = []

    class Upstream:
        def forward_headers(self, headers: Any, **_: Any) -> Any:
            return list(headers)

        async def send(self, method: str, url: str, **kwargs: Any) -> Any:
            sent.append(kwargs["content"])
            return httpx.Response(429, json={"error": {"message": "slow down"}})

        async def read(self, response: httpx.Response) -> bytes:
            return response.content

    class Cache:
        async def get(self, key: str) -> Any:
            return Entry(id="0123456789abcdef", body=orjson.dumps(completion("Paris.")),
                         created_at=0.0)  # fmt: skip

    metrics = Metrics()
    auditor = Auditor(
        Cache(),  # type: ignore[arg-type]
        Upstream(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        metrics,
        rate=1.0,
        concurrency=1,
    )
    for i in range(3):
        body = {"model": "m", "n": i}
        assert auditor.maybe_audit(Candidate("g", 0.1, "p", "k"), exact=False, url="u",
                                   headers=(), body=body)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(auditor.run)
        with anyio.fail_after(2):
            await auditor.drain()
        tg.cancel_scope.cancel()
    assert len(sent) == 1
    assert metrics.audits[("audit", "paused")] == 2


@pytest.mark.parametrize("first", ["audit", "report"])
async def test_one_wrong_hit_audited_and_reported_counts_once(
    upstream_mock: respx.MockRouter, clock: FakeClock, first: str
) -> None:
    """The same served hit, found wrong by its audit and reported by the application, is one
    wrong answer in the evidence, whichever comes first (it was two)."""
    async with make_proxy(
        upstream_mock, clock, embedder=HashEmbedder(64), audit_rate=1.0,
        admin_token="admin-token-123",
    ) as proxy:  # fmt: skip
        proxy.upstream.post("/chat/completions").mock(
            side_effect=answers("Paris is the capital.", "No: the capital is Lyon since 2042.")
        )
        await proxy.chat(chat_body(QUESTION))
        found = semantic(proxy)
        assert found.auditor is not None
        hold = anyio.Lock()
        if first == "report":
            await hold.acquire()  # the audit waits until the report is in
            original = found.auditor._do

            async def later(job: Any) -> None:
                async with hold:
                    await original(job)

            found.auditor._do = later  # type: ignore[method-assign]
        hit = await proxy.chat(chat_body(SAME_WORDS))
        if first == "audit":
            await found.auditor.drain()
        reported = await feedback(proxy, {"entry_id": hit.headers["x-cache-entry-id"]}, "sk-test-a")
        assert reported.status_code == 200
        if first == "report":
            hold.release()
        group = await settle(proxy)
    assert group["evidence"] == {"compared": 1, "different": 1}
