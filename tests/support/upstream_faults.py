"""Upstream faults through the proxy: each must reach the client as expected and never be stored.

The fake upstream's models choose the fault (5xx, 429 with ``Retry-After``, slow, cut, error
event, truncated, empty). Run the proxy with ``SEMCACHE_UPSTREAM_TIMEOUT`` below the fake's
``slow_seconds`` so that ``fake-slow`` is a timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson

from tests.support.fake_upstream import FakeUpstream
from tests.support.load import chat_body, sse_data


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


Check = Callable[[Fetched], str | None]
"""What is wrong with a reply, or None."""


def relayed_error(status: int, error_type: str, retry_after: str | None = None) -> Check:
    """The upstream's own error, passed through: its status, body and headers."""

    def check(got: Fetched) -> str | None:
        if got.status != status:
            return f"status {got.status}, expected {status}"
        error = (got.json() or {}).get("error") or {}
        if error.get("type") != error_type or got.headers.get("x-upstream") != "fake":
            return f"not the upstream's error body: {got.body[:200]!r}"
        if retry_after is not None and got.headers.get("retry-after") != retry_after:
            return f"retry-after {got.headers.get('retry-after')!r}, expected {retry_after!r}"
        return None

    return check


def semcache_error(status: int, code: str) -> Check:
    """semcache's own OpenAI-format error (upstream timeout or unreachable)."""

    def check(got: Fetched) -> str | None:
        body = got.json()
        error = body.get("error") if isinstance(body, dict) else None
        if got.status != status or not isinstance(error, dict) or error.get("code") != code:
            return f"expected {status} {code}, got {got.status} {got.body[:200]!r}"
        if set(error) != {"message", "type", "param", "code"}:
            return f"not an OpenAI error body: {got.body[:200]!r}"
        return None

    return check


def broken_stream(got: Fetched) -> str | None:
    """A stream that started (200) and then failed: it ends on an error event, no [DONE]."""
    data = sse_data(got.body)
    if got.status != 200 or not got.headers.get("content-type", "").startswith("text/event"):
        return f"status {got.status} {got.headers.get('content-type')}"
    if not data or b"[DONE]" in data or b'"error"' not in data[-1]:
        return f"stream does not end on an error event: {got.body[-200:]!r}"
    return None


def truncated_stream(got: Fetched) -> str | None:
    """A whole stream (ending with [DONE]) whose answer was cut short (``length``)."""
    data = sse_data(got.body)
    if got.status != 200 or not data or data[-1] != b"[DONE]":
        return f"not a complete stream: {got.status} {got.body[-200:]!r}"
    if b'"finish_reason":"length"' not in b"".join(data):
        return "no length finish"
    return None


def served(finish_reason: str | None = None, empty: bool = False) -> Check:
    """A 200 that is served but must not be stored (truncated or empty)."""

    def check(got: Fetched) -> str | None:
        try:
            choice = (got.json() or {})["choices"][0]
        except (KeyError, IndexError, TypeError):
            return f"no completion: {got.status} {got.body[:200]!r}"
        if got.status != 200:
            return f"status {got.status}"
        if finish_reason is not None and choice.get("finish_reason") != finish_reason:
            return f"finish_reason {choice.get('finish_reason')!r}"
        if empty and choice["message"].get("content"):
            return "content is not empty"
        return None

    return check


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    model: str
    check: Check
    stream: bool = False
    embeddings: bool = False
    burst: int = 1
    """Identical concurrent requests sent first (followers get their leader's error)."""


FAULTS = [
    Fault("500", "fake-error-500", relayed_error(500, "server_error"), burst=5),
    Fault("500 stream", "fake-error-500", relayed_error(500, "server_error"), stream=True),
    Fault("429", "fake-429", relayed_error(429, "rate_limit_error", "7"), burst=5),
    Fault("429 stream", "fake-429", relayed_error(429, "rate_limit_error", "7"), stream=True),
    Fault("400", "fake-error-400", relayed_error(400, "invalid_request_error")),
    Fault("timeout", "fake-slow", semcache_error(504, "upstream_timeout"), burst=3),
    Fault("timeout stream", "fake-slow", semcache_error(504, "upstream_timeout"), stream=True),
    Fault("cut", "fake-cut", semcache_error(502, "upstream_unreachable"), burst=3),
    Fault("cut stream", "fake-cut", broken_stream, stream=True),
    Fault("error event", "fake-midstream-error", broken_stream, stream=True),
    Fault("length", "fake-length", served("length")),
    Fault("length stream", "fake-length", truncated_stream, stream=True),
    Fault("empty", "fake-empty", served(empty=True)),
    Fault("embeddings 500", "fake-error-500", relayed_error(500, "server_error"), embeddings=True),
    Fault(
        "embeddings 429",
        "fake-429",
        relayed_error(429, "rate_limit_error", "7"),
        embeddings=True,
        burst=3,
    ),
]


async def fetch(client: httpx.AsyncClient, fault: Fault, prompt: str) -> Fetched | str:
    """The whole reply, or the transport error."""
    if fault.embeddings:
        path, body = "/v1/embeddings", orjson.dumps({"model": fault.model, "input": [prompt]})
    else:
        path = "/v1/chat/completions"
        body = chat_body(prompt, model=fault.model, stream=fault.stream)
    headers = {"content-type": "application/json", "authorization": "Bearer sk-faults"}
    try:
        async with client.stream("POST", path, content=body, headers=headers) as response:
            return Fetched(response.status_code, response.headers, await response.aread())
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"


@dataclass
class FaultRun:
    requests: int = 0
    passed: int = 0
    """Replies that were what the fault should give the client."""
    stored: int = 0
    """Faults whose repeat did not reach the upstream: their answer was stored."""
    problems: list[str] = field(default_factory=list)


def upstream_calls(fake: FakeUpstream, prompt: str) -> int:
    needle = prompt.encode()
    return sum(needle in r.body for r in fake.requests)


async def run_faults(
    client: httpx.AsyncClient, fake: FakeUpstream, faults: list[Fault] = FAULTS
) -> FaultRun:
    """Each fault (all at once): a burst of identical requests, then one repeat, which must
    reach the upstream again."""
    run = FaultRun()

    async def one(fault: Fault) -> None:
        prompt = f"fault {fault.name} [{id(run)}]"
        outcomes: list[Fetched | str] = []

        async def send() -> None:
            outcomes.append(await fetch(client, fault, prompt))

        async with anyio.create_task_group() as tg:
            for _ in range(fault.burst):
                tg.start_soon(send)
        before = upstream_calls(fake, prompt)
        await send()
        repeat = outcomes[-1]
        hit = isinstance(repeat, Fetched) and repeat.headers.get("x-cache") == "HIT"
        if hit or upstream_calls(fake, prompt) == before:
            run.stored += 1
            run.problems.append(f"{fault.name}: the repeat was answered from the cache")
        for outcome in outcomes:
            run.requests += 1
            problem = outcome if isinstance(outcome, str) else fault.check(outcome)
            if problem is None:
                run.passed += 1
            else:
                run.problems.append(f"{fault.name}: {problem}")

    async with anyio.create_task_group() as tg:
        for fault in faults:
            tg.start_soon(one, fault)
    return run
