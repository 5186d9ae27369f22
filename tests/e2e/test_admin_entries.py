"""The admin API's entries and their commands (``ls``, ``show``, ``rm``, ``export``) against a
running ``semcache serve``, on the memory store and on a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.support.admin_cli import TOKEN, chat, cli
from tests.support.fake_upstream import FakeUpstream
from tests.support.proxy_process import ProxyProcess

ADMIN = {"authorization": f"Bearer {TOKEN}"}


def entries(proxy: ProxyProcess, **params: str) -> list[dict[str, object]]:
    """Every page of GET /cache/entries."""
    headers = dict(ADMIN)
    if "tenant" in params:
        headers["x-cache-tenant-key"] = params.pop("tenant")
    found: list[dict[str, object]] = []
    cursor = ""
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(
            f"{proxy.url}/cache/entries", params=query, headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["entries"]
        if page["next_cursor"] is None:
            return found
        cursor = page["next_cursor"]


def test_list_filter_page_show_and_remove(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    for i in range(7):
        chat(admin_proxy, f"{question} list {i}", "sk-ent-a")
    chat(admin_proxy, f"{question} other tenant", "sk-ent-b")
    mine = entries(admin_proxy, tenant="sk-ent-a", limit="3")  # pages of three
    assert len(mine) == 7
    assert {e["prompt"] for e in mine} == {f"{question} list {i}" for i in range(7)}
    assert all(e["model"] == "gpt-test" and e["route"] == "chat" for e in mine)
    # Another tenant's list never shows them, nor does the first tenant's show the other's.
    theirs = entries(admin_proxy, tenant="sk-ent-b")
    assert [e["prompt"] for e in theirs] == [f"{question} other tenant"]
    assert entries(admin_proxy, tenant="sk-ent-a", model="gpt-other") == []
    assert entries(admin_proxy, tenant="sk-ent-a", newer_than="3600") != []
    assert entries(admin_proxy, tenant="sk-ent-a", older_than="3600") == []

    one = mine[0]
    shown = httpx.get(f"{admin_proxy.url}/cache/entries/{one['id']}", headers=ADMIN, timeout=10)
    assert shown.status_code == 200
    assert shown.json()["answer_preview"].startswith("answer ")
    assert 0 < shown.json()["ttl_seconds"] <= 7 * 86400  # the default TTL

    calls = fake_upstream.calls("/v1/chat/completions")
    removed = httpx.delete(
        f"{admin_proxy.url}/cache/entries/{one['id']}", headers=ADMIN, timeout=10
    )
    assert removed.json() == {"removed": 1}
    assert chat(admin_proxy, str(one["prompt"]), "sk-ent-a").headers["x-cache"] == "MISS"
    assert fake_upstream.calls("/v1/chat/completions") == calls + 1
    gone = httpx.get(f"{admin_proxy.url}/cache/entries/{one['id']}", headers=ADMIN, timeout=10)
    assert gone.status_code == 404


def test_commands_ls_show_rm_and_export_then_restore(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str, tmp_path: Path
) -> None:
    url = admin_proxy.url
    for i in range(3):
        chat(admin_proxy, f"{question} cli {i}", "sk-ent-c")
    listed = cli("ls", "--url", url, "--key", "sk-ent-c", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["prompt"] for r in rows) == [f"{question} cli {i}" for i in range(3)]
    readable = cli("ls", "--url", url, "--key", "sk-ent-c")
    assert f"{question} cli 0"[:40] in readable.stdout
    # A page of about two (Redis's SCAN may give a third), then the rest from the cursor the
    # first page printed, if any.
    first = cli("ls", "--url", url, "--key", "sk-ent-c", "--limit", "2", "--json")
    pages = first.stdout
    for more in [line for line in first.stderr.splitlines() if line.startswith("(more:")]:
        cursor = more.split("--cursor ", 1)[1].rstrip(")").strip("'")
        pages += cli("ls", "--url", url, "--key", "sk-ent-c", "--all", "--json",
                     "--cursor", cursor).stdout  # fmt: skip
    paged = [orjson.loads(line)["id"] for line in pages.splitlines()]
    assert sorted(paged) == sorted(r["id"] for r in rows)

    shown = cli("show", rows[0]["id"], "--url", url)
    assert shown.returncode == 0
    assert orjson.loads(shown.stdout)["id"] == rows[0]["id"]

    dump = tmp_path / "export.jsonl"
    exported = cli("export", str(dump), "--url", url, "--key", "sk-ent-c", "--no-progress")
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(line) for line in dump.read_bytes().splitlines()]
    assert len(lines) == 3
    assert all(line["entry"]["body_encoding"] == "json" for line in lines)

    cleared = cli("rm", "--url", url, "--key", "sk-ent-c", "--yes")
    assert cleared.stdout.strip() == "removed 3 entries"
    assert cli("ls", "--url", url, "--key", "sk-ent-c").stdout == ""
    no_filter = cli("rm", "--url", url, "--yes")
    assert no_filter.returncode != 0  # refuses to remove everything without a filter
    # Their refs too (rm leaves them to expire): the restore below is into an empty store.
    assert cli("flush", "--url", url, "--yes").returncode == 0

    restored = cli("import", str(dump), "--url", url, "--no-progress")
    assert restored.stdout.strip() == "import: 3 lines: 3 stored, 0 failed"
    calls = fake_upstream.calls("/v1/chat/completions")
    hit = chat(admin_proxy, f"{question} cli 1", "sk-ent-c")
    assert hit.headers["x-cache"] == "HIT"
    assert fake_upstream.calls("/v1/chat/completions") == calls
    # A restored entry is found by its id (the import writes its ref): show, then rm.
    restored_id = hit.headers["x-cache-entry-id"]
    shown = cli("show", restored_id, "--url", url)
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["id"] == restored_id
    assert cli("rm", restored_id, "--url", url).stdout.strip() == "removed 1 entries"
    assert chat(admin_proxy, f"{question} cli 1", "sk-ent-c").headers["x-cache"] == "MISS"


def test_entry_routes_need_the_admin_token(admin_proxy: ProxyProcess) -> None:
    url = admin_proxy.url
    for method, path in [
        ("GET", "/cache/entries"),
        ("GET", "/cache/entries/0123456789abcdef"),
        ("DELETE", "/cache/entries/0123456789abcdef"),
        ("DELETE", "/cache/entries?model=x"),
        ("GET", "/cache/export"),
    ]:
        response = httpx.request(method, f"{url}{path}", timeout=10)
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["type"]
    bad = httpx.get(f"{url}/cache/entries", params={"limit": "0"}, headers=ADMIN, timeout=10)
    assert bad.status_code == 400


def test_dashboard_data_and_readiness_on_each_store(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    for _ in range(2):
        chat(admin_proxy, f"{question} dashboard", "sk-ent-d")
    data = httpx.get(f"{admin_proxy.url}/dashboard/data", headers=ADMIN, timeout=10)
    assert data.status_code == 200
    body = data.json()
    assert body["stats"]["hits"] >= 1
    assert body["now"]["hit_count"] >= 1
    assert body["models"]["gpt-test"]["hits"] >= 1
    assert httpx.get(f"{admin_proxy.url}/dashboard/data", timeout=10).status_code == 401
    ready = httpx.get(f"{admin_proxy.url}/readyz", timeout=10).json()
    assert (ready["status"], ready["upstream"]["status"], ready["store"]) == ("ready", "ok", "ok")


def test_entries_filter_by_the_lookups_that_can_find_them(
    admin_proxy: ProxyProcess, question: str
) -> None:
    chat(admin_proxy, f"{question} semantic", "sk-ent-e")  # indexed: hash:64 embeds it
    long_prompt = f"{question} " + "x " * 3000  # too long to embed: exact lookups only
    chat(admin_proxy, long_prompt, "sk-ent-e")
    semantic = entries(admin_proxy, tenant="sk-ent-e", lookup="semantic")
    exact = entries(admin_proxy, tenant="sk-ent-e", lookup="exact")
    assert [e["prompt"] for e in semantic] == [f"{question} semantic"]
    assert len(exact) == 1
    assert str(exact[0]["prompt"]).startswith(question)
    assert exact[0]["lookup"] == "exact"
    bad = httpx.get(
        f"{admin_proxy.url}/cache/entries", params={"lookup": "fuzzy"}, headers=ADMIN, timeout=10
    )
    assert bad.status_code == 400


def test_every_cached_route_s_entries_are_listed_shown_and_can_be_reported(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    """Completions, Responses and Ollama entries, as chat ones: listed under their route, shown
    by the X-Cache-Entry-Id a hit carries, and reported by their own key (before, only
    chat entries could be; a Responses entry was not even listed)."""
    key = "sk-ent-routes"
    auth = {"authorization": f"Bearer {key}"}
    asks = {
        "completions": ("/v1/completions", {"model": "gpt-test", "prompt": f"{question} c"}),
        "responses": ("/v1/responses", {"model": "gpt-test", "input": f"{question} r"}),
        "ollama": ("/api/chat", {"model": "m", "stream": False,
                                 "messages": [{"role": "user", "content": f"{question} o"}]}),
    }  # fmt: skip
    for route, (path, body) in asks.items():
        first = httpx.post(f"{admin_proxy.url}{path}", json=body, headers=auth, timeout=30)
        hit = httpx.post(f"{admin_proxy.url}{path}", json=body, headers=auth, timeout=30)
        assert (first.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT"), route
        entry_id = hit.headers["x-cache-entry-id"]
        listed = entries(admin_proxy, tenant=key, route=route)
        assert entry_id in [e["id"] for e in listed], route
        shown = httpx.get(f"{admin_proxy.url}/cache/entries/{entry_id}", headers=ADMIN, timeout=10)
        assert (shown.status_code, shown.json()["route"]) == (200, route)
        other = httpx.post(
            f"{admin_proxy.url}/cache/feedback",
            json={"entry_id": entry_id, "scope": "all"},
            headers={"authorization": "Bearer sk-someone-else"},
            timeout=10,
        )
        assert other.status_code == 404  # another tenant's entry: as if unknown
        mine = httpx.post(
            f"{admin_proxy.url}/cache/feedback",
            json={"entry_id": entry_id, "scope": "all"},
            headers=auth,
            timeout=10,
        )
        assert mine.status_code == 200, (route, mine.text)
        again = httpx.post(f"{admin_proxy.url}{path}", json=body, headers=auth, timeout=30)
        assert again.headers["x-cache"] == "MISS", route  # reported wrong, removed


def test_an_entry_id_is_one_path_segment_never_another_route(
    admin_proxy: ProxyProcess, question: str
) -> None:
    """``semcache rm ..`` sent ``DELETE /cache`` (the HTTP client resolved the dot segment):
    every entry gone, without the confirmation ``flush`` asks for."""
    url = admin_proxy.url
    chat(admin_proxy, f"{question} dots", "sk-ent-dots")
    for args in (["rm", ".."], ["rm", "../../cache"], ["show", ".."], ["rm", "x?route=chat"]):
        result = cli(*args, "--url", url)
        assert result.returncode == 1, (args, result.stdout)
        assert "404" in result.stderr, (args, result.stderr)
    assert chat(admin_proxy, f"{question} dots", "sk-ent-dots").headers["x-cache"] == "HIT"


def test_a_restored_entry_is_not_listed_as_semantic(
    admin_proxy: ProxyProcess, question: str, tmp_path: Path
) -> None:
    """An export's entries come back without their vectors (README): semantic lookups cannot
    find them, so ``--lookup semantic`` must not list them as if they could."""
    url = admin_proxy.url
    chat(admin_proxy, f"{question} restored", "sk-ent-restore")
    listed = cli("ls", "--url", url, "--key", "sk-ent-restore", "--json")
    [before] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert before["lookup"] == "semantic"
    dump = tmp_path / "export.jsonl"
    assert cli("export", str(dump), "--url", url, "--key", "sk-ent-restore").returncode == 0
    assert cli("flush", "--url", url, "--yes").returncode == 0
    restored = cli("import", str(dump), "--url", url, "--no-progress")
    assert restored.returncode == 0, restored.stderr
    semantic = cli("ls", "--url", url, "--key", "sk-ent-restore", "--lookup", "semantic")
    assert semantic.stdout == ""
    exact = cli("ls", "--url", url, "--key", "sk-ent-restore", "--lookup", "exact", "--json")
    [after] = [orjson.loads(line) for line in exact.stdout.splitlines()]
    assert after["id"] == before["id"]
    assert after["lookup"] == "exact"


def test_a_restored_entry_expires_when_it_would_have(
    admin_proxy: ProxyProcess, question: str, tmp_path: Path
) -> None:
    """An export's ttl_seconds is what was left at the export: the import restarted that count,
    so an entry restored after its lifetime ended was served again (HIT at an age past its
    X-Cache-TTL), and every export-import cycle lengthened an entry's life."""
    url = admin_proxy.url
    text = f"{question} short-lived"
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": text}]}
    auth = {"authorization": "Bearer sk-ent-ttl"}
    first = httpx.post(
        f"{url}/v1/chat/completions", json=body, headers=auth | {"x-cache-ttl": "2"}, timeout=30
    )
    assert first.headers["x-cache"] == "MISS"
    chat(admin_proxy, f"{question} long-lived", "sk-ent-ttl")
    dump = tmp_path / "export.jsonl"
    assert cli("export", str(dump), "--url", url, "--key", "sk-ent-ttl").returncode == 0
    assert len(dump.read_bytes().splitlines()) == 2
    time.sleep(3)
    assert cli("flush", "--url", url, "--yes").returncode == 0
    restored = cli("import", str(dump), "--url", url, "--no-progress")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.strip() == (
        "import: 2 lines: 1 stored, 0 failed, 1 expired since the export"
    )
    again = httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=30)
    assert again.headers["x-cache"] == "MISS"
    listed = cli("ls", "--url", url, "--key", "sk-ent-ttl", "--json")
    [kept] = [orjson.loads(line) for line in listed.stdout.splitlines() if "long-lived" in line]
    assert kept["ttl_seconds"] < 604800 - 3  # the time since the export counted
