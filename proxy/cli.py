"""``semcache serve``: one option per setting; the settings decide, uvicorn serves.
``semcache probe``: the health check of a running ``serve`` (Docker, compose, Kubernetes).
``semcache doctor``: check the settings and what they point at (:mod:`proxy.doctor`).
``semcache stats | flush | explain | warm``: the admin API (:mod:`proxy.admin.commands`)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
import uvicorn

from proxy.admin.commands import register
from proxy.errors import SettingsError
from proxy.settings import Settings, setting_fields

# Flag names that differ from the setting's own name (kept short for the documented interface).
FLAG_ALIASES = {"upstream_url": "--upstream"}
LOCAL = "local:"


def _options(command: Any) -> Any:
    for f in reversed(setting_fields()):
        name = f.metadata["name"]
        flag = FLAG_ALIASES.get(name, "--" + name.replace("_", "-"))
        kind = str(f.type).split(" ")[0]
        if kind == "bool":
            # A switch, as users expect: --shared-cache, or --no-shared-cache over the file.
            switch = f"{flag}/--no-{flag[2:]}"
            command = click.option(switch, name, default=None, help=f.metadata["help"])(command)
            continue
        click_type = {"int": int, "float": float}.get(kind, str)
        command = click.option(flag, name, type=click_type, default=None, help=f.metadata["help"])(
            command
        )
    return command


def _config_option(command: Any) -> Any:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML file with settings (below flags and SEMCACHE_* variables).",
    )(command)


def _settings(config_path: str | None, flags: dict[str, object]) -> Settings:
    try:
        return Settings.load(flags=flags, environ=os.environ, config_path=config_path)
    except SettingsError as exc:
        _refuse(exc)


def _refuse(exc: SettingsError) -> NoReturn:
    """A setting that cannot work: one line, exit 2 (no traceback)."""
    click.echo(f"semcache: {exc}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(package_name="semcache")
def main() -> None:
    """semcache: an OpenAI-compatible caching reverse proxy for LLM APIs."""


@main.command()
@_config_option
@_options
def serve(config_path: str | None, **flags: object) -> None:
    """Run the proxy."""
    run(_settings(config_path, flags))


@main.command()
@_config_option
@_options
def doctor(config_path: str | None, **flags: object) -> None:
    """Check the settings, the upstream, the store (and its vector sets) and the embedder,
    wired as `serve` would; exit 1 if the upstream or the store fails."""
    import asyncio

    from proxy.doctor import diagnose

    settings = _settings(config_path, flags)
    _load_local_embedder(settings)
    try:
        checks = asyncio.run(diagnose(settings))
    except SettingsError as exc:  # found while wiring the app (the store, the calibration...)
        _refuse(exc)
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        click.echo(f"{mark} {check.name}: {check.detail}")
    if not all(c.ok for c in checks if c.required):
        sys.exit(1)


@main.command()
@_config_option
@click.option(
    "--url",
    default=None,
    help=(
        "Base URL of the proxy; default: the address file serve wrote, else "
        "--host/--port of the settings (--config)."
    ),
)
@click.option(
    "--through/--no-through",
    default=False,
    help="Also check that a request gets through to the upstream (GET /v1/models answers "
    "without a 5xx: semcache and the upstream both answer).",
)
@click.option(
    "--ready/--no-ready",
    default=False,
    help="Check readiness instead of liveness: GET /readyz answers 200 (the upstream answers "
    "semcache's own probe, made at most every 10 s).",
)
@click.option("--timeout", type=float, default=4.0, help="Seconds per request.")
def probe(
    config_path: str | None, url: str | None, through: bool, ready: bool, timeout: float
) -> None:
    """Exit 0 when a running `semcache serve` answers /healthz (or /readyz with --ready), 1
    otherwise (health checks)."""
    base = url or _served_url(_settings(config_path, {}))
    checks = ["/readyz" if ready else "/healthz"]
    if through:
        checks.append("/v1/models")
    try:
        with httpx.Client(base_url=base.rstrip("/"), timeout=timeout, trust_env=False) as client:
            for path in checks:
                status = client.get(path).status_code
                if (path != "/v1/models" and status != 200) or status >= 500:
                    click.echo(f"semcache probe: {base}{path} answered {status}", err=True)
                    sys.exit(1)
    except httpx.HTTPError as exc:
        click.echo(f"semcache probe: {base}: {exc or type(exc).__name__}", err=True)
        sys.exit(1)


register(main, lambda config_path: _settings(config_path, {}), lambda s: _served_url(s))


def _served_url(settings: Settings) -> str:
    """What ``serve`` wrote to its address file, else the settings' host and port."""
    if settings.address_file is not None:
        try:
            return Path(settings.address_file).read_text().strip()
        except OSError:
            pass
    return _url(settings)


def _url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def run(settings: Settings) -> None:
    from proxy.app import create_app
    from proxy.http.server import CoalescingProtocol

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per upstream call is noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _load_local_embedder(settings)
    if settings.address_file is not None:
        try:
            Path(settings.address_file).write_text(_url(settings) + "\n")
        except OSError as exc:
            click.echo(f"semcache: SEMCACHE_ADDRESS_FILE {settings.address_file}: {exc}", err=True)
            sys.exit(2)
    try:
        app = create_app(settings)
    except SettingsError as exc:  # found while wiring the app (the store, the calibration...)
        _refuse(exc)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=CoalescingProtocol,
        # The access log would print request paths and query strings, which may carry keys.
        access_log=False,
        server_header=False,
        # semcache never looks at client addresses: no X-Forwarded-* rewriting on every request.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )


def _load_local_embedder(settings: Settings) -> None:
    """A ``local:`` embedder is loaded before the server starts: when it cannot be, ``serve``
    stops with the fix in one line rather than run with semantic matching silently off."""
    spec = settings.embed_model
    if spec is None or not spec.startswith(LOCAL):
        return
    from proxy.semantic import EmbedderError, load_sentence_transformer

    try:
        load_sentence_transformer(spec.removeprefix(LOCAL))
    except EmbedderError as exc:
        if settings.embed_best_effort:
            logging.getLogger("semcache").warning(
                "%s; SEMCACHE_EMBED_BEST_EFFORT is set: exact caching only", exc
            )
            return
        click.echo(
            f"semcache: {exc} (or SEMCACHE_EMBED_BEST_EFFORT=true to start exact-only)", err=True
        )
        sys.exit(2)
