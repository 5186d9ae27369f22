"""Red-team review of the changes since f6f9f1e: each test failed on the HEAD it was written
against."""

from __future__ import annotations

import gzip
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import orjson
import pytest
import respx

from tests.unit.harness import FakeClock, completion, make_proxy
from tests.unit.test_large_answers import LIMIT, TEXT, Client

pytestmark = pytest.mark.anyio

AUTH = {"authorization": "Bearer sk-test-a"}


class _CutClient(Client):
    """As test_large_answers.Client, but records whether the app ended the body cleanly (a
    final ``more_body: False``) or raised (the server then drops the connection: the client
    sees a broken answer, which SDKs retry)."""

    ended_cleanly = False
    raised: BaseException | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.ended_cleanly = True
        await super().send(message)

    async def run(self) -> None:
        try:
            await super().run()
        except Exception as exc:  # what uvicorn would log, then close the connection
            self.raised = exc
            self.done.set()


@pytest.mark.parametrize("encoding", [None, "gzip", "length"])
async def test_an_over_limit_answer_cut_mid_body_is_not_ended_as_if_whole(
    clock: FakeClock, encoding: str | None
) -> None:
    """The upstream sends half of an answer over the entry limit (no Content-Length: chunked,
    or gzip, whose length semcache drops) and then the connection breaks. Read whole (before
    f00f537) the client got a 502 its SDK retries; relayed as it arrives, the status is out,
    but the body must not then end as if it were whole: a chunked answer that ends cleanly
    is a complete 200 to every HTTP client, and a truncated JSON body is a parse error no SDK
    retries. Only a broken connection tells the client."""
    body = orjson.dumps(completion(TEXT))
    headers = {"content-type": "application/json"}
    if encoding == "gzip":
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    if encoding == "length":  # semcache relays it chunked: its own framing, not the upstream's
        headers["content-length"] = str(len(body))
    half = len(body) // 2

    async def cut() -> Any:
        yield body[:half]
        await anyio.lowlevel.checkpoint()
        raise httpx.ReadError("connection reset by peer")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=cut(), headers=headers)

    with respx.mock(assert_all_called=False) as router:
        router.post("http://upstream.test/v1/chat/completions").mock(side_effect=answer)
        async with make_proxy(router, clock, max_entry_bytes=LIMIT) as proxy:
            client = _CutClient(
                proxy.app, "/v1/chat/completions",
                {"model": "m", "messages": [{"role": "user", "content": "large"}]},
            )  # fmt: skip
            with anyio.fail_after(5):
                await client.run()
    assert client.status == 200
    assert len(client.body) < len(orjson.dumps(completion(TEXT)))
    assert not client.ended_cleanly, "a truncated answer was ended as a complete one"


ADMIN = {"authorization": "Bearer admin-token"}


async def test_the_admin_filters_by_a_namespace_as_its_listing_shows_it(clock: FakeClock) -> None:
    """``GET /cache/entries`` names each entry's namespace; an entry made with
    ``X-Cache-Namespace`` (or a query string) has a scoped one, ``<namespace>~<hmac>``. Given
    back as ``?namespace=``, that partition's entries are listed (and can be deleted: one end
    user's entries), not none: the filter compared only the part before ``~`` with all of it."""
    with respx.mock(assert_all_called=False) as router:
        router.post("http://upstream.test/v1/chat/completions").respond(200, json=completion())
        async with make_proxy(router, clock, admin_token="admin-token") as proxy:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for partition in ("user-1", "user-2"):
                sent = await proxy.client.post(
                    "/v1/chat/completions", json=body,
                    headers={**AUTH, "x-cache-namespace": partition},
                )  # fmt: skip
                assert sent.headers["x-cache"] == "MISS"
            await proxy.client.post("/v1/chat/completions", json=body, headers=AUTH)
            listed = (await proxy.client.get("/cache/entries", headers=ADMIN)).json()["entries"]
            scoped = sorted(e["namespace"] for e in listed if "~" in e["namespace"])
            assert len(scoped) == 2
            tenant = (await proxy.client.get(
                "/cache/entries", headers={**ADMIN, "x-cache-tenant-key": "sk-test-a"}
            )).json()["entries"]  # fmt: skip
            assert len(tenant) == 3  # the tenant's filter takes its partitions too
            one = (await proxy.client.get(
                "/cache/entries", params={"namespace": scoped[0]}, headers=ADMIN
            )).json()["entries"]  # fmt: skip
    assert [e["namespace"] for e in one] == [scoped[0]]
