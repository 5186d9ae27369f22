from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import main
from proxy.errors import SettingsError
from proxy.settings import Settings, setting_fields

EXAMPLE = Path(__file__).parents[2] / "config" / "semcache.example.toml"


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.upstream_url == "http://127.0.0.1:11434/v1"
    assert s.redis_url is None
    assert s.ttl_seconds == 7 * 24 * 3600


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "semcache.toml"
    config.write_text(
        'port = 7000\nttl = 60\nupstream_url = "http://file:1/v1"\nmax_temperature = 1\n'
    )
    s = Settings.load(
        flags={"port": 9000, "upstream_url": None},
        environ={"SEMCACHE_PORT": "8000", "SEMCACHE_TTL": "120"},
        config_path=config,
    )
    assert s.port == 9000
    assert s.ttl_seconds == 120
    assert s.upstream_url == "http://file:1/v1"
    assert s.max_temperature == 1.0


def test_config_path_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("memory_max_entries = 5\n")
    s = Settings.load(environ={"SEMCACHE_CONFIG": str(config)})
    assert s.memory_max_entries == 5


def test_example_config_documents_every_setting_and_loads() -> None:
    text = EXAMPLE.read_text()
    for f in setting_fields():
        assert f"# {f.metadata['name']} = " in text, f.metadata["name"]
    assert Settings.load(config_path=EXAMPLE) == Settings()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SEMCACHE_PORT": "http"}, "SEMCACHE_PORT='http' is not a valid int"),
        ({"SEMCACHE_PORT": "70000"}, "SEMCACHE_PORT must be between 1 and 65535"),
        ({"SEMCACHE_UPSTREAM_URL": "localhost:11434"}, "SEMCACHE_UPSTREAM_URL must be an http"),
        ({"SEMCACHE_UPSTREAM_URL": "http://h:99999/v1"}, "SEMCACHE_UPSTREAM_URL has a bad port"),
        ({"SEMCACHE_UPSTREAM_URL": "http://h:8O80/v1"}, "SEMCACHE_UPSTREAM_URL has a bad port"),
        ({"SEMCACHE_UPSTREAM_URL": "http://:8080/v1"}, "SEMCACHE_UPSTREAM_URL must name a host"),
        ({"SEMCACHE_EMBED_URL": "https://e:-1/v1"}, "SEMCACHE_EMBED_URL has a bad port"),
        ({"SEMCACHE_REDIS_URL": "redis://h:port/0"}, "SEMCACHE_REDIS_URL is not a valid Redis"),
        ({"SEMCACHE_REDIS_URL": "http://x"}, "SEMCACHE_REDIS_URL must start with redis://"),
        ({"SEMCACHE_TTL": "0"}, "SEMCACHE_TTL must be a positive integer"),
        # Above X-Cache-TTL's and an import's 10-year cap: every import line that gave no
        # ttl_seconds was refused with "'ttl_seconds' must be 1 to 315360000".
        ({"SEMCACHE_TTL": "400000000"}, "SEMCACHE_TTL must be between 1 and 315360000"),
        ({"SEMCACHE_UPSTREAM_TIMEOUT": "nan"}, "SEMCACHE_UPSTREAM_TIMEOUT must be a positive"),
        ({"SEMCACHE_MAX_TEMPERATURE": "-1"}, "SEMCACHE_MAX_TEMPERATURE must be >= 0"),
        ({"SEMCACHE_LOG_LEVEL": "loud"}, "SEMCACHE_LOG_LEVEL must be one of"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(")):
        Settings.load(environ=environ)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("prot = 1\n", "unknown setting 'prot'"),
        ('port = "80"\n', "port must be a int"),
        ("port = [\n", "config file"),
    ],
)
def test_bad_config_file(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=message):
        Settings.load(config_path=config)


def test_missing_config_file() -> None:
    with pytest.raises(SettingsError, match="No such file"):
        Settings.load(config_path="/nonexistent/semcache.toml")


def test_empty_optional_variable_means_unset() -> None:
    assert Settings.load(environ={"SEMCACHE_REDIS_URL": ""}).redis_url is None


@pytest.mark.parametrize(
    ("variable", "suggested"),
    [
        ("SEMCACHE_UPSTREAM", "SEMCACHE_UPSTREAM_URL"),  # the flag is --upstream
        ("SEMCACHE_TTL_SECONDS", "SEMCACHE_TTL"),  # the Settings attribute is ttl_seconds
        ("SEMCACHE_REDIS", "SEMCACHE_REDIS_URL"),
        ("SEMCACHE_ADMIN_TOKENS", "SEMCACHE_ADMIN_TOKEN"),
        ("SEMCACHE_CONFG", "SEMCACHE_CONFIG"),
    ],
)
def test_a_misspelled_variable_is_an_error_as_in_the_config_file(
    variable: str, suggested: str
) -> None:
    """Must NOT fall back to the default without a word (the default upstream is a local
    Ollama): the TOML file refuses an unknown key, and so do the variables."""
    with pytest.raises(SettingsError) as raised:
        Settings.load(environ={variable: "https://api.openai.com/v1"})
    assert str(raised.value) == f"{variable} is not a semcache setting (did you mean {suggested}?)"
    with pytest.raises(SettingsError, match=r"^SEMCACHE_XYZZY is not a semcache setting$"):
        Settings.load(environ={"SEMCACHE_XYZZY": "1"})


def test_the_variables_the_project_sets_and_kubernetes_service_links_are_accepted() -> None:
    """The image's, compose's and the env example's variables are settings; Kubernetes puts
    ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT=tcp://...`` and the like in every pod for each
    Service (``semcache-redis`` gives ``SEMCACHE_REDIS_PORT``): none of them is an error."""
    root = Path(__file__).parents[2]
    texts = [
        (root / name).read_text()
        for name in ("Dockerfile", "compose.yaml", "config/semcache.env.example")
    ]
    used = {n for text in texts for n in re.findall(r"\b(SEMCACHE_[A-Z0-9_]*[A-Z0-9])\b", text)}
    assert {"SEMCACHE_HOST", "SEMCACHE_CONFIG", "SEMCACHE_REDIS_URL"} <= used
    refused: list[str] = []
    for name in used:
        try:
            Settings.load(environ={name: ""})
        except SettingsError as exc:  # an empty port, say: a bad value, not an unknown name
            refused.append(str(exc))
    assert not [message for message in refused if "not a semcache setting" in message]
    links = {
        "SEMCACHE_SERVICE_HOST": "10.0.0.1",
        "SEMCACHE_SERVICE_PORT": "8080",
        "SEMCACHE_SERVICE_PORT_HTTP": "8080",
        "SEMCACHE_REDIS_PORT": "tcp://10.0.0.2:6379",
        "SEMCACHE_REDIS_PORT_6379_TCP": "tcp://10.0.0.2:6379",
        "SEMCACHE_REDIS_PORT_6379_TCP_PROTO": "tcp",
        "SEMCACHE_REDIS_PORT_6379_TCP_PORT": "6379",
        "SEMCACHE_REDIS_PORT_6379_TCP_ADDR": "10.0.0.2",
        "SEMCACHE_REDIS_SERVICE_HOST": "10.0.0.2",
    }
    assert Settings.load(environ=links) == Settings()
    with pytest.raises(SettingsError, match="SEMCACHE_REDIS_PORT is not a semcache setting"):
        Settings.load(environ={"SEMCACHE_REDIS_PORT": "6379"})  # not a service link


def test_an_empty_admin_token_is_unset_from_the_environment_and_refused_elsewhere(
    tmp_path: Path,
) -> None:
    """Must NOT start with an admin API a bare ``Authorization: Bearer`` opens: an empty
    variable is unset (as for every optional setting); an empty flag (``--admin-token
    "$TOKEN"`` with TOKEN unset) or file value is an error."""
    assert Settings.load(environ={"SEMCACHE_ADMIN_TOKEN": ""}).admin_token is None
    assert Settings.load(environ={"SEMCACHE_ADMIN_TOKEN": "  "}).admin_token is None
    for value in ("", "  "):
        with pytest.raises(SettingsError, match=r"^SEMCACHE_ADMIN_TOKEN must not be empty"):
            Settings.load(flags={"admin_token": value}, environ={})
    config = tmp_path / "empty-token.toml"
    config.write_text('admin_token = ""\n')
    with pytest.raises(SettingsError, match="SEMCACHE_ADMIN_TOKEN must not be empty"):
        Settings.load(config_path=config)


@pytest.mark.parametrize(
    ("environ", "flag", "toml"),
    [
        ({"SEMCACHE_REDIS_PREFIX": ""}, None, None),
        ({"SEMCACHE_REDIS_PREFIX": "  "}, None, None),
        ({}, "", None),
        ({}, None, 'redis_prefix = ""\n'),
    ],
)
def test_an_empty_redis_prefix_is_refused_from_every_source(
    tmp_path: Path, environ: dict[str, str], flag: str | None, toml: str | None
) -> None:
    """Must NOT flush other applications' keys: ``SEMCACHE_REDIS_PREFIX=`` (what a compose
    file's unset variable expands to) made the prefix empty, every key of the database the
    cache's, and ``semcache flush`` unlinked them all."""
    config = None
    if toml is not None:
        config = tmp_path / "empty-prefix.toml"
        config.write_text(toml)
    with pytest.raises(SettingsError, match=r"^SEMCACHE_REDIS_PREFIX must not be empty"):
        Settings.load(flags={"redis_prefix": flag}, environ=environ, config_path=config)
    assert Settings.load(environ={"SEMCACHE_REDIS_PREFIX": "app1:"}).redis_prefix == "app1:"


def test_serve_with_an_empty_admin_token_flag_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy import cli

    seen: list[Settings] = []
    monkeypatch.setattr(cli, "run", seen.append)
    for name in [n for n in os.environ if n.startswith("SEMCACHE_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(main, ["serve", "--admin-token", ""])
    assert result.exit_code == 2
    assert result.output.strip() == "semcache: SEMCACHE_ADMIN_TOKEN must not be empty"
    assert seen == []


def test_public_view_masks_secrets() -> None:
    s = Settings(upstream_api_key="sk-secret", redis_url="redis://user:pw@host:6379/0")
    public = s.public()
    assert public["upstream_api_key"] == "***"
    assert public["redis_url"] == "redis://user:***@host:6379/0"
    assert "sk-secret" not in str(public)


def test_public_view_masks_keys_in_every_url() -> None:
    """Must NOT leak: a key in an upstream or embedder URL (``?key=``, a password, a SAS
    ``sig``) is masked in /cache/stats, the start-up line and ``semcache doctor``."""
    s = Settings(
        upstream_url="https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21&key=sk-q",
        ollama_url="http://admin:ollama-pw@ollama.internal:11434",
        embed_url="https://u:embed-pw@emb.example.test/v1?sig=abc&x",
    )
    public = s.public()
    assert public["upstream_url"] == (
        "https://r.openai.azure.com/openai/deployments/d?api-version=2024-10-21&key=***"
    )
    assert public["ollama_url"] == "http://admin:***@ollama.internal:11434"
    assert public["embed_url"] == "https://u:***@emb.example.test/v1?sig=***&x"
    for secret in ("sk-q", "ollama-pw", "embed-pw", "abc"):
        assert secret not in str(public)
    plain = "https://api.openai.com/v1"
    assert Settings(upstream_url=plain).public()["upstream_url"] == plain


def test_a_key_given_as_the_url_s_user_name_is_masked() -> None:
    """Must NOT leak: ``https://sk-...@host/v1`` (a key as the Basic-auth user name, no
    password) was printed whole by ``semcache doctor`` and the start-up line."""
    s = Settings(
        upstream_url="https://sk-user-key@gw.example.test/v1",
        redis_url="redis://token-only@cache.internal:6379/0",
        embed_url="https://u:p@ss@emb.example.test/v1",
    )
    public = s.public()
    assert public["upstream_url"] == "https://***@gw.example.test/v1"
    assert public["redis_url"] == "redis://***@cache.internal:6379/0"
    assert public["embed_url"] == "https://u:***@emb.example.test/v1"
    for secret in ("sk-user-key", "token-only", "p@ss"):
        assert secret not in str(public)


def test_cli_exposes_one_flag_per_setting() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--upstream", "--redis-url", "--config", "--ttl"):
        assert flag in result.output
    for f in setting_fields():
        name = f.metadata["name"]
        flag = "--upstream" if name == "upstream_url" else "--" + name.replace("_", "-")
        assert f"{flag} " in result.output, flag


def test_cli_bad_flag_value_is_one_line() -> None:
    result = CliRunner().invoke(main, ["serve", "--upstream", "ftp://x"])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == "semcache: SEMCACHE_UPSTREAM_URL must be an http:// or https:// URL"
    )


def test_every_example_value_in_the_config_file_is_valid(tmp_path: Path) -> None:
    names = {f.metadata["name"] for f in setting_fields()}
    lines = [
        line[2:]
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("# ") and line[2:].split(" = ")[0] in names
    ]
    assert len(lines) == len(names)
    config = tmp_path / "all.toml"
    config.write_text("\n".join(lines) + "\n")
    loaded = Settings.load(config_path=config)
    assert loaded.shared_cache is False
    assert loaded.client_key_set() == {"sk-team-a", "sk-team-b"}
