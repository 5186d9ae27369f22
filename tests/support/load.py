"""Concurrent chat load against the proxy, checking that every answer belongs to its prompt.

For fault tests and ``bench/faults.py``. The fake upstream answers ``answer N: <prompt>``, so an
answer served for the wrong prompt (a cache mix-up) shows as a mismatch of the echoed prompt.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson

CHAT = "/v1/chat/completions"
_ANSWER = re.compile(r"answer \d+: (.*)\Z", re.S)


def belongs(content: object, prompt: str) -> bool:
    """True when ``content`` is the fake upstream's answer to ``prompt``."""
    match = _ANSWER.match(content) if isinstance(content, str) else None
    return match is not None and match.group(1) == prompt


def chat_body(prompt: str, *, model: str = "fake-model", stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    )


def sse_data(raw: bytes) -> list[bytes]:
    """The ``data:`` payloads of a whole SSE body, in order."""
    out: list[bytes] = []
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            out.append(b"\n".join(lines))
    return out


def stream_content(raw: bytes) -> tuple[str | None, str | None]:
    """(content of choice 0, problem) of a whole chat SSE body; a problem when the stream has an
    ``error`` event, undecodable data or no final ``[DONE]``."""
    data = sse_data(raw)
    if not data or data[-1] != b"[DONE]":
        return None, "stream without [DONE]"
    pieces: list[str] = []
    for payload in data[:-1]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None, "undecodable event"
        if not isinstance(chunk, dict) or "error" in chunk:
            return None, "error event"
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if choice.get("index", 0) == 0 and isinstance(text, str):
                pieces.append(text)
    return "".join(pieces), None


def message_content(raw: bytes) -> tuple[str | None, str | None]:
    try:
        content = orjson.loads(raw)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None, "no completion in the body"
    return (content, None) if isinstance(content, str) else (None, "content is not a string")


@dataclass(frozen=True, slots=True)
class Result:
    prompt: str
    stream: bool
    started: float
    """``time.monotonic()`` when the request was sent."""
    seconds: float
    status: int
    """HTTP status; 0 for a transport error."""
    cache: str = ""
    lookup: str = ""
    content: str | None = None
    problem: str | None = None

    @property
    def failed(self) -> bool:
        """Not a 200 with a readable completion."""
        return self.status != 200 or self.content is None

    @property
    def wrong(self) -> bool:
        """A completion that answers another prompt."""
        return self.content is not None and not belongs(self.content, self.prompt)

    @property
    def hit(self) -> bool:
        return self.cache == "HIT"


async def ask(
    client: httpx.AsyncClient,
    prompt: str,
    *,
    model: str = "fake-model",
    stream: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Result:
    """One chat completion through the proxy, timed and checked."""
    body = chat_body(prompt, model=model, stream=stream)
    sent = {"content-type": "application/json", **(headers or {})}
    started = time.monotonic()
    try:
        async with client.stream("POST", CHAT, content=body, headers=sent) as response:
            raw = await response.aread()
    except httpx.HTTPError as exc:
        seconds = time.monotonic() - started
        return Result(prompt, stream, started, seconds, 0, problem=f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    content: str | None = None
    problem: str | None = f"status {response.status_code}"
    if response.status_code == 200:
        content, problem = stream_content(raw) if stream else message_content(raw)
    return Result(
        prompt,
        stream,
        started,
        seconds,
        response.status_code,
        cache=response.headers.get("x-cache", ""),
        lookup=response.headers.get("x-cache-lookup", ""),
        content=content,
        problem=problem,
    )


def client_for(
    base_url: str, *, timeout: float = 10.0, connections: int = 256
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)


@dataclass
class PromptMix:
    """Prompts for a load: a few hot ones asked again and again, and new ones."""

    tag: str
    """Makes this load's prompts its own, so that other runs' entries never answer them."""
    hot: int = 24
    hot_share: float = 0.7
    stream_share: float = 0.25
    _fresh: int = 0

    def pick(self, rng: random.Random) -> tuple[str, bool]:
        stream = rng.random() < self.stream_share
        if rng.random() < self.hot_share:
            return f"hot question {rng.randrange(self.hot)} [{self.tag}]", stream
        self._fresh += 1
        return f"new question {self._fresh} [{self.tag}]", stream


@dataclass
class Load:
    """``workers`` clients asking in a loop, each waiting for its answer before the next."""

    client: httpx.AsyncClient
    mix: PromptMix
    workers: int = 16
    seed: int = 0
    headers: Mapping[str, str] = field(default_factory=lambda: {"authorization": "Bearer sk-load"})
    results: list[Result] = field(default_factory=list)

    async def run(self, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for worker in range(self.workers):
                tg.start_soon(self._worker, random.Random(self.seed * 1000 + worker), stop)

    async def _worker(self, rng: random.Random, stop: anyio.Event) -> None:
        while not stop.is_set():
            prompt, stream = self.mix.pick(rng)
            self.results.append(await ask(self.client, prompt, stream=stream, headers=self.headers))

    def since(self, moment: float) -> list[Result]:
        return [r for r in self.results if r.started >= moment]

    def summary(self) -> dict[str, Any]:
        return summarize(self.results)


def summarize(results: list[Result]) -> dict[str, Any]:
    latencies = sorted(r.seconds for r in results)
    return {
        "requests": len(results),
        "failed": sum(r.failed for r in results),
        "wrong": sum(r.wrong for r in results),
        "hits": sum(r.hit for r in results),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round((latencies[-1] if latencies else 0.0) * 1000, 1),
    }


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_until(
    condition: Callable[[], bool], *, within: float, interval: float = 0.02
) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds passed; whether it held."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await anyio.sleep(interval)
    return True
