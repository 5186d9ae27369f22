"""The upstream client: which proxy it goes through, the URLs it builds, compressed answers."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import aiohttp
import httpx
import multidict
import orjson
import pytest
import yarl

from proxy.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnreachableError
from proxy.metrics import Metrics
from proxy.upstream import Timeouts, Upstream
from proxy.upstream.body import PIECE_BYTES, Decoder
from proxy.upstream.transport import AiohttpTransport, httpx_error, upstream_transport
from tests.unit.harness import Proxy, chat_body, completion

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


URL = "https://api.example.test/v1"
REQUEST_INFO = aiohttp.RequestInfo(
    yarl.URL(URL), "POST", multidict.CIMultiDictProxy(multidict.CIMultiDict()), yarl.URL(URL)
)


def proxy_of(url: str = URL) -> str | None:
    """The proxy the upstream transport for ``url`` goes through, None for direct."""
    transport = upstream_transport(url)
    assert isinstance(transport, AiohttpTransport)
    return None if transport.proxy is None else str(transport.proxy.url)


def test_direct_without_a_proxy() -> None:
    assert proxy_of() is None


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "ALL_PROXY", "https_proxy"])
def test_an_environment_proxy_is_used(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://proxy.example.test:3128")
    assert proxy_of() == "http://proxy.example.test:3128"


def test_a_proxy_for_the_other_scheme_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.test:3128")
    assert proxy_of() is None
    assert proxy_of("http://api.example.test/v1") == "http://proxy.example.test:3128"


def test_no_proxy_exempts_the_upstream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,api.example.test")
    assert proxy_of() is None


def test_expect_is_not_forwarded() -> None:
    """semcache read the body already; aiohttp would wait for a 100 Continue before sending."""
    upstream = Upstream(
        upstream_transport(URL), base_url=URL, api_key=None, metrics=Metrics(),
        timeouts=Timeouts(),
    )  # fmt: skip
    forwarded = upstream.forward_headers([(b"Expect", b"100-continue"), (b"x-a", b"1")])
    assert forwarded == [(b"x-a", b"1")]


@pytest.mark.parametrize(
    ("to", "sent"),
    [
        (None, True),
        ("https://api.example.test/v1/chat/completions", True),
        ("HTTPS://API.example.test:443/api/chat", True),  # the same origin, spelled otherwise
        ("http://ollama.internal:11434/api/chat", False),
        ("https://api.example.test:8443/api/chat", False),
        ("http://api.example.test/api/chat", False),
    ],
)
def test_the_server_key_goes_to_the_upstreams_origin_only(to: str | None, sent: bool) -> None:
    """Must NOT leak: ``SEMCACHE_UPSTREAM_API_KEY`` is added to keyless requests for the
    upstream, never to another host (an Ollama at ``SEMCACHE_OLLAMA_URL``)."""
    upstream = Upstream(
        upstream_transport(URL), base_url="https://api.example.test/v1", api_key="sk-server",
        metrics=Metrics(), timeouts=Timeouts(),
    )  # fmt: skip
    forwarded = upstream.forward_headers([(b"x-a", b"1")], to=to)
    assert ((b"authorization", b"Bearer sk-server") in forwarded) == sent
    client_key = upstream.forward_headers([(b"authorization", b"Bearer sk-client")], to=to)
    assert client_key == [(b"authorization", b"Bearer sk-client")]  # the client's own: as sent


@pytest.mark.parametrize(
    ("base", "path", "query", "url"),
    [
        ("https://x.test/v1", "/chat/completions", b"", "https://x.test/v1/chat/completions"),
        ("https://x.test/v1/", "/models", b"limit=2", "https://x.test/v1/models?limit=2"),
        (
            "https://r.openai.azure.com/openai/deployments/gpt?api-version=2024-10-21",
            "/chat/completions",
            b"",
            "https://r.openai.azure.com/openai/deployments/gpt/chat/completions"
            "?api-version=2024-10-21",
        ),
        (
            "https://r.openai.azure.com/openai/deployments/gpt?api-version=2024-10-21",
            "/chat/completions",
            b"trace=1",
            "https://r.openai.azure.com/openai/deployments/gpt/chat/completions"
            "?api-version=2024-10-21&trace=1",
        ),
    ],
)
def test_a_query_in_the_base_url_stays_a_query(
    base: str, path: str, query: bytes, url: str
) -> None:
    upstream = Upstream(
        upstream_transport(URL), base_url=base, api_key=None, metrics=Metrics(),
        timeouts=Timeouts(),
    )  # fmt: skip
    assert upstream.url(path, query) == url


@pytest.mark.parametrize(
    ("cause", "error", "label"),
    [
        (aiohttp.ServerDisconnectedError(), UpstreamUnreachableError, "unreachable"),
        (aiohttp.ClientOSError(111, "refused"), UpstreamUnreachableError, "unreachable"),
        (aiohttp.ConnectionTimeoutError(), UpstreamUnreachableError, "connect timeout"),
        (aiohttp.SocketTimeoutError(), UpstreamTimeoutError, "timeout"),
        (aiohttp.ClientPayloadError("cut"), UpstreamUnreachableError, "unreachable"),
        (
            aiohttp.ClientResponseError(REQUEST_INFO, (), message="malformed"),
            UpstreamUnreachableError,
            "unreachable",
        ),
    ],
    ids=["disconnected", "refused", "connect-timeout", "read-timeout", "cut", "malformed"],
)
def test_transport_errors_are_classified_by_their_cause(
    cause: aiohttp.ClientError, error: type[UpstreamError], label: str
) -> None:
    """The transport turns all these but the last into httpx errors (ReadError, ConnectError,
    ConnectTimeout, ReadTimeout); what the client gets (504 for a read timeout, 502 else)
    follows the cause."""
    metrics = Metrics()
    upstream = Upstream(
        upstream_transport(URL), base_url=URL, api_key=None, metrics=metrics, timeouts=Timeouts()
    )
    with pytest.raises(error), upstream.errors():
        raise httpx_error(cause) from cause
    assert metrics.upstream_errors == {label: 1}


def deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", deflate_raw),
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
    ],
)
async def test_compressed_answers_are_decoded_served_and_stored(
    proxy: Proxy, encoding: str, pack: Callable[[bytes], bytes]
) -> None:
    payload = orjson.dumps(completion("decoded"))
    route = proxy.upstream.post("/chat/completions").respond(
        200, content=pack(payload), headers={"content-encoding": encoding}
    )
    first = await proxy.chat(chat_body())
    second = await proxy.chat(chat_body())
    assert route.call_count == 1
    assert "gzip" in route.calls[0].request.headers["accept-encoding"]
    for response in (first, second):
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
        assert response.json()["choices"][0]["message"]["content"] == "decoded"
    assert second.headers["x-cache"] == "HIT"


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", deflate_raw),
        (b"gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_a_body_is_decoded_as_it_arrives_in_bounded_pieces(
    encoding: bytes, pack: Callable[[bytes], bytes], chunk_bytes: int
) -> None:
    """Any chunking gives the same bytes (raw deflate told from zlib's wrapper on the first
    bytes), and no piece is larger than ``PIECE_BYTES`` (a small compressed chunk can hold
    megabytes)."""
    payload = b"0123456789abcdef" * 200_000  # 3.2 MB, a few KB compressed
    packed = pack(payload)
    decoder = Decoder.of(encoding)
    assert decoder is not None
    pieces = [
        piece
        for i in range(0, len(packed), chunk_bytes)
        for piece in decoder.feed(packed[i : i + chunk_bytes])
    ]
    pieces += decoder.finish()
    assert b"".join(pieces) == payload
    assert max(len(piece) for piece in pieces) <= PIECE_BYTES


def test_a_body_cut_before_its_encoding_ends_is_an_error() -> None:
    decoder = Decoder.of(b"gzip")
    assert decoder is not None
    list(decoder.feed(gzip.compress(b"hello" * 1000)[:-8]))
    with pytest.raises(zlib.error):
        list(decoder.finish())
    assert Decoder.of(b"identity") is None
    with pytest.raises(ValueError, match="br"):
        Decoder.of(b"br")


@pytest.mark.anyio
async def test_an_undecodable_answer_is_a_502_and_not_stored(proxy: Proxy) -> None:
    broken = httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip at all")
    )
    route = proxy.upstream.post("/chat/completions").mock(return_value=broken)
    first = await proxy.chat(chat_body())
    assert first.status_code == 502
    assert first.json()["error"]["type"]
    assert (await proxy.chat(chat_body())).status_code == 502
    assert route.call_count == 2


@pytest.mark.anyio
async def test_a_key_in_the_upstream_url_never_reaches_clients_or_readyz() -> None:
    """aiohttp's connect-timeout message names the whole request URL: a key in the upstream
    URL's query (``?key=``, masked in stats and logs) went into every tenant's 502 body and the
    unauthenticated ``/readyz``."""
    import asyncio

    from proxy.app import create_app
    from proxy.settings import Settings

    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, never answers the TLS hello

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        upstream_url=f"https://127.0.0.1:{port}/v1?key=sk-live-SECRET123",
        upstream_connect_timeout_seconds=0.3,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ready = await client.get("/readyz")
                chat = await client.post("/v1/chat/completions", json=chat_body())
    finally:
        server.close()
        for writer in held:
            writer.close()
    assert (ready.status_code, chat.status_code) == (503, 502)
    assert "timeout" in chat.json()["error"]["message"]
    for text in (ready.text, chat.text):
        assert "SECRET123" not in text
        assert f"127.0.0.1:{port}" in text or "upstream" in text  # still says what failed


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("Connection timeout to host https://h:1/v1/models?key=sk-1",
         "Connection timeout to host https://h:1/v1/models?key=***"),
        ("Cannot connect to host http://u:pw@h/v1 ssl:default", "http://u:***@h/v1 ssl:default"),
        ("at https://x.openai.azure.com/o?api-version=2024-10-21&sig=abc.",
         "at https://x.openai.azure.com/o?api-version=2024-10-21&sig=***"),
        ("no url here", "no url here"),
    ],
)  # fmt: skip
def test_urls_in_an_error_message_are_masked(message: str, shown: str) -> None:
    from proxy.settings import mask_urls

    assert shown in mask_urls(message)
    assert "sk-1" not in mask_urls(message)
    assert "pw@" not in mask_urls(message)
