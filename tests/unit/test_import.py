"""``POST /cache/import``: answers given as JSON Lines become entries a request then hits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import respx

from proxy.semantic.embedders import HashEmbedder
from proxy.settings_checks import MAX_TTL_SECONDS
from tests.unit.harness import FakeClock, chat_body, completion, make_proxy

pytestmark = pytest.mark.anyio

TOKEN = "admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def row(text: str, answer: str, **fields: Any) -> bytes:
    return orjson.dumps({"request": chat_body(text), "response": completion(answer), **fields})


async def test_imported_answers_are_served_exactly_semantically_and_per_tenant(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion("upstream"))
    body = b"\n".join(
        [
            row("What is the capital of France?", "Paris (imported)", api_key="sk-a"),
            row("How many legs has a spider?", "Eight (imported)", api_key="sk-a"),
            b"",
        ]
    )
    async with make_proxy(upstream_mock, clock, embedder=HashEmbedder(64), admin_token=TOKEN) as p:
        result = (await p.client.post("/cache/import", content=body, headers=ADMIN)).json()
        exact = await p.chat(
            chat_body("What is the capital of France?"), authorization="Bearer sk-a"
        )
        reworded = await p.chat(
            chat_body("the capital of France is what?"), authorization="Bearer sk-a"
        )
        other = await p.chat(
            chat_body("What is the capital of France?"), authorization="Bearer sk-b"
        )
    assert result == {"imported": 2, "failed": 0, "expired": 0, "lines": 2, "errors": []}
    assert exact.headers["x-cache"] == "HIT"
    assert "Paris (imported)" in exact.text
    assert reworded.headers["x-cache-lookup"] == "semantic"
    assert other.headers["x-cache"] == "MISS"  # imported for sk-a only
    assert route.call_count == 1


async def test_bad_lines_are_counted_with_their_reason_and_the_rest_imported(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    incomplete = completion("cut")
    incomplete["choices"][0]["finish_reason"] = "length"
    lines = [
        b"not json",
        orjson.dumps({"request": chat_body("q1")}),
        orjson.dumps({"request": chat_body("q2"), "response": incomplete}),
        row("q3", "fine"),
        row("q4", "fine", ttl_seconds=0),
    ]
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        response = await p.client.post("/cache/import", content=b"\n".join(lines), headers=ADMIN)
    result = response.json()
    assert (result["imported"], result["failed"], result["lines"]) == (1, 4, 5)
    assert result["errors"][0].startswith("line 1: the request body is not valid JSON")
    assert result["errors"][1] == "line 2: 'response' is required"
    assert "not a complete chat completion" in result["errors"][2]
    assert "ttl_seconds" in result["errors"][3]


async def test_import_needs_the_admin_token(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    route = upstream_mock.post("/chat/completions").respond(200, json=completion("upstream"))
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        denied = await p.client.post("/cache/import", content=row("q", "a"))
        assert denied.status_code == 401
        assert (await p.chat(chat_body("q"))).headers["x-cache"] == "MISS"  # nothing was stored
    assert route.call_count == 1
    async with make_proxy(upstream_mock, clock) as off:
        assert (await off.client.post("/cache/import", content=row("q", "a"))).status_code == 403


async def test_an_entry_restored_from_an_export_is_found_by_its_id(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """export, flush (or a new store), import: the entries hit again, and the id a hit carries
    in X-Cache-Entry-Id (and `semcache ls` lists) must work with `show`, `rm` and feedback.
    The restore wrote the entry without the ref an id is looked up by: all three said 404."""
    route = upstream_mock.post("/chat/completions").respond(200, json=completion("Paris."))
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        await p.chat(chat_body("What is the capital of France?"))
        await p.chat(chat_body("How many legs has a spider?"))
        dump = (await p.client.get("/cache/export", headers=ADMIN)).content
        assert (await p.client.delete("/cache", headers=ADMIN)).status_code == 200
        result = (await p.client.post("/cache/import", content=dump, headers=ADMIN)).json()
        france = await p.chat(chat_body("What is the capital of France?"))
        spider = await p.chat(chat_body("How many legs has a spider?"))
        france_id = france.headers["x-cache-entry-id"]
        shown = await p.client.get(f"/cache/entries/{france_id}", headers=ADMIN)
        reported = await p.client.post(
            "/cache/feedback",
            json={"entry_id": spider.headers["x-cache-entry-id"], "scope": "all"},
            headers={"authorization": "Bearer sk-test-a"},  # the entry's own tenant
        )
        removed = await p.client.delete(f"/cache/entries/{france_id}", headers=ADMIN)
        after = [
            (await p.chat(chat_body(text))).headers["x-cache"]
            for text in ("What is the capital of France?", "How many legs has a spider?")
        ]
    assert (result["imported"], result["failed"]) == (2, 0)
    assert (france.headers["x-cache"], spider.headers["x-cache"]) == ("HIT", "HIT")
    assert shown.status_code == 200, shown.text
    assert shown.json()["id"] == france_id
    assert reported.status_code == 200, reported.text
    assert removed.json() == {"removed": 1}, removed.text
    assert after == ["MISS", "MISS"]  # both gone: asked upstream again
    assert route.call_count == 4


async def test_a_restored_entry_lives_no_longer_than_a_request_may_ask(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A hand-edited export line's ``ttl_seconds`` (``1e20``) is held to the 10-year cap of
    ``X-Cache-TTL``: Redis refused such an expiry, so the line failed there and not here."""
    upstream_mock.post("/chat/completions").respond(200, json=completion("Paris."))
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        await p.chat(chat_body("What is the capital of France?"))
        line = orjson.loads((await p.client.get("/cache/export", headers=ADMIN)).content)
        assert (await p.client.delete("/cache", headers=ADMIN)).status_code == 200
        line.pop("age_seconds", None)
        edited = orjson.dumps({**line, "ttl_seconds": 1e20})
        result = (await p.client.post("/cache/import", content=edited, headers=ADMIN)).json()
        listed = (await p.client.get("/cache/entries", headers=ADMIN)).json()["entries"]
    assert (result["imported"], result["failed"]) == (1, 0)
    assert [e["ttl_seconds"] for e in listed] == [float(MAX_TTL_SECONDS)]


async def test_a_restored_entry_follows_a_delete_at_the_upstream(
    upstream_mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A stored chat completion's entry, exported and imported back, still goes when the client
    deletes that completion at the upstream (``DELETE /v1/chat/completions/{id}``): the restore
    wrote no ref by that id, so the deleted answer kept being served. A failed delete (404: the
    upstream kept nothing by that id) removes nothing."""
    made = upstream_mock.post("/chat/completions").respond(200, json=completion("Paris."))
    upstream_mock.delete("/chat/completions/chatcmpl-1").respond(
        200, json={"id": "chatcmpl-1", "object": "chat.completion.deleted", "deleted": True}
    )
    upstream_mock.delete("/chat/completions/chatcmpl-9").respond(404, json={"error": {}})
    auth = {"authorization": "Bearer sk-test-a"}
    kept = chat_body("What is the capital of France?") | {"store": True}
    async with make_proxy(upstream_mock, clock, admin_token=TOKEN) as p:
        first = await p.client.post("/v1/chat/completions", json=kept, headers=auth)
        dump = (await p.client.get("/cache/export", headers=ADMIN)).content
        assert (await p.client.delete("/cache", headers=ADMIN)).status_code == 200
        result = (await p.client.post("/cache/import", content=dump, headers=ADMIN)).json()
        restored = await p.client.post("/v1/chat/completions", json=kept, headers=auth)
        other = await p.client.delete("/v1/chat/completions/chatcmpl-9", headers=auth)
        still = await p.client.post("/v1/chat/completions", json=kept, headers=auth)
        gone = await p.client.delete("/v1/chat/completions/chatcmpl-1", headers=auth)
        again = await p.client.post("/v1/chat/completions", json=kept, headers=auth)
    assert first.json()["id"] == "chatcmpl-1"
    assert (result["imported"], result["failed"]) == (1, 0)
    assert (restored.headers["x-cache"], other.status_code) == ("HIT", 404)
    assert (still.headers["x-cache"], gone.status_code) == ("HIT", 200)
    assert again.headers["x-cache"] == "MISS"
    assert made.call_count == 2
