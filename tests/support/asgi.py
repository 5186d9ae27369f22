"""A semcache app driven in-process over real HTTP semantics (httpx's ASGI transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

CAPITAL = {"model": "m", "messages": [{"role": "user", "content": "What is the capital?"}]}


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan) and a client for it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


async def asked_twice(client: httpx.AsyncClient, body: dict[str, Any] = CAPITAL) -> list[str]:
    """``X-Cache`` of the same chat asked twice (``["MISS", "HIT"]`` when the store works)."""
    return [
        (await client.post("/v1/chat/completions", json=body)).headers["x-cache"] for _ in range(2)
    ]
