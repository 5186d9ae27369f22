"""``semcache warm FILE``: send listed chat requests through the proxy, so that their answers are
cached before users ask (an FAQ, yesterday's top questions).

Each line of FILE is a chat completions request body (JSON Lines). The requests go through
``/v1/chat/completions`` like any client's, with the caller's key, so they are cached under that
tenant with every rule a real request meets (an answer already cached is a hit and costs nothing
upstream). ``concurrency`` workers take lines as they go: the file is never held in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from tqdm import tqdm

from proxy.admin.client import AdminError

CHAT_PATH = "/v1/chat/completions"


@dataclass
class WarmReport:
    outcomes: Counter[str] = field(default_factory=Counter)
    """``MISS`` (sent upstream, stored), ``HIT`` (was cached), ``BYPASS``, ``error``."""
    failures: list[str] = field(default_factory=list)
    """The first few failures, a line each (``line N: ...``)."""
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line.strip()


async def warm(
    base_url: str,
    path: Path,
    *,
    api_key: str | None,
    concurrency: int,
    progress: bool = True,
    request_seconds: float = 600.0,
) -> WarmReport:
    report = WarmReport()
    total = count_lines(path)
    headers = {"content-type": "application/json"}
    if api_key is not None:
        headers["authorization"] = f"Bearer {api_key}"
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        path.open("rb") as stream,
        tqdm(total=total, unit="req", disable=not progress, desc="warm") as bar,
    ):
        lines = numbered_lines(stream)
        async with httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=request_seconds,
            limits=limits,
            trust_env=False,
        ) as client:

            async def worker() -> None:
                for number, line in lines:  # one shared iterator: each line goes once
                    outcome = await _send(client, line, number, report)
                    report.outcomes[outcome] += 1
                    bar.update(1)

            try:
                await asyncio.gather(*(worker() for _ in range(concurrency)))
            except httpx.TransportError as exc:
                raise AdminError(f"cannot reach {base_url}: {exc or type(exc).__name__}") from exc
    report.seconds = time.perf_counter() - started
    return report


async def _send(client: httpx.AsyncClient, line: bytes, number: int, report: WarmReport) -> str:
    try:
        response = await client.post(CHAT_PATH, content=line)
    except httpx.TimeoutException:
        _fail(report, number, "timed out")
        return "error"
    if response.status_code != 200:
        _fail(report, number, f"{response.status_code} {_message(response)}")
        return "error"
    return str(response.headers.get("x-cache", "?"))


def _fail(report: WarmReport, number: int, why: str) -> None:
    if len(report.failures) < 5:
        report.failures.append(f"line {number}: {why}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
