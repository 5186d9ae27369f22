"""The container files hold what the README promises: semantic matching on in compose, Ollama
reachable only on the compose network, pinned images, health checks on the port served."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_semantic_matching_is_on_with_a_model_the_image_carries() -> None:
    semcache = SERVICES["semcache"]
    assert semcache["environment"]["SEMCACHE_EMBED_MODEL"] == "local:all-MiniLM-L6-v2"
    assert semcache["build"]["args"]["EXTRAS"] == "local"
    assert '".${EXTRAS:+[${EXTRAS}]}"' in DOCKERFILE  # the build arg installs semcache[local]
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE  # CPU-only torch


def test_only_semcache_is_published_and_on_loopback() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"semcache"}
    assert all(str(p).startswith("127.0.0.1:") for p in SERVICES["semcache"]["ports"])


def test_models_are_pulled_before_semcache_starts() -> None:
    needs = SERVICES["semcache"]["depends_on"]
    assert needs["ollama-pull"]["condition"] == "service_completed_successfully"
    assert needs["redis"]["condition"] == needs["ollama"]["condition"] == "service_healthy"
    pull = SERVICES["ollama-pull"]
    script = " ".join(pull["command"])
    assert 'ollama pull "$$CHAT_MODEL"' in script
    assert 'ollama pull "$$EMBED_MODEL"' in script
    assert pull["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    assert "nomic-embed-text" in pull["environment"]["EMBED_MODEL"]


def test_every_image_is_pinned() -> None:
    images = [s["image"] for s in SERVICES.values() if "build" not in s]
    images += re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert len(images) == 4
    for image in images:
        _, _, tag = image.rpartition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z-]+)?", tag), image


def test_health_checks_probe_the_port_served() -> None:
    assert SERVICES["semcache"]["healthcheck"]["test"] == ["CMD", "semcache", "probe", "--ready"]
    assert 'CMD ["semcache", "probe"]' in DOCKERFILE
    assert "SEMCACHE_ADDRESS_FILE=/tmp/semcache.address" in DOCKERFILE
    for text in (DOCKERFILE, (ROOT / "compose.yaml").read_text()):
        checks = [line for line in text.splitlines() if "healthcheck" in line.lower()]
        assert not any("SEMCACHE_PORT" in line or "8080" in line for line in checks)


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml", "README.md"])
def test_config_files_named_exist_or_are_made_from_the_example(name: str) -> None:
    text = (ROOT / name).read_text()
    for path in set(re.findall(r"config/[\w.-]*\w", text)):
        made = f"cp config/semcache.env.example {path}" in text
        assert (ROOT / path).exists() or made, f"{name} names {path}"


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def test_docker_compose_config_validates() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have docker-compose (.ci/run installs it)")
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
