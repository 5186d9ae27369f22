"""HTTP load for the benchmarks: ``wrk`` when installed, else a Python fallback.

Both keep ``connections`` keep-alive connections busy with one POST for ``seconds`` and report
requests per second, p50/p99 latency and how busy the generator itself was, so that a result
limited by the generator rather than the server can be told apart (``saturated``). A body that
contains :data:`UNIQUE` gets it replaced by a counter unique within the load, for misses.

- ``wrk``: one thread (C, epoll; it outpaces any Python server by far) and a generated Lua
  script for the body and the summary; its CPU time comes from ``wait4``.
- Python: one process per two cores (``python -m bench.loadgen --worker SPEC``), each running
  an asyncio loop (uvloop when installed) of raw-socket keep-alive connections; each reports its
  latencies and its own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parents[1]
UNIQUE = b"@UNIQUE@"
SATURATED = 0.9
"""A generator thread or process busier than this share of a core may be the bottleneck."""
JSON_HEADERS = (("content-type", "application/json"), ("authorization", "Bearer sk-bench"))


@dataclass(frozen=True, slots=True)
class Load:
    url: str
    body: bytes
    connections: int = 1
    seconds: float = 5.0
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator_cpu: float
    """CPU seconds per wall second of the busiest generator thread or process (1.0 = a core)."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def saturated(self) -> bool:
        return self.generator_cpu > SATURATED


class Generator(Protocol):
    name: str

    def run(self, load: Load) -> LoadResult: ...


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def pick(kind: str = "auto") -> Generator:
    """``wrk`` when it is on PATH (or asked for), else the Python fallback."""
    wrk = shutil.which("wrk")
    if kind == "wrk" and wrk is None:
        raise SystemExit("--generator wrk: wrk is not installed")
    if kind in ("auto", "wrk") and wrk is not None:
        return Wrk(wrk)
    return PythonLoad()


# -- wrk ----------------------------------------------------------------------------------------


def _lua_string(data: bytes) -> str:
    return '"' + "".join(
        chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data
    ) + '"'  # fmt: skip


def _lua_script(load: Load) -> str:
    lines = ['wrk.method = "POST"']
    lines += [f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
              for k, v in load.headers]  # fmt: skip
    if UNIQUE in load.body:
        prefix, suffix = load.body.split(UNIQUE, 1)
        lines += [
            f"local prefix, suffix = {_lua_string(prefix)}, {_lua_string(suffix)}",
            "local counter = 0",
            "request = function()",
            "  counter = counter + 1",
            '  return wrk.format(nil, nil, nil, prefix .. "w" .. counter .. suffix)',
            "end",
        ]
    else:
        lines.append(f"wrk.body = {_lua_string(load.body)}")
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        '  io.write(string.format(\'WRKJSON {"requests": %d, "duration_us": %d, \'',
        '    .. \'"errors": %d, "p50_us": %.1f, "p99_us": %.1f}\\n\',',
        "    summary.requests, summary.duration,",
        "    e.connect + e.read + e.write + e.status + e.timeout,",
        "    latency:percentile(50), latency:percentile(99)))",
        "end",
    ]
    return "\n".join(lines) + "\n"


class Wrk:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        version = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
        self.name = f"wrk {version[1] if len(version) > 1 else ''} (1 thread)".replace("  ", " ")

    def run(self, load: Load) -> LoadResult:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(_lua_script(load))
        args = [
            self.binary, "-t1", f"-c{load.connections}", f"-d{max(1, round(load.seconds))}s",
            "--timeout", "10s", "-s", script.name, load.url,
        ]  # fmt: skip
        before = _children_cpu()
        try:
            done = subprocess.run(args, capture_output=True, timeout=load.seconds + 30, check=False)
        finally:
            os.unlink(script.name)
        cpu = _children_cpu() - before  # wrk is the only child reaped in between
        out = done.stdout.decode()
        summary = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
        if done.returncode != 0 or summary is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.decode()}{out}")
        data = orjson.loads(summary.removeprefix("WRKJSON "))
        seconds = data["duration_us"] / 1e6
        return LoadResult(
            requests=data["requests"],
            errors=data["errors"],
            seconds=seconds,
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            generator_cpu=cpu / seconds if seconds else 0.0,
        )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- Python fallback ----------------------------------------------------------------------------


class PythonLoad:
    def __init__(self, processes: int | None = None) -> None:
        # Half the cores: the server under test needs one of its own.
        self.processes = processes or max(1, (os.cpu_count() or 2) // 2)
        plural = "es" if self.processes > 1 else ""
        self.name = f"python ({self.processes} process{plural}, asyncio raw sockets)"

    def run(self, load: Load) -> LoadResult:
        workers = min(self.processes, load.connections)
        start_at = time.time() + 1.0  # time for every worker to import and connect
        procs = []
        for w in range(workers):
            spec = {
                **asdict(load),
                "body": load.body.decode("latin-1"),
                "connections": len(range(w, load.connections, workers)),
                "start_at": start_at,
                "tag": f"p{w}",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.loadgen", "--worker", orjson.dumps(spec)],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        reports = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=load.seconds + 40)
                if proc.returncode != 0:
                    raise RuntimeError(f"load worker failed: {err.decode()}")
                reports.append(orjson.loads(out))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        latencies = [x for r in reports for x in r["latencies_ms"]]
        return LoadResult(
            requests=len(latencies),
            errors=sum(r["errors"] for r in reports),
            seconds=load.seconds,
            p50_ms=statistics.median(latencies) if latencies else 0.0,
            p99_ms=percentile(latencies, 0.99),
            generator_cpu=max(r["cpu_seconds"] / r["wall_seconds"] for r in reports),
        )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        await reader.readexactly(int(lower[at + 17 : end]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(
    host: str,
    port: int,
    request: Callable[[int], bytes],
    offset: int,
    deadline: float,
    latencies: list[float],
) -> int:
    errors = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 1
    i = 0
    try:
        while (started := time.perf_counter()) < deadline:
            writer.write(request(i * 1000 + offset))  # unique per connection
            await writer.drain()
            i += 1
            status = await _read_response(reader)
            latencies.append((time.perf_counter() - started) * 1000)
            errors += status >= 400
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        errors += 1
    finally:
        writer.close()
    return errors


def _requests(spec: dict[str, Any]) -> Callable[[int], bytes]:
    url = urlsplit(spec["url"])
    head = f"POST {url.path or '/'} HTTP/1.1\r\nhost: {url.netloc}\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in spec["headers"])
    body: bytes = spec["body"].encode("latin-1")
    fixed = head + b"content-length: %d\r\n\r\n" % len(body) + body
    if UNIQUE not in body:
        return lambda i: fixed
    tag = spec["tag"].encode()

    def unique(i: int) -> bytes:
        b = body.replace(UNIQUE, b"%s-%d" % (tag, i))
        return head + b"content-length: %d\r\n\r\n" % len(b) + b

    return unique


async def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(spec["url"])
    request = _requests(spec)
    await asyncio.sleep(max(0.0, spec["start_at"] - time.time()))
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    wall_start = time.perf_counter()
    deadline = wall_start + spec["seconds"]
    latencies: list[float] = []
    connections = [
        _connection(url.hostname or "127.0.0.1", url.port or 80, request, c, deadline, latencies)
        for c in range(spec["connections"])
    ]
    errors = await asyncio.wait_for(asyncio.gather(*connections), spec["seconds"] + 15)
    wall = time.perf_counter() - wall_start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    return {
        "latencies_ms": latencies,
        "errors": sum(errors),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
    }


def _run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: dict[str, Any] = uvloop.run(coro)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help="internal: run one load process from a JSON spec")
    parser.add_argument("--url", help="POST this URL (a quick manual run)")
    parser.add_argument("--body", default='{"model": "m", "messages": []}')
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    if args.worker:
        view = memoryview(orjson.dumps(_run(_worker(orjson.loads(args.worker)))))
        while view:  # after uvloop.run a large write to a pipe can come back partial
            view = view[os.write(sys.stdout.fileno(), view) :]
        return
    if not args.url:
        parser.error("--url is required")
    generator = pick(args.generator)
    load = Load(args.url, args.body.encode(), args.connections, args.seconds)
    result = generator.run(load)
    print(generator.name, orjson.dumps({**asdict(result), "rps": result.rps}).decode())


if __name__ == "__main__":
    main()
