"""``semcache serve``: one option per setting; the settings decide, uvicorn serves."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
import uvicorn

from proxy.errors import SettingsError
from proxy.settings import Settings, setting_fields

# Flag names that differ from the setting's own name (kept short for the documented interface).
FLAG_ALIASES = {"upstream_url": "--upstream"}


def _options(command: Any) -> Any:
    for f in reversed(setting_fields()):
        name = f.metadata["name"]
        flag = FLAG_ALIASES.get(name, "--" + name.replace("_", "-"))
        kind = str(f.type).split(" ")[0]
        click_type = {"int": int, "float": float, "bool": bool}.get(kind, str)
        command = click.option(flag, name, type=click_type, default=None, help=f.metadata["help"])(
            command
        )
    return command


@click.group()
@click.version_option(package_name="semcache")
def main() -> None:
    """semcache: an OpenAI-compatible caching reverse proxy for LLM APIs."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with settings (below flags and SEMCACHE_* variables).",
)
@_options
def serve(config_path: str | None, **flags: object) -> None:
    """Run the proxy."""
    try:
        settings = Settings.load(flags=flags, environ=os.environ, config_path=config_path)
    except SettingsError as exc:
        click.echo(f"semcache: {exc}", err=True)
        sys.exit(2)
    run(settings)


def run(settings: Settings) -> None:
    from proxy.app import create_app
    from proxy.server import CoalescingProtocol

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per upstream call is noise, not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("semcache").info(
        "semcache on http://%s:%d -> %s (%s store)",
        settings.host,
        settings.port,
        settings.upstream_url,
        "memory" if settings.redis_url is None else "redis",
    )
    uvicorn.run(
        create_app(settings),
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
