from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import respx

from tests.unit.harness import UPSTREAM, FakeClock, Proxy, make_proxy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstream_mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=UPSTREAM, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def proxy(upstream_mock: respx.MockRouter, clock: FakeClock) -> AsyncIterator[Proxy]:
    async with make_proxy(upstream_mock, clock) as p:
        yield p
