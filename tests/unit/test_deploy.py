"""The container files hold what the README promises: semantic matching on in compose, Ollama
reachable only on the compose network, pinned images, health checks on the port served; the
`replicas` profile: two semcache replicas on one Redis and one secret source behind HAProxy."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.balancer import POLICY, find_haproxy
from tests.support.ports import free_port

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HAPROXY_CFG = ROOT / "config" / "haproxy.cfg"


def test_semantic_matching_is_on_with_a_model_the_image_carries() -> None:
    semcache = SERVICES["semcache"]
    assert semcache["environment"]["SEMCACHE_EMBED_MODEL"] == "local:all-MiniLM-L6-v2"
    assert semcache["build"]["args"]["EXTRAS"] == "local"
    assert '".${EXTRAS:+[${EXTRAS}]}"' in DOCKERFILE  # the build arg installs semcache[local]
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE  # CPU-only torch


def test_only_semcache_and_its_balancer_are_published_and_on_loopback() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"semcache", "balancer"}
    for name in published:
        assert all(str(p).startswith("127.0.0.1:") for p in SERVICES[name]["ports"])


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
    assert len(images) == 5
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


def _replicas() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in SERVICES.items() if s.get("image") == SERVICES["semcache"]["image"]}


def test_replicas_profile_runs_two_replicas_on_one_redis_and_one_secret_source() -> None:
    replicas = _replicas()
    assert set(replicas) == {"semcache", "semcache-2"}
    assert SERVICES["semcache-2"]["profiles"] == ["replicas"]
    assert "profiles" not in SERVICES["semcache"]  # `docker compose up` is unchanged
    first, second = replicas.values()
    # The same settings (so one Redis, and no secret of their own: the one kept in Redis), the
    # same env file if any, the same health check.
    assert first["environment"] == second["environment"]
    assert first["environment"]["SEMCACHE_REDIS_URL"] == "redis://redis:6379/0"
    assert "SEMCACHE_SECRET" not in first["environment"]
    assert first.get("env_file") == second.get("env_file")
    assert first["healthcheck"] == second["healthcheck"]
    for replica in replicas.values():
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in SERVICES["semcache-2"]  # reached through the balancer only


def test_the_balancer_fronts_both_replicas_with_the_tested_policy() -> None:
    balancer = SERVICES["balancer"]
    assert balancer["profiles"] == ["replicas"]
    assert balancer["image"].startswith("haproxy:")
    assert balancer["volumes"] == ["./config/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert set(balancer["depends_on"]) == set(_replicas())
    lines = [line.strip() for line in HAPROXY_CFG.read_text().splitlines()]
    servers = [line.split()[1:3] for line in lines if line.startswith("server ")]
    assert servers == [[name, f"{name}:8080"] for name in _replicas()]
    # The lines the replica tests run against real replicas (tests/support/balancer.py).
    for line in POLICY:
        assert line in lines, line
    assert "bind :8080" in lines


def test_haproxy_accepts_the_balancer_config() -> None:
    binary = find_haproxy()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have haproxy (.ci/run installs it)")
        pytest.skip("haproxy is not installed")
    # The replicas' names resolve only on the compose network; init-addr none lets it start.
    result = subprocess.run([binary, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_balancer_s_log_never_holds_a_query_string(tmp_path: Path) -> None:
    """Must NOT leak: the README promises no access log (paths' query strings can carry keys),
    but the replicas profile's HAProxy logged each request line whole, ``?key=...`` included,
    to the container's stdout. Run with config/haproxy.cfg, the replicas on loopback."""
    binary = find_haproxy()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have haproxy (.ci/run installs it)")
        pytest.skip("haproxy is not installed")

    class Replica(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    replica = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Replica)
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    port = free_port()
    config = HAPROXY_CFG.read_text()
    config = re.sub(r"(?m)^resolvers docker\n(    .*\n)+", "", config)
    config = config.replace(" resolvers docker init-addr last,libc,none", "")
    config = config.replace("bind :8080", f"bind 127.0.0.1:{port}")
    config = re.sub(
        r"(?m)^(    server \S+) \S+$", rf"\1 127.0.0.1:{replica.server_address[1]}", config
    )
    (tmp_path / "haproxy.cfg").write_text(config)
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/models?key=sk-in-the-query")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.1)
        assert answer.status_code == 200
        time.sleep(0.5)  # the log line is written once the exchange ends
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=10)
        replica.shutdown()
        replica.server_close()
    assert '"GET /v1/models HTTP/1.1"' in log  # still a line per request, for operators
    assert "sk-in-the-query" not in log


def test_docker_compose_config_validates_the_replicas_profile() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have docker-compose (.ci/run installs it)")
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "compose.yaml"), "--profile", "replicas", "config"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    services = resolved["services"]
    assert {"semcache", "semcache-2", "balancer", "redis"} <= set(services)
    environments = [services[name]["environment"] for name in ("semcache", "semcache-2")]
    assert environments[0] == environments[1]
