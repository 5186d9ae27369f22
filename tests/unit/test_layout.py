"""Imports in ``proxy/`` run one way: from the entry points down through the layers of a request's
path to the modules every layer shares (STYLE.md, "Layout"). Every import counts: at the top of
a module, inside a function, or under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import proxy

ROOT = Path(proxy.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli", "proxy"),  # the command line; the package's own face (create_app, Settings)
    ("doctor",),  # builds the app to check each part of it
    ("app",),
    ("http", "admin"),  # the face; the CLI's client of a running proxy's admin API
    ("cache",),
    ("semantic",),  # above upstream: the HTTP embedder and the audit send through it
    ("upstream", "totals"),  # totals: whole-cache request counts, summed in the store
    ("stores",),
)
"""Units (a subpackage, or a module at the top of ``proxy/``) from the top down. A unit imports
only units of a lower layer: two units of one layer import neither each other."""

FOUNDATION = frozenset(
    {"errors", "settings", "settings_checks", "settings_sources", "metrics", "vectors",
     "requests", "canonical", "redis_urls"}
)  # fmt: skip
"""Top-level modules below every layer, importable from anywhere: they import only each other."""

ALLOWED: dict[tuple[str, str], str] = {}
"""Imports that run upwards, each with why: none now. One added here needs its reason, and the
README's Development section names it."""

FACES = ("upstream", "stores", "semantic")
"""Subpackages whose ``__init__.py`` is all that code outside them imports (its ``__all__``)."""


def _rank() -> dict[str, int]:
    ranks = {unit: len(LAYERS) - i for i, layer in enumerate(LAYERS) for unit in layer}
    return ranks | dict.fromkeys(FOUNDATION, 0)


def _module_name(path: Path) -> str:
    parts = ("proxy", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "proxy"


def _path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")[1:])


def _is_module(module: str) -> bool:
    return _path(module).with_suffix(".py").is_file() or _is_package(module)


def _is_package(module: str) -> bool:
    return (_path(module) / "__init__.py").is_file()


def imports(module: str, source: str) -> list[tuple[str, str | None, int]]:
    """(imported module, the name taken from it or None, line) for each import of ``proxy``."""
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("proxy")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if base != "proxy" and not base.startswith("proxy."):
                continue
            for alias in node.names:
                if _is_module(f"{base}.{alias.name}"):  # ``from proxy.http import admin``
                    found.append((f"{base}.{alias.name}", None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


def _sources() -> dict[str, str]:
    return {_module_name(p): p.read_text() for p in sorted(ROOT.rglob("*.py"))}


def upward(sources: dict[str, str]) -> list[tuple[str, str, int]]:
    """(module, imported module, line) for each import of ``sources`` (module -> its text) that
    :data:`LAYERS` and :data:`ALLOWED` do not allow."""
    rank = _rank()
    wrong = []
    for module, source in sources.items():
        unit = _unit(module)
        for target, _, line in imports(module, source):
            other = _unit(target)
            if other == unit or (module, target) in ALLOWED:
                continue
            if rank[other] < rank[unit] or rank[unit] == rank[other] == 0:
                continue
            wrong.append((module, target, line))
    return wrong


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _sources()}
    assert units - _rank().keys() == set(), "add the new unit to LAYERS or FOUNDATION"


def test_imports_run_downwards() -> None:
    wrong = [f"{module}:{line} imports {target}" for module, target, line in upward(_sources())]
    assert wrong == [], "imports running upwards (see LAYERS):\n" + "\n".join(wrong)


def test_the_allowed_exceptions_still_exist() -> None:
    edges = {(m, t) for m, s in _sources().items() for t, _, _ in imports(m, s)}
    assert set(ALLOWED) - edges == set(), "drop the exceptions that no longer hold"


def test_an_upward_import_is_found() -> None:
    added = {
        "proxy.stores.base": "from proxy.cache.keys import chat_key",
        "proxy.errors": "def f() -> None:\n    from proxy.http import validate",
        "proxy.admin.client": "from proxy.http.handlers import Services",
        "proxy.upstream.usage": "from proxy.semantic.lookup import Lookup",
    }
    sources = _sources()
    sources = {module: f"{sources[module]}\n{text}\n" for module, text in added.items()}
    assert {(module, target) for module, target, _ in upward(sources)} == {
        ("proxy.stores.base", "proxy.cache.keys"),
        ("proxy.errors", "proxy.http.validate"),
        ("proxy.admin.client", "proxy.http.handlers"),
        ("proxy.upstream.usage", "proxy.semantic.lookup"),
    }


def test_code_outside_a_face_imports_only_the_face() -> None:
    wrong = []
    for package in FACES:
        face = f"proxy.{package}"
        init = ast.parse((ROOT / package / "__init__.py").read_text())
        (exported,) = (
            ast.literal_eval(node.value)
            for node in init.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        )
        for module, source in _sources().items():
            if _unit(module) == package:
                continue
            for target, name, line in imports(module, source):
                if target.startswith(face + ".") or (target == face and name not in exported):
                    wrong.append(f"{module}:{line} imports {target} {name or ''}".rstrip())
    assert wrong == []
