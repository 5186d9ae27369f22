"""Where settings come from besides flags: ``SEMCACHE_*`` variables and a TOML file, read into
the types :class:`~proxy.settings.Settings` declares."""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from proxy.errors import SettingsError

ENV_PREFIX = "SEMCACHE_"


def parse_variable(f: dataclasses.Field[Any], raw: str, source: str) -> object:
    """A ``SEMCACHE_*`` variable's text as the setting's type."""
    kind = str(f.type)
    text = raw.strip()
    if "None" in kind and text == "":
        return None
    if kind.startswith("bool"):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{source}={raw!r} is not a valid bool (true or false)")
    try:
        if kind.startswith("int"):
            return int(text.replace("_", ""))
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise SettingsError(f"{source}={raw!r} is not a valid {kind.split(' ')[0]}") from None
    return text


def read_toml(path: Path, field: Callable[[str], dataclasses.Field[Any]]) -> dict[str, object]:
    """A TOML settings file as typed values; ``field`` finds a setting by name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    values: dict[str, object] = {}
    for key, value in data.items():
        try:
            f = field(key)
        except SettingsError:
            raise SettingsError(f"config file {path}: unknown setting {key!r}") from None
        kind = str(f.type)
        ok = (
            (kind.startswith("bool") and type(value) is bool)
            or (kind.startswith("int") and type(value) is int)
            or (kind.startswith("float") and type(value) in (int, float))
            or (kind.startswith("str") and isinstance(value, str))
        )
        if not ok:
            raise SettingsError(f"config file {path}: {key} must be a {kind.split(' ')[0]}")
        values[f.name] = float(value) if kind.startswith("float") else value
    return values


_SERVICE_LINK = re.compile(
    r"(\w+_)?(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_\w+)?)"
)
"""What Kubernetes puts in every pod for a Service named ``semcache-...`` (service links), after
the prefix."""
_SERVICE_LINK_PORT = re.compile(r"(tcp|udp|sctp)://", re.IGNORECASE)


def refuse_unknown_variables(
    environ: Mapping[str, str],
    fields: Iterable[dataclasses.Field[Any]],
    prefix: str,
    *,
    also: Iterable[str] = (),
) -> None:
    """A ``prefix``-ed variable that names none of the settings ``fields`` (nor ``also``, the
    variables read that are not settings) is an error, as an unknown key of the TOML file is:
    a misspelling (``SEMCACHE_UPSTREAM``) would leave the default in force without a word.
    Kubernetes' service-link variables are not semcache's and are left be."""
    by_alias: dict[str, str] = {}
    for f in fields:
        var = prefix + f.metadata["name"].upper()
        by_alias[var] = var
        by_alias[prefix + f.name.upper()] = var  # the attribute: SEMCACHE_TTL_SECONDS
    allowed = frozenset(also)
    for name in environ:
        if not name.startswith(prefix) or name in by_alias.values() or name in allowed:
            continue
        if _SERVICE_LINK.fullmatch(name.removeprefix(prefix)) or (
            name.endswith("_PORT") and _SERVICE_LINK_PORT.match(environ[name])
        ):
            continue
        known = by_alias.get(name)
        if known is None:  # compared without the prefix, which every name shares
            names = {n.removeprefix(prefix): n for n in [*by_alias, *allowed]}
            close = difflib.get_close_matches(name.removeprefix(prefix), names, n=1)
            known = by_alias.get(names[close[0]], names[close[0]]) if close else None
        hint = f" (did you mean {known}?)" if known else ""
        raise SettingsError(f"{name} is not a semcache setting{hint}")
