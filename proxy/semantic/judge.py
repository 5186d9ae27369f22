"""Does a cached answer say what a fresh one says? The comparison behind shadow mode, audits
and free observations (:mod:`proxy.semantic.audit`). It compares meaning, not bytes (an
upstream words the same answer differently from call to call), and it is strict where meaning
hangs on a detail:

1. **Tool calls**: the same functions with the same arguments (as JSON values), in any order;
   an answer with calls and one without differ.
2. **Numbers**: the same set of numbers in both texts ("42", "3.5", "1,000" = "1000",
   ".5" = "0.5", "1e5" = "100000", "\u22125" = "-5").
3. **Yes or no**: two answers that open with opposite "yes" / "no" differ (markup before
   the word aside: "**No.**", "# Yes").
4. **Code**: the same fenced code blocks (``` or ~~~; one left open runs to the end),
   whitespace aside.
5. **Names**: two answers that both name things (capitalized words inside a sentence) but
   share none of those names differ ("Canberra, in Australia" against "Vienna, in Austria").
6. **Text**: the two answers' embeddings (the proxy's own embedder) at cosine
   ``min_similarity`` or more; with no embedder, the same words.

Its own error is measured by ``bench/audit.py`` (``judge_error_rate``), and the upstream's
variability by audits of exact hits at temperature 0, where the answers must agree.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from proxy.settings import DEFAULT_JUDGE_SIMILARITY

EmbedTexts = Callable[[list[str]], Awaitable[npt.NDArray[np.float32]]]
"""Unit vectors for texts, one row each."""

_NUMBER = re.compile(r"(?<![\w.])[-\u2212]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+(?!\w))?")
_CODE = re.compile(r"(`{3,}|~{3,})[^\n]*\n(.*?)(?:\1|\Z)", re.DOTALL)
"""A fenced code block, ``` or ~~~ (CommonMark), to its closing fence or the end of the text."""
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"(?<=[.!?:;])\s+")
_NAME = re.compile(r"\b[A-Z][\w-]+")


class AnswerJudge:
    def __init__(
        self, embed: EmbedTexts | None, *, min_similarity: float = DEFAULT_JUDGE_SIMILARITY
    ) -> None:
        self._embed = embed
        self.min_similarity = min_similarity

    async def same(self, cached: Any, fresh: Any) -> bool:
        """Whether two chat completions (JSON objects) give the same answer."""
        a, b = _message(cached), _message(fresh)
        if _calls(a) != _calls(b):
            return False
        text_a, text_b = _text(a), _text(b)
        if not text_a and not text_b:
            return True
        if not text_a or not text_b:
            return False
        if _numbers(text_a) != _numbers(text_b) or _code(text_a) != _code(text_b):
            return False
        polarity_a, polarity_b = _polarity(text_a), _polarity(text_b)
        if polarity_a and polarity_b and polarity_a != polarity_b:
            return False
        names_a, names_b = _names(text_a), _names(text_b)
        if names_a and names_b and not names_a & names_b:
            return False
        if self._embed is None:
            return _words(text_a) == _words(text_b)
        vectors = await self._embed([text_a, text_b])
        return float(vectors[0] @ vectors[1]) >= self.min_similarity


def _message(completion: Any) -> dict[str, Any]:
    if not isinstance(completion, dict):
        return {}
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return {}
    message = choices[0].get("message")
    return message if isinstance(message, dict) else {}


def _calls(message: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Each tool call (and a legacy ``function_call``) as its name and canonical arguments."""
    calls = []
    legacy = message.get("function_call")
    given = [*(message.get("tool_calls") or []), *([{"function": legacy}] if legacy else [])]
    for call in given:
        function = (call.get("function") or {}) if isinstance(call, dict) else {}
        arguments = function.get("arguments") or ""
        try:
            canonical = orjson.dumps(orjson.loads(arguments), option=orjson.OPT_SORT_KEYS)
        except orjson.JSONDecodeError:
            canonical = str(arguments).encode()
        calls.append((str(function.get("name")), canonical))
    return sorted(calls)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content.strip() if isinstance(content, str) else ""


def _numbers(text: str) -> set[str]:
    return {f"{float(_plain(n)):.12g}" for n in _NUMBER.findall(text)}


def _plain(number: str) -> str:
    """A number as ``float`` reads it: no thousands separators, an ASCII minus."""
    return number.replace(",", "").replace("\u2212", "-")


def _code(text: str) -> list[str]:
    return [" ".join(block.split()) for _, block in _CODE.findall(text)]


def _polarity(text: str) -> str | None:
    """The opening "yes" or "no", past any markup before it ("**No.**", "# Yes", "> No")."""
    first = _WORD.search(text.lower())
    word = first.group() if first else ""
    return word if word in ("yes", "no") else None


def _names(text: str) -> set[str]:
    """Capitalized words that do not open a sentence ("I" aside)."""
    names: set[str] = set()
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        names.update(m.group() for m in _NAME.finditer(sentence) if m.start() > 0)
    return names


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
