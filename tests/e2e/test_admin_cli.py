"""``semcache stats | flush | explain`` against a running ``semcache serve``, on both stores."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.admin_cli import TOKEN, chat, cli
from tests.support.fake_upstream import FakeUpstream
from tests.support.ports import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer


def test_stats_explain_and_flush(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, question: str
) -> None:
    url = admin_proxy.url
    assert chat(admin_proxy, question, "sk-cli-a").headers["x-cache"] == "MISS"
    assert chat(admin_proxy, question, "sk-cli-a").headers["x-cache"] == "HIT"
    calls = fake_upstream.calls("/v1/chat/completions")

    stats = cli("stats", "--url", url, "--json")
    assert stats.returncode == 0, stats.stderr
    figures = orjson.loads(stats.stdout)
    assert figures["hits"] >= 1
    readable = cli("stats", "--url", url)
    assert "hit rate" in readable.stdout

    request = orjson.dumps(
        {"model": "gpt-test", "messages": [{"role": "user", "content": question}]}
    )
    hit = cli("explain", "--url", url, "--key", "sk-cli-a", "--json", stdin=request)
    assert hit.returncode == 0, hit.stderr
    assert orjson.loads(hit.stdout)["decision"] == "HIT"
    other = cli("explain", "--url", url, "--key", "sk-cli-b", stdin=request)
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines()[0] == "MISS: no-entry"  # another tenant sees nothing
    assert question not in other.stdout
    stale = cli(
        "explain", "--url", url, "--key", "sk-cli-a", "--header", "Cache-Control: no-cache",
        stdin=request,
    )  # fmt: skip
    assert stale.stdout.splitlines()[0] == "MISS: no-cache"
    assert fake_upstream.calls("/v1/chat/completions") == calls  # explaining sends nothing

    flushed = cli("flush", "--url", url, "--yes")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.startswith("removed ")
    assert chat(admin_proxy, question, "sk-cli-a").headers["x-cache"] == "MISS"
    assert fake_upstream.calls("/v1/chat/completions") == calls + 1


def test_without_the_token_each_command_fails_in_one_line(admin_proxy: ProxyProcess) -> None:
    for args in (["stats"], ["flush", "--yes"], ["explain"]):
        result = cli(*args, "--url", admin_proxy.url, token=None, stdin=b'{"model": "m"}')
        assert result.returncode == 1, args
        [line] = result.stderr.splitlines()
        assert "admin token" in line
    wrong = cli("stats", "--url", admin_proxy.url, "--token", "wrong-token")
    assert wrong.returncode == 1
    assert TOKEN not in wrong.stderr
    assert "wrong-token" not in wrong.stderr


def test_an_unreachable_proxy_is_one_line() -> None:
    result = cli("stats", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("semcache: cannot reach http://127.0.0.1:")


def test_warm_caches_a_file_of_requests_with_progress(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, tmp_path: Path, question: str
) -> None:
    lines = [
        orjson.dumps(
            {
                "model": "gpt-test",
                "messages": [{"role": "user", "content": f"{question} #{i % 150}"}],
            }
        )
        for i in range(200)
    ]  # 150 distinct questions, 50 of them twice
    faq = tmp_path / "faq.jsonl"
    faq.write_bytes(b"\n".join(lines) + b"\n")
    before = fake_upstream.calls("/v1/chat/completions")

    first = cli(
        "warm", str(faq), "--url", admin_proxy.url, "--key", "sk-cli-warm", "--concurrency", "8"
    )
    assert first.returncode == 0, first.stderr
    assert "200/200" in first.stderr  # the progress bar reached the end
    assert first.stdout.startswith("warm: 200 requests in ")
    calls = fake_upstream.calls("/v1/chat/completions") - before
    # A duplicate sent while its twin was in flight is coalesced, after it a hit: never a call.
    assert calls == 150
    assert "150 answered upstream and stored" in first.stdout

    again = cli("warm", str(faq), "--url", admin_proxy.url, "--key", "sk-cli-warm", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 answered upstream and stored, 200 already cached" in again.stdout
    assert fake_upstream.calls("/v1/chat/completions") - before == 150
    # Another tenant's warm-up is its own.
    assert chat(admin_proxy, f"{question} #1", "sk-cli-other").headers["x-cache"] == "MISS"


def test_warm_reports_bad_lines_and_exits_1(admin_proxy: ProxyProcess, tmp_path: Path) -> None:
    faq = tmp_path / "bad.jsonl"
    faq.write_bytes(b'{"model": "gpt-test", "messages": []}\nnot json\n')
    result = cli(
        "warm", str(faq), "--url", admin_proxy.url, "--key", "sk-cli-warm", "--no-progress"
    )
    assert result.returncode == 1
    assert "2 failed" in result.stdout
    assert "line 1: 400" in result.stderr
    assert "line 2: 400" in result.stderr


def test_doctor_checks_each_part(fake_upstream: FakeUpstream, redis_server: RedisServer) -> None:
    good = cli(
        "doctor", "--upstream", fake_upstream.url, "--redis-url", redis_server.url,
        "--embed-model", "hash:64",
    )  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok   settings",
        "ok   upstream",
        "ok   store",
        "ok   semantic matching",
        "ok   embedder",
    ]
    assert "vector sets available" in good.stdout
    assert fake_upstream.calls("/v1/chat/completions") == 0  # nothing but GET /models

    dead = f"http://127.0.0.1:{free_port()}/v1"
    bad = cli(
        "doctor", "--upstream", dead, "--redis-url", f"redis://:secret-pw@127.0.0.1:{free_port()}"
    )
    assert bad.returncode == 1
    assert "FAIL upstream: upstream unreachable: " in bad.stdout
    assert "unreachable: upstream unreachable" not in bad.stdout  # said once
    assert "FAIL store: redis: unreachable" in bad.stdout
    assert "secret-pw" not in bad.stdout + bad.stderr


def test_import_stores_a_file_of_answers(
    admin_proxy: ProxyProcess, fake_upstream: FakeUpstream, tmp_path: Path, question: str
) -> None:
    rows = []
    for i in range(300):
        request = {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": f"{question} FAQ {i}"}],
        }
        response = {
            "id": f"chatcmpl-faq-{i}",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"FAQ answer {i}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        }
        rows.append(
            orjson.dumps({"request": request, "response": response, "api_key": "sk-cli-faq"})
        )
    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(b"\n".join(rows) + b"\n")
    before = fake_upstream.calls("/v1/chat/completions")
    result = cli("import", str(answers), "--url", admin_proxy.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "import: 300 lines: 300 stored, 0 failed"
    hit = chat(admin_proxy, f"{question} FAQ 123", "sk-cli-faq")
    assert hit.headers["x-cache"] == "HIT"
    assert hit.json()["choices"][0]["message"]["content"] == "FAQ answer 123"
    assert chat(admin_proxy, f"{question} FAQ 123", "sk-cli-stranger").headers["x-cache"] == "MISS"
    assert fake_upstream.calls("/v1/chat/completions") == before + 1
