"""A real HAProxy in front of ``semcache serve`` replicas, for the replica tests and bench.

The config is generated on free loopback ports and HAProxy runs in the foreground (``-db``) as
our own child process, never as a system service. It balances round-robin, takes a replica out
once ``GET /healthz`` fails ``fall`` times in a row, retries a request whose connection to a
replica failed on another one (:data:`POLICY`, the same lines as ``config/haproxy.cfg``), and
names the replica that answered in ``X-Semcache-Replica``. Its admin socket answers ``show
stat``, so a test waits for a replica's state instead of sleeping.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.lifecycle import Started

from .ports import free_port

REPLICA_HEADER = "x-semcache-replica"
POLICY = (
    "balance roundrobin",
    "option http-buffer-request",
    "option httpchk GET /healthz",
    "http-check expect status 200",
    "retries 3",
    "option redispatch 1",
    "retry-on conn-failure empty-response",
    f"http-response set-header {REPLICA_HEADER} %s",
)
"""What the balancer does with requests: shared with ``config/haproxy.cfg`` (a test checks)."""


def find_haproxy() -> str | None:
    """``$HAPROXY_BIN``, else ``haproxy`` on PATH or in /usr/sbin (Debian's package)."""
    if env := os.environ.get("HAPROXY_BIN"):
        return env
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


class Balancer(Started):
    """HAProxy on a free port, round-robin over ``servers`` (name -> port on 127.0.0.1)."""

    def __init__(
        self,
        binary: str,
        servers: dict[str, int],
        *,
        check_interval_ms: int = 200,
        fall: int = 2,
        rise: int = 1,
        log_requests: bool = True,
        ready_timeout: float = 10.0,
    ) -> None:
        self.binary = binary
        self.servers = dict(servers)
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="semcache-haproxy-"))
        self.socket_path = self._dir / "admin.sock"
        self.config_path = self._dir / "haproxy.cfg"
        self.config_path.write_text(
            config(
                self.port, self.servers, self.socket_path, check_interval_ms, fall, rise,
                log_requests=log_requests,
            )
        )  # fmt: skip
        self.log_path = self._dir / "haproxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "haproxy is not running"
        return self._proc.pid

    def start(self) -> Balancer:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.ready_timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log_text = self.log_text()
                self.close()
                raise RuntimeError(f"haproxy did not start:\n{log_text}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            self.stats()
        except OSError:
            return False
        return True

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self, line: str) -> str:
        """One command on the admin socket (``show stat``, ``show servers state``...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the replicas' backend: server name -> its row (``status``,
        ``scur`` current sessions, ``stot`` total, ``wretr`` retries, ``wredis``
        redispatches, ``chkfail``...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(text.splitlines())
        return {r["svname"]: r for r in rows if r["pxname"] == "replicas" and r["svname"]}

    def status(self, server: str) -> str:
        """``UP``, ``DOWN``, ``UP 1/2`` (going down)..."""
        return self.stats()[server]["status"]

    def wait_until(self, server: str, status: str, timeout: float = 10.0) -> float:
        """Wait until ``server`` has ``status``; how many seconds it took."""
        start = time.monotonic()
        while (seen := self.status(server)) != status:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{server} is {seen!r}, not {status!r}, after {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - start

    def in_flight(self) -> int:
        """Requests the replicas are answering right now (``scur`` summed)."""
        return sum(int(row["scur"] or 0) for name, row in self.stats().items() if name != "BACKEND")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)


def config(
    port: int,
    servers: dict[str, int],
    socket_path: Path,
    check_interval_ms: int,
    fall: int,
    rise: int,
    *,
    log_requests: bool = True,
    policy: Sequence[str] = POLICY,
) -> str:
    """One log line per request goes to the balancer's log file (a benchmark turns it off)."""
    lines = [
        "global",
        "    maxconn 4096",
        "    log stdout format raw local0",
        f"    stats socket {socket_path} mode 600 level admin",
        "defaults",
        "    mode http",
        *(["    log global", "    option httplog"] if log_requests else []),
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "frontend semcache",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "backend replicas",
        *(f"    {line}" for line in policy),
        f"    default-server check inter {check_interval_ms}ms fall {fall} rise {rise}",
        *(f"    server {name} 127.0.0.1:{p}" for name, p in servers.items()),
    ]
    return "\n".join(lines) + "\n"
