"""Semantic matching with the real all-MiniLM-L6-v2 model and the shipped verifier, on both
stores, against the fake upstream over real HTTP: paraphrases hit, look-alikes with another
meaning never do (in English or in other languages)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.app import create_app
from proxy.semantic.embedders import LocalEmbedder
from proxy.semantic.verifier import load_model
from proxy.settings import Settings
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.anyio

PARAPHRASES = [
    ("What is the capital of France?", "What's the capital of France?"),
    ("What is the best way to learn Python?", "What's the best way to learn Python?"),
    ("What are some good ways to improve my sleep?", "What are good ways to improve sleep?"),
]
LOOK_ALIKES = [
    ("What is 15% of 80?", "What is 25% of 80?"),
    ("Is coffee bad for your health?", "Is coffee not bad for your health?"),
    ("What is the population of Canada?", "What is the population of Australia?"),
    ("Who won the football World Cup in 2014?", "Who won the football World Cup in 2018?"),
    ("How many grams are in 3 pounds?", "How many grams are in 3 ounces?"),
    ("What does `git rebase` do?", "What does `git merge` do?"),
    ("Summarize the advantages of remote work", "Summarize the disadvantages of remote work"),
    ("Translate 'good morning' into French", "Translate 'good morning' into Spanish"),
    ("Encrypt this file with my public key", "Decrypt this file with my public key"),
    ("What is 10 + 3?", "What is 10 - 3?"),  # the same words, another operator
    ("Is 7 > 5?", "Is 7 < 5?"),
    ("What does ls -R do?", "What does ls -r do?"),  # the same words, another case of a flag
    ("What does my_list[:3] return?", "What does my_list[3:] return?"),  # a colon as code
    # Other languages: the English model and rules never judge them, so no semantic hit.
    ("Quelle est la capitale de l'Australie ?", "Quelle est la capitale de l'Autriche ?"),
    ("¿Es malo el café para la salud?", "¿No es malo el café para la salud?"),
    ("如何学习Python编程？", "如何学习Java编程？"),
]


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    """One loaded model for the whole session: the embedder and the verifier's reader."""
    model = LocalEmbedder("all-MiniLM-L6-v2", projection=load_model().projection)
    model.encode(["warm up"])
    return model


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, minilm: LocalEmbedder
) -> AsyncIterator[httpx.AsyncClient]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = Settings(
        upstream_url=fake_upstream.url, redis_url=redis_url, embed_model=minilm.name
    )
    app = create_app(settings, embedder=minilm)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://semcache.test"
        ) as client,
    ):
        yield client


async def ask(client: httpx.AsyncClient, text: str) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-fake", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": "Bearer sk-meaning"},
    )


@pytest.mark.parametrize(("first", "second"), PARAPHRASES)
async def test_paraphrases_hit(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream, first: str, second: str
) -> None:
    original = await ask(client, first)
    rephrased = await ask(client, second)
    assert rephrased.headers["x-cache"] == "HIT", rephrased.headers
    assert rephrased.headers["x-cache-lookup"] == "semantic"
    assert rephrased.json() == original.json()
    assert fake_upstream.calls() == 1


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
async def test_look_alikes_never_hit(
    client: httpx.AsyncClient, fake_upstream: FakeUpstream, first: str, second: str
) -> None:
    await ask(client, first)
    other = await ask(client, second)
    assert other.headers["x-cache"] == "MISS"
    assert other.json()["choices"][0]["message"]["content"] == f"answer 2: {second}"
    assert fake_upstream.calls() == 2
