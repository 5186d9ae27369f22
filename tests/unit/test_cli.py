"""``semcache serve`` flags and its refusal to start with an embedder that cannot load."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from proxy import cli
from proxy.settings import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What uvicorn would have been asked to serve (nothing is served)."""
    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    for name in [n for n in os.environ if n.startswith("SEMCACHE_")]:
        monkeypatch.delenv(name)
    return calls


def _serve(*args: str) -> Any:
    return CliRunner().invoke(cli.main, ["serve", *args])


def test_boolean_settings_are_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []
    monkeypatch.setattr(cli, "run", seen.append)
    assert _serve("--shared-cache").exit_code == 0
    assert _serve().exit_code == 0
    monkeypatch.setenv("SEMCACHE_SHARED_CACHE", "true")
    assert _serve("--no-shared-cache").exit_code == 0
    assert [s.shared_cache for s in seen] == [True, False, False]


def test_a_local_embedder_that_cannot_load_stops_serve_with_the_fix(
    started: list[Any], tmp_path: Path
) -> None:
    result = _serve("--embed-model", f"local:{tmp_path / 'no-such-model'}")
    assert result.exit_code == 2
    assert started == []
    line = result.output.strip()
    assert "\n" not in line
    assert line.startswith("semcache: cannot load local model")
    assert "SEMCACHE_EMBED_BEST_EFFORT=true" in line


def test_without_the_local_extra_the_message_names_it(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    result = _serve("--embed-model", "local:some-model-not-loaded-elsewhere")
    assert result.exit_code == 2
    assert "pip install -e '.[local]'" in result.output
    assert started == []


def test_best_effort_starts_exact_only(started: list[Any], tmp_path: Path) -> None:
    result = _serve("--embed-model", f"local:{tmp_path / 'missing'}", "--embed-best-effort")
    assert result.exit_code == 0, result.output
    assert len(started) == 1


def test_serve_writes_its_address_for_the_probe(started: list[Any], tmp_path: Path) -> None:
    address = tmp_path / "semcache.address"
    result = _serve("--host", "0.0.0.0", "--port", "9191", "--address-file", str(address))
    assert result.exit_code == 0, result.output
    assert address.read_text().strip() == "http://127.0.0.1:9191"
    assert started[0][1]["port"] == 9191


def test_probe_of_nothing_listening_fails(tmp_path: Path) -> None:
    address = tmp_path / "semcache.address"
    address.write_text("http://127.0.0.1:9\n")  # discard port: nothing answers
    result = CliRunner().invoke(cli.main, ["probe"], env={"SEMCACHE_ADDRESS_FILE": str(address)})
    assert result.exit_code == 1
    assert "http://127.0.0.1:9" in result.output


BAD_URLS = [
    (["--upstream", "http://localhost:99999/v1"], "SEMCACHE_UPSTREAM_URL has a bad port"),
    (["--upstream", "http://localhost:8O80/v1"], "SEMCACHE_UPSTREAM_URL has a bad port"),
    (["--ollama-url", "http://localhost:0"], "SEMCACHE_OLLAMA_URL has a bad port"),
    (["--embed-url", "http://[::1/v1"], "SEMCACHE_EMBED_URL is not a valid URL"),
    (["--redis-url", "redis://localhost:port/0"], "SEMCACHE_REDIS_URL is not a valid Redis URL"),
    (["--redis-url", "redis+sentinel://sentinel-a/mymaster"], "SEMCACHE_REDIS_URL: each sentinel"),
    (
        ["--redis-url", "redis://localhost:6379/0?socket_timeout=abc"],
        "SEMCACHE_REDIS_URL is not a valid Redis URL: Invalid value for 'socket_timeout'",
    ),
    (["--redis-url", "redis://h:7000/1", "--redis-cluster"], "SEMCACHE_REDIS_CLUSTER: a Redis"),
    # Read only when the store is built (redis-py's TLS options): caught around create_app.
    (["--redis-url", "rediss://h:6380/0?ssl_cert_reqs=bogus"], "SEMCACHE_REDIS_URL: Invalid SSL"),
]


@pytest.mark.parametrize(("args", "message"), BAD_URLS)
@pytest.mark.parametrize("command", ["serve", "doctor"])
def test_a_bad_url_stops_with_one_line_not_a_traceback(
    started: list[Any], command: str, args: list[str], message: str
) -> None:
    """Must NOT start (and answer every request with a 500) nor die with a traceback: each
    of these passed the settings' scheme check."""
    result = CliRunner().invoke(cli.main, [command, *args])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"semcache: {message}"), result.output
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    assert started == []


def test_ls_shows_a_model_s_control_characters_escaped() -> None:
    """A client's model name ``m\\n<fake line>`` (or a terminal escape) was printed raw by
    ``semcache ls``: any caller could write lines into an operator's listing."""
    from proxy.admin.display import entry_line

    row = {
        "id": "0123456789abcdef", "route": "chat", "model": "m\nfeedfacefeedface  chat \x1b[2J",
        "age_seconds": 1.0, "ttl_seconds": 60.0, "hits": 0, "prompt": "hi",
    }  # fmt: skip
    line = entry_line(row)
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.startswith("0123456789abcdef  chat       m\\nfeedface")
    plain = entry_line(row | {"model": "gpt-4o-mini"})
    assert "gpt-4o-mini" in plain
