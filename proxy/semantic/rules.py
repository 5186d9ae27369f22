"""The few narrow rules the verifier keeps: differences token vectors barely see.

A sentence embedding, and the token vectors under it, put "2+2" next to "2+3", "is" next to
"is not" and "refundable" next to "non-refundable". Each rule compares one such detail and
names the difference; the verifier rejects a pair any rule objects to before its model runs
(the model is trained on the pairs the rules let through).

Which rules are here is measured, not assumed: ``python bench/train_verifier.py`` prints, per
rule, the label-0 and label-1 pairs it rejects above the retrieval floor on sets it was not
written from (traps-dev, qqp-dev); a rule that cost more paraphrases than it stopped
look-alikes there was dropped (a rule for a wh-word that is subject on one side and object on
the other, "Who reports to X?" vs "Who does X report to?", refused 2 look-alikes and 5
paraphrases of qqp-dev and 1 paraphrase of traps-dev). :func:`case` is the exception: those
sets hold no look-alike of its kind, and the one qqp-dev paraphrase it refuses the model
refuses too; it is kept for flags, units and symbols (tested). Every rule but
:func:`numbers` and :func:`case` reads English only and is skipped unless both prompts are
English (:mod:`proxy.semantic.language`): "no" is Spanish too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from proxy.semantic.features import same_words
from proxy.semantic.language import is_english

Rule = Callable[[str, str], bool]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20",
    "hundred": "100", "thousand": "1000", "million": "1e6", "billion": "1e9", "first": "1st",
    "third": "3rd", "half": "0.5", "twice": "2x", "dozen": "12",
}  # fmt: skip
# "one" and "second" are left out: mostly a pronoun and a unit of time.
_NEGATION = re.compile(r"\b(?:not|no|never|without|cannot|none|nobody|nothing|neither|nor)\b|n't\b")
_PREFIXES = ("non", "un", "in", "im", "il", "ir", "dis", "anti", "de", "over", "under", "mis")
_OPPOSITES = (
    ("before", "after"), ("more", "less"), ("more", "fewer"), ("above", "below"),
    ("over", "under"), ("with", "without"), ("for", "against"), ("to", "from"),
    ("increase", "decrease"), ("all", "any"), ("min", "max"), ("minimum", "maximum"),
    ("first", "last"), ("start", "end"), ("buy", "sell"), ("import", "export"),
    ("inside", "outside"), ("upper", "lower"), ("higher", "lower"), ("open", "close"),
    ("add", "remove"), ("enable", "disable"), ("encode", "decode"), ("encrypt", "decrypt"),
    ("win", "lose"), ("push", "pull"), ("input", "output"), ("largest", "smallest"),
    ("biggest", "smallest"), ("fastest", "slowest"), ("best", "worst"), ("pros", "cons"),
    ("advantages", "disadvantages"), ("benefits", "risks"),
)  # fmt: skip
_OPPOSITE: dict[str, frozenset[str]] = {}
for _a, _b in _OPPOSITES:
    _OPPOSITE[_a] = _OPPOSITE.get(_a, frozenset()) | {_b}
    _OPPOSITE[_b] = _OPPOSITE.get(_b, frozenset()) | {_a}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _number_set(text: str) -> frozenset[str]:
    found = {d.replace(",", "") for d in _DIGITS.findall(text)}
    if is_english(text):
        found |= {_NUMBER_WORDS[w] for w in _words(text) if w in _NUMBER_WORDS}
    return frozenset(found)


def numbers(a: str, b: str) -> bool:
    """Digits (2+2 vs 2+3, 2014 vs 2018, 404 vs 403) in any language, and English number words
    (three = 3): the sets must be equal."""
    return _number_set(a) != _number_set(b)


def negation(a: str, b: str) -> bool:
    """English negations (not, no, never, without, n't...): a different count on each side."""
    return len(_NEGATION.findall(a.lower())) != len(_NEGATION.findall(b.lower()))


def antonym_prefix(a: str, b: str) -> bool:
    """A word on one side is the other side's word with a negating prefix (refundable vs
    non-refundable, advantages vs disadvantages, legal vs illegal)."""
    wa = {w.replace("-", "") for w in re.findall(r"[a-z][a-z-]+", a.lower())}
    wb = {w.replace("-", "") for w in re.findall(r"[a-z][a-z-]+", b.lower())}
    for mine, theirs in ((wa - wb, wb - wa), (wb - wa, wa - wb)):
        for word in mine:
            for prefix in _PREFIXES:
                stem = word[len(prefix) :]
                if word.startswith(prefix) and len(stem) >= 4 and stem in theirs:
                    return True
    return False


_CASE_TOKEN = re.compile(r"(?:(?P<flag>(?<![\w-])-|\\)|(?P<number>\d) ?)?(?P<word>[^\W\d_]+)")
_FLAG, _UNIT, _WORD_ONLY = 2, 1, 0


def _case_forms(text: str) -> dict[str, set[tuple[str, int]]]:
    """Each word by its case-folded form: how it is written, and where (a one-letter flag or
    escape, ``ls -R``, ``\\S``; right after a number, ``10 mW``; elsewhere)."""
    forms: dict[str, set[tuple[str, int]]] = {}
    for m in _CASE_TOKEN.finditer(text):
        word = m["word"]
        where = _WORD_ONLY
        if m["flag"] is not None and len(word) == 1:
            where = _FLAG
        elif m["number"] is not None:
            where = _UNIT
        forms.setdefault(word.casefold(), set()).add((word, where))
    return forms


def case(a: str, b: str) -> bool:
    """A word written in another case where case is its meaning, not the writer's habit: a
    one-letter flag or escape (``ls -R`` vs ``ls -r``, ``\\S`` vs ``\\s``); with a capital on
    both sides, a unit after a number (``10 MW`` vs ``10 mW``) or a word of one or two letters
    (``CO`` vs ``Co``, ``MB`` vs ``Mb``). A prompt with no lowercase letter (written in capitals
    throughout) says nothing about case."""
    if not any(c.islower() for c in a) or not any(c.islower() for c in b):
        return False
    fa, fb = _case_forms(a), _case_forms(b)
    for key in fa.keys() & fb.keys():
        for x, x_where in fa[key] - fb[key]:
            for y, y_where in fb[key] - fa[key]:
                where = max(x_where, y_where)
                capitals = not x.islower() and not y.islower()
                if x != y and (where == _FLAG or (capitals and (where == _UNIT or len(key) <= 2))):
                    return True
    return False


_ACRONYM_WORDS = frozenset({
    "it", "us", "am", "as", "or", "and", "on", "in", "at", "me", "who", "go", "up", "we", "he",
    "if", "of", "to", "by", "my", "an", "be",
})  # fmt: skip
"""English function words that are also acronyms in capitals (IT, US, WHO, OR, ME, UP...)."""


def capitals(a: str, b: str, *, english: bool = True) -> bool:
    """For two prompts with the same words (:func:`proxy.semantic.features.same_words`), where
    case alone is the meaning and :func:`case` lets it by because one side is lowercase: an
    acronym in capitals that is an English function word on the other side (``IT`` vs ``it``,
    ``US`` vs ``us``, ``WHO`` vs ``who``; with ``english`` only), unless it sits among other
    words in capitals (shouting); or a unit of two or three letters after a number whose
    prefix is mega or milli, peta or pico (``1 Mg`` vs ``1 mg``, ``5 Mb`` vs ``5 mb``)."""
    wa, wb = list(_CASE_TOKEN.finditer(a)), list(_CASE_TOKEN.finditer(b))
    if len(wa) != len(wb):
        return False
    for i, (ma, mb) in enumerate(zip(wa, wb, strict=True)):
        x, y = ma["word"], mb["word"]
        if x == y or x.casefold() != y.casefold():
            continue
        unit = ma["number"] is not None and mb["number"] is not None and 2 <= len(x) <= 3
        if unit and x[0] != y[0] and x[1:] == y[1:] and x[0] in "MmPp":
            return True
        if english and x.casefold() in _ACRONYM_WORDS:
            for caps, lower, words in ((x, y, wa), (y, x, wb)):
                if caps.isupper() and lower.islower() and not _shouting(words, i):
                    return True
    return False


def _shouting(words: list[re.Match[str]], i: int) -> bool:
    """Whether a word in capitals has another word in capitals beside it."""
    near = [words[j]["word"] for j in (i - 1, i + 1) if 0 <= j < len(words)]
    return any(len(w) > 1 and w.isupper() for w in near)


def opposite(a: str, b: str) -> bool:
    """A closed-class opposite in place of the other (before/after, more/less, with/without,
    buy/sell, encode/decode, pros/cons...)."""
    wa, wb = set(_words(a)), set(_words(b))
    return any(_OPPOSITE.get(w, frozenset()) & (wb - wa) for w in wa - wb)


RULES: tuple[tuple[str, Rule, bool], ...] = (
    ("number", numbers, False),
    ("negation", negation, True),
    ("antonym_prefix", antonym_prefix, True),
    ("opposite", opposite, True),
    ("case", case, False),
)
"""(name, rule, English only), in the order they run."""


_QUOTES = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")
"""Curly quotes as straight ones: "shouldn\u2019t" has the negation "shouldn't" has."""


def objection(a: str, b: str, *, english: bool) -> str | None:
    """The name of the rule that refuses ``a`` against ``b``, if any (:func:`screen`)."""
    return screen(a, b, english=english)[0]


def screen(a: str, b: str, *, english: bool) -> tuple[str | None, bool]:
    """The name of the rule that refuses ``a`` against ``b``, if any: :func:`first_objection`,
    or ``case`` for prompts with the same words that :func:`capitals` tells apart (a check
    only such pairs get: elsewhere the words themselves differ); and, when none does, whether
    they have the same words (:func:`~proxy.semantic.features.same_words`, read once)."""
    reason = first_objection(a, b, english=english)
    if reason is not None:
        return reason, False
    same = same_words(a, b)
    if same and capitals(a, b, english=english):
        return "case", False
    return None, same


def first_objection(a: str, b: str, *, english: bool) -> str | None:
    """The name of the first rule that sees a difference between ``a`` and ``b``; ``english``:
    both are English (else the English-only rules are skipped)."""
    a, b = a.translate(_QUOTES), b.translate(_QUOTES)
    for name, rule, english_only in RULES:
        if (english or not english_only) and rule(a, b):
            return name
    return None
