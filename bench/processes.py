"""The benchmark's own processes: servers started and stopped by it, process groups, CPU time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.proxy_process import ProxyProcess

ROOT = Path(__file__).resolve().parents[1]


class Service:
    """A server process of the benchmark's own, ready once ``ready_url`` answers 200."""

    def __init__(
        self,
        args: list[str],
        ready_url: str,
        *,
        env: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.output()[-3000:]
                self.close()
                raise RuntimeError(f"{args[0]} did not start:\n{output}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proxy_pid(proxy: ProxyProcess) -> int:
    """``semcache serve`` runs in the process ProxyProcess started (uvicorn, one worker)."""
    process: subprocess.Popen[bytes] | None = proxy._proc
    assert process is not None
    return process.pid


def machine_cpu_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, every process and the kernel)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_group(args: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    """Run ``args`` in a process group of its own, so that whatever it started (a
    redis-server) goes with it if it is interrupted or times out."""
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc.returncode, stdout, stderr
