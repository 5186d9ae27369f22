"""Where settings come from besides flags: ``SEMCACHE_*`` variables and a TOML file, read into
the types :class:`~proxy.settings.Settings` declares."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.errors import SettingsError


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
