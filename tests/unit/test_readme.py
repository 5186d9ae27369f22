"""The README is the user's manual: every setting and flag it promises must exist, and back."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.settings import setting_fields

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for f in setting_fields():
        assert f"`SEMCACHE_{f.metadata['name'].upper()}`" in README, f.metadata["name"]


def test_every_documented_variable_exists() -> None:
    known = {f"SEMCACHE_{f.metadata['name'].upper()}" for f in setting_fields()} | {
        "SEMCACHE_CONFIG"
    }
    documented = set(re.findall(r"`(SEMCACHE_[A-Z_]+)`", README))
    assert documented <= known, documented - known


def test_quick_start_has_the_two_commands() -> None:
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/semcache serve" in README
    )
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest" in README
    )
