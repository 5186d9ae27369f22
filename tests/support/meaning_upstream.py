"""An upstream that answers by meaning, for ``bench/audit.py``: a labelled pair file replayed as
traffic, each pair under its own API key ``sk-pair-<i>``.

The first question of pair i gets fact (i, 0); the second the same fact when the pair is
labelled a paraphrase (1), another fact (i, 1) when not (0). A fact is a city, a number and a
colour drawn from its id; each answer words it with a template drawn at random on every call,
so the same fact reads differently from call to call and from run to run: a judge must compare
meaning, not bytes. Facts of one pair never share their number.
"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
from starlette.responses import Response

from tests.support.fake_upstream import CHAT_PATH, FakeUpstream, RecordedRequest

CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Hanoi", "Quito", "Perth", "Dakar", "Riga", "Bern"]
COLOURS = ["red", "blue", "green", "amber", "violet", "grey", "white", "black"]
TEMPLATES = [
    "The answer is {n}: it is the {c} one in {city}.",
    "It is {n}. You will find the {c} one in {city}.",
    "In {city}, the {c} one, and the figure is {n}.",
    "Short answer: {n}. Longer answer: look for the {c} one in {city}.",
    "{n} is the number you want; the {c} one, in {city}.",
]
KEY_PREFIX = "sk-pair-"


def fact(pair: int, variant: int) -> dict[str, Any]:
    rng = random.Random(pair * 2 + variant)
    base = random.Random(pair).randrange(10, 9000)
    return {
        "n": base + variant * random.Random(pair + 7).randrange(1, 500),
        "c": rng.choice(COLOURS),
        "city": rng.choice(CITIES),
    }


def wording(pair: int, variant: int, rng: random.Random) -> str:
    return rng.choice(TEMPLATES).format(**fact(pair, variant))


class MeaningUpstream(FakeUpstream):
    def __init__(self, first: list[str], labels: list[int]) -> None:
        super().__init__()
        self._first = first
        self._labels = labels
        self._rng = random.Random()  # unseeded: wording changes from run to run

    async def _route(self, rec: RecordedRequest, chat_n: int) -> Response:
        if rec.method != "POST" or rec.path != CHAT_PATH or not isinstance(rec.json, dict):
            return await super()._route(rec, chat_n)
        key = rec.headers.get("authorization", "").removeprefix("Bearer ").strip()
        messages = rec.json.get("messages") or [{}]
        text = str(messages[-1].get("content", ""))
        pair = int(key.removeprefix(KEY_PREFIX)) if key.startswith(KEY_PREFIX) else -1
        if 0 <= pair < len(self._first):
            second = text != self._first[pair]
            variant = int(second and self._labels[pair] == 0)
            content = wording(pair, variant, self._rng)
        else:
            content = "I cannot tell."
        words = len(content.split())
        body = {
            "id": f"chatcmpl-meaning-{chat_n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.json.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": words, "total_tokens": 9 + words},
        }
        return Response(orjson.dumps(body), media_type="application/json")
