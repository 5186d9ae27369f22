"""``semcache stats | ls | show | rm | flush | explain | warm | import | export``: the admin
API (and warming) from a shell.

Each finds the proxy as ``semcache probe`` does (``--url``, else the address file ``serve``
wrote, else the settings' host and port) and sends ``--token`` (default:
``SEMCACHE_ADMIN_TOKEN``). A failure prints one line and exits 1.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson

from proxy.admin import warm as warming
from proxy.admin.client import AdminClient, AdminError
from proxy.admin.display import entry_line, explanation, summary
from proxy.cache.catalog import ROUTES
from proxy.settings import Settings

LoadSettings = Callable[[str | None], Settings]
ServedUrl = Callable[[Settings], str]


def register(main: click.Group, load: LoadSettings, served_url: ServedUrl) -> None:
    def target(command: Any) -> Any:
        command = click.option(
            "--token",
            default=None,
            help="Admin token (default: SEMCACHE_ADMIN_TOKEN).",
        )(command)
        command = click.option(
            "--url",
            default=None,
            help=(
                "Base URL of the proxy; default: the address file serve wrote, else "
                "--host/--port of the settings (--config)."
            ),
        )(command)
        return click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="TOML file with settings (for the address and token).",
        )(command)

    @contextmanager
    def admin(config_path: str | None, url: str | None, token: str | None) -> Iterator[AdminClient]:
        settings = load(config_path)
        with AdminClient(
            url or served_url(settings), token if token is not None else settings.admin_token
        ) as client:
            try:
                yield client
            except AdminError as exc:
                click.echo(f"semcache: {exc}", err=True)
                sys.exit(1)

    @main.command()
    @target
    @click.option("--json", "as_json", is_flag=True, help="Print GET /cache/stats as it is.")
    def stats(config_path: str | None, url: str | None, token: str | None, as_json: bool) -> None:
        """Show the cache's figures (GET /cache/stats)."""
        with admin(config_path, url, token) as client:
            figures = client.get("/cache/stats")
        if as_json:
            click.echo(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
            return
        for line in summary(figures):
            click.echo(line)

    @main.command()
    @target
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def flush(config_path: str | None, url: str | None, token: str | None, yes: bool) -> None:
        """Remove every entry (DELETE /cache)."""
        with admin(config_path, url, token) as client:
            if not yes:
                click.confirm(f"Remove every entry cached by {client.base_url}?", abort=True)
            removed = client.delete("/cache")["removed"]
        click.echo(f"removed {removed} keys")

    @main.command()
    @target
    @click.argument("request_file", type=click.File("rb"), default="-")
    @click.option("--key", "api_key", default=None, help="The caller's API key.")
    @click.option(
        "--header", "headers", multiple=True, metavar="NAME:VALUE", help="A cache control header."
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the explanation as it is.")
    def explain(
        config_path: str | None,
        url: str | None,
        token: str | None,
        request_file: Any,
        api_key: str | None,
        headers: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Say what a chat request (a JSON body, from REQUEST_FILE or stdin) would get, and
        why, without sending it (POST /cache/explain)."""
        try:
            request = orjson.loads(request_file.read())
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="REQUEST_FILE") from None
        fields = {}
        for header in headers:
            name, sep, value = header.partition(":")
            if not sep:
                raise click.BadParameter(f"{header!r} is not NAME:VALUE", param_hint="--header")
            fields[name.strip()] = value.strip()
        body = {"request": request, "api_key": api_key, "headers": fields}
        with admin(config_path, url, token) as client:
            answer = client.post("/cache/explain", body)
        if as_json:
            click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
            return
        for line in explanation(answer):
            click.echo(line)

    @main.command()
    @target
    @click.argument("requests_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option(
        "--key",
        "api_key",
        envvar="OPENAI_API_KEY",
        default=None,
        help="The API key the requests are sent with (their tenant); default: OPENAI_API_KEY.",
    )
    @click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
    @click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
    def warm(
        config_path: str | None,
        url: str | None,
        token: str | None,
        requests_file: Path,
        api_key: str | None,
        concurrency: int,
        progress: bool,
    ) -> None:
        """Send the chat requests in REQUESTS_FILE (JSON Lines: one request body per line)
        through the proxy, so their answers are cached; a line already cached costs nothing."""
        base = url or served_url(load(config_path))
        try:
            report = asyncio.run(
                warming.warm(
                    base, requests_file, api_key=api_key, concurrency=concurrency,
                    progress=progress,
                )
            )  # fmt: skip
        except AdminError as exc:
            click.echo(f"semcache: {exc}", err=True)
            sys.exit(1)
        rate = report.sent / report.seconds if report.seconds else 0.0
        o = report.outcomes
        click.echo(
            f"warm: {report.sent} requests in {report.seconds:.1f} s ({rate:.0f}/s): "
            f"{o['MISS']} answered upstream and stored, {o['HIT']} already cached, "
            f"{o['BYPASS']} bypassed, {o['error']} failed"
        )
        for failure in report.failures:
            click.echo(f"  {failure}", err=True)
        if o["error"]:
            sys.exit(1)

    @main.command(name="import")
    @target
    @click.argument("answers_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
    def import_(
        config_path: str | None,
        url: str | None,
        token: str | None,
        answers_file: Path,
        progress: bool,
    ) -> None:
        """Store the answers in ANSWERS_FILE (JSON Lines: {"request": ..., "response": ...,
        "api_key": ...} per line) as if the upstream had given them (POST /cache/import); or
        restore what `semcache export` wrote, entries as they were."""
        with admin(config_path, url, token) as client:
            result = client.upload("/cache/import", answers_file, progress=progress)
        click.echo(
            f"import: {result['lines']} lines: {result['imported']} stored, "
            f"{result['failed']} failed"
            + (f", {result['expired']} expired since the export" if result.get("expired") else "")
        )
        for error in result["errors"]:
            click.echo(f"  {error}", err=True)
        if result["failed"]:
            sys.exit(1)

    def filtered(command: Any) -> Any:
        for option in reversed(
            [
                click.option("--key", "tenant_key", default=None,
                             help="One tenant: its API key (sent in X-Cache-Tenant-Key)."),
                click.option("--namespace", default=None, help="One tenant, by namespace."),
                click.option("--route", default=None,
                             type=click.Choice(list(ROUTES))),
                click.option("--model", default=None, help="Entries of this model."),
                click.option("--lookup", type=click.Choice(["semantic", "exact"]), default=None,
                             help="Entries semantic lookups can find, or exact ones only."),
                click.option("--older-than", type=float, default=None, help="Seconds."),
                click.option("--newer-than", type=float, default=None, help="Seconds."),
            ]
        ):  # fmt: skip
            command = option(command)
        return command

    def query(
        namespace: str | None,
        route: str | None,
        model: str | None,
        lookup: str | None,
        older_than: float | None,
        newer_than: float | None,
    ) -> dict[str, str]:
        given = {"namespace": namespace, "route": route, "model": model, "lookup": lookup,
                 "older_than": older_than, "newer_than": newer_than}  # fmt: skip
        return {k: str(v) for k, v in given.items() if v is not None}

    def tenant(tenant_key: str | None) -> dict[str, str]:
        return {} if tenant_key is None else {"x-cache-tenant-key": tenant_key}

    @main.command(name="ls")
    @target
    @filtered
    @click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
    @click.option("--all", "everything", is_flag=True, help="Every page, not just the first.")
    @click.option("--cursor", "start", default="", help="Go on from where a page ended.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
    def ls(
        config_path: str | None, url: str | None, token: str | None, tenant_key: str | None,
        namespace: str | None, route: str | None, model: str | None, lookup: str | None,
        older_than: float | None,
        newer_than: float | None, limit: int, everything: bool, start: str, as_json: bool,
    ) -> None:  # fmt: skip
        """List cached entries (GET /cache/entries)."""
        params = query(namespace, route, model, lookup, older_than, newer_than) | {
            "limit": str(limit)
        }
        with admin(config_path, url, token) as client:
            cursor: str | None = start
            while cursor is not None:
                page = client.get(
                    "/cache/entries", params=params | ({"cursor": cursor} if cursor else {}),
                    headers=tenant(tenant_key),
                )  # fmt: skip
                for e in page["entries"]:
                    click.echo(orjson.dumps(e).decode() if as_json else entry_line(e))
                cursor = page["next_cursor"]
                if cursor is not None and not everything:
                    click.echo(f"(more: --all, or --cursor '{cursor}')", err=True)
                    break

    @main.command()
    @target
    @click.argument("entry_id")
    def show(config_path: str | None, url: str | None, token: str | None, entry_id: str) -> None:
        """Show one entry (GET /cache/entries/ID)."""
        with admin(config_path, url, token) as client:
            entry = client.get(entry_path(entry_id))
        click.echo(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())

    @main.command()
    @target
    @filtered
    @click.argument("entry_id", required=False)
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def rm(
        config_path: str | None, url: str | None, token: str | None, tenant_key: str | None,
        namespace: str | None, route: str | None, model: str | None, lookup: str | None,
        older_than: float | None,
        newer_than: float | None, entry_id: str | None, yes: bool,
    ) -> None:  # fmt: skip
        """Remove one entry by id, or every entry the filters match."""
        params = query(namespace, route, model, lookup, older_than, newer_than)
        with admin(config_path, url, token) as client:
            if entry_id is not None:
                removed = client.delete(entry_path(entry_id))["removed"]
            else:
                if not params and tenant_key is None:
                    raise click.UsageError("give an entry id or a filter (flush removes all)")
                if not yes:
                    click.confirm("Remove every entry these filters match?", abort=True)
                removed = client.delete(
                    "/cache/entries", params=params, headers=tenant(tenant_key)
                )["removed"]
        click.echo(f"removed {removed} entries")

    @main.command()
    @target
    @filtered
    @click.argument("dest", type=click.File("wb"))
    @click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
    def export(
        config_path: str | None, url: str | None, token: str | None, tenant_key: str | None,
        namespace: str | None, route: str | None, model: str | None, lookup: str | None,
        older_than: float | None,
        newer_than: float | None, dest: Any, progress: bool,
    ) -> None:  # fmt: skip
        """Write every matching entry, whole, to DEST as JSON Lines (GET /cache/export)."""
        params = query(namespace, route, model, lookup, older_than, newer_than)
        with admin(config_path, url, token) as client:
            n = client.download(
                "/cache/export", dest, params=params, headers=tenant(tenant_key),
                progress=progress,
            )  # fmt: skip
        click.echo(f"exported {n} entries", err=dest.name == "<stdout>")


def entry_path(entry_id: str) -> str:
    """``/cache/entries/{entry_id}`` with the id one path segment, whatever it holds: left as
    typed, ``..`` was a dot segment the HTTP client resolved, so ``semcache rm ..`` sent
    ``DELETE /cache`` and removed every entry without the confirmation ``flush`` asks for."""
    return "/cache/entries/" + quote(entry_id, safe="").replace(".", "%2E")
