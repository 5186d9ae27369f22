"""Run the real ``semcache serve`` CLI as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import httpx

from tests.support.lifecycle import Started

from .ports import free_port


class ProxyProcess(Started):
    def __init__(
        self,
        upstream_url: str,
        *,
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 15.0,
    ) -> None:
        self.port = free_port()
        self.args = [
            str(Path(sys.executable).parent / "semcache"),
            "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--upstream", upstream_url,
            *(["--redis-url", redis_url] if redis_url else []),
            *extra_args,
        ]  # fmt: skip
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEMCACHE_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(env or {})
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._logs = Path(tempfile.mkdtemp(prefix="semcache-proxy-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client."""
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        """The running proxy's process id (its memory in ``/proc/<pid>/status``)."""
        assert self._proc is not None, "the proxy is not running"
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self) -> ProxyProcess:
        if self._proc is not None:
            return self
        with (self._logs / "stdout").open("wb") as out, (self._logs / "stderr").open("wb") as err:
            self._proc = subprocess.Popen(
                self.args, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"semcache exited with {self._proc.returncode}")
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self._fail(f"semcache /healthz not ready after {self.ready_timeout} s")
                time.sleep(0.05)

    def _fail(self, reason: str) -> NoReturn:
        stderr = self.stderr_text()
        self.close()
        raise RuntimeError(f"{reason}: {' '.join(self.args)}\n--- stderr ---\n{stderr}")

    def _read(self, name: str) -> str:
        path = self._logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stdout_text(self) -> str:
        return self._read("stdout")

    def stderr_text(self) -> str:
        return self._read("stderr")

    def send_signal(self, sig: int) -> None:
        """Signal the running proxy, e.g. ``SIGTERM`` for a graceful shutdown."""
        assert self._proc is not None, "the proxy is not running"
        self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the proxy to exit; its exit code."""
        assert self._proc is not None, "the proxy is not running"
        return self._proc.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        code = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            code = self._proc.returncode
            self._proc = None
        return code

    def close(self) -> None:
        """Stop and delete the captured output."""
        self.stop()
        shutil.rmtree(self._logs, ignore_errors=True)
