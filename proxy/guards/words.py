"""Word normalisation (folding, stemming, synonym classes) and what one word contributes
to the analysis of a prompt, memoised per distinct word.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import NamedTuple

from proxy.guards.grammar import (
    FIRST_PERSON,
    FUTURE,
    GENERIC_NOUNS,
    IRREGULAR,
    NEG_PREFIXES,
    NEGATION_WORDS,
    PAST,
    PHRASAL,
    PRESENT,
    SECOND_PERSON,
    WH_WORDS,
)
from proxy.guards.lexicon import (
    ANTONYM_PAIRS,
    KNOWN_NAMES,
    STOP,
    SYNONYM_GROUPS,
    word_list,
    word_set,
)
from proxy.guards.measures import (
    MONTH_ABBR,
    MONTHS,
    MULTIPLIERS,
    NUMBER_WORDS,
    ORDINAL_WORDS,
    WEEKDAYS,
)
from proxy.guards.patterns import (
    LIST_MARKER_RE,
    PHRASE_NAMES,
    PHRASE_RE,
    PHRASE_TRIGGER_RE,
    QUOTES,
    TAG_WORD_NAMES,
    TAG_WORD_RE,
    UK_RE,
    UNIT_WORD_NAMES,
    UNIT_WORD_RE,
    USA_RE,
)


@lru_cache(maxsize=16384)
def _stem(word: str) -> str:
    """Light suffix stripping so that inflections and British/American spellings meet
    ("working" ~ "work", "addresses" ~ "address", "legalised" ~ "legalized", "favourite" ~
    "favorite"). Not a full stemmer: it only has to join a word with its own forms."""
    w = word.lower()
    if w.endswith("'s"):
        w = w[:-2]
    elif w.endswith("'"):
        w = w[:-1]
    w = IRREGULAR.get(w, w)
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith(("sses", "xes", "ches", "shes", "zzes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    n = len(w)
    if w.endswith("ing") and n > 5:
        w = _undouble(w[:-3])
    elif w.endswith("ied") and n > 4:
        w = w[:-3] + "y"
    elif w.endswith("ed") and n > 4 and not w.endswith("eed"):
        w = _undouble(w[:-2])
    elif w.endswith("ly") and n > 5:
        w = w[:-2]
    if len(w) > 5 and w.endswith("tre"):  # centre -> center
        w = w[:-2] + "er"
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 5:  # British spellings: realis(e) -> realiz, analys(e) -> analyz, colour
        if w.endswith(("is", "ys")):
            w = w[:-1] + "z"
        elif w.endswith("isation"):
            w = w[:-6] + "zation"
        elif w.endswith("our"):
            w = w[:-2] + "r"
    if w.endswith("y") and len(w) > 3:  # movie / movies -> movi, company / companies -> compani
        w = w[:-1] + "i"
    return w.replace("ourit", "orit")


def _undouble(w: str) -> str:
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        return w[:-1]
    return w


def _build_lexicon() -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Stem -> synonym class; stem -> the stems opposite to it."""
    cls: dict[str, str] = {}
    for group in SYNONYM_GROUPS:
        words = group.split()
        for w in words:
            cls.setdefault(_stem(w), "=" + words[0])
    opposite: dict[str, set[str]] = {}
    for left, right in ANTONYM_PAIRS:
        for a in {_stem(w) for w in left.split()}:
            for b in {_stem(w) for w in right.split()}:
                opposite.setdefault(a, set()).add(b)
                opposite.setdefault(b, set()).add(a)
    return cls, {k: frozenset(v) for k, v in opposite.items()}


_CLASS, OPPOSITE = _build_lexicon()
PHRASAL_STEMS = frozenset(_stem(w) for w in PHRASAL)
GENERIC_STEMS = frozenset(_stem(w) for w in GENERIC_NOUNS)
# Words of the antonym list plus a few evaluative ones: the adjectives of "a slow language".
ADJECTIVES = frozenset(
    w for pair in ANTONYM_PAIRS for side in pair for w in side.split()
) | word_set("good great nice popular modern safe secure reliable powerful useful")


# Scaffolding words whose inflections are scaffolding too ("explained", "examples", "helps").
_STOP_STEMS = frozenset(
    _stem(w)
    for w in word_list(
        "please know understand think want need get let way method example mean definition "
        "tip advice suggestion idea exist opinion view thought people person guy question "
        "answer recommendation thing"
    )
)


@lru_cache(maxsize=16384)
def word_unit(word: str) -> str | None:
    m = UNIT_WORD_RE.fullmatch(word)
    return UNIT_WORD_NAMES[m.lastgroup] if m and m.lastgroup else None


@lru_cache(maxsize=16384)
def _word_tag(word: str) -> str | None:
    m = TAG_WORD_RE.fullmatch(word)
    return TAG_WORD_NAMES[m.lastgroup] if m and m.lastgroup else None


@lru_cache(maxsize=16384)
def content_label(word: str) -> str | None:
    """The label a word contributes to the content comparison, or None if it is not content
    (function word, request scaffolding, or a detail another guard compares)."""
    if word in STOP or word in WH_WORDS or word in NEGATION_WORDS:
        return None
    if "'" in word:  # what's, you're, it'll
        base = word.split("'", 1)[0]
        if base in STOP or base in WH_WORDS:
            return None
    if not word.isalpha() and any(c.isdigit() for c in word):
        return None
    if word in NUMBER_WORDS or word in ORDINAL_WORDS or word in MULTIPLIERS:
        return None
    if word in MONTH_ABBR or word in MONTHS or word in WEEKDAYS:
        return None
    if word_unit(word) is not None or _word_tag(word) is not None:
        return None
    s = _stem(word)
    if s in _STOP_STEMS:
        return None
    return _CLASS.get(s, s)


def fold(text: str) -> str:
    """Accents off (Pokémon ~ Pokemon), typographic quotes to ASCII, a leading list marker
    dropped, spellings of the US and UK unified, multi-word names made one token."""
    text = text.translate(QUOTES)
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = LIST_MARKER_RE.sub("", text.strip())
    if "U" in text or "America" in text:
        text = USA_RE.sub("USA", UK_RE.sub("UK", text))
    low = text.lower()
    if PHRASE_TRIGGER_RE.search(low):
        text = PHRASE_RE.sub(lambda m: PHRASE_NAMES[m.lastgroup or ""], text)
    return text


_NOT_NON = word_set("nonetheless nonsense nonstop")


class Word(NamedTuple):
    """What a lower-case word contributes, computed once per distinct word."""

    stem: str
    label: str | None  # content label, see content_label
    unit: str | None
    tag: str | None  # audience or format
    negated: tuple[str, ...]  # what it negates, see _negated_roots
    negation: bool  # not, no, never, n't, non...
    numeric: bool  # a number or ordinal word
    date: bool  # a month or weekday name (or abbreviation)
    tense: str  # "past", "future", "present" or ""
    person: str  # "1" (I, my), "2" (you, your) or ""
    special: bool  # any of the above: the first pass over the words skips the others


@lru_cache(maxsize=32768)
def word_info(w: str) -> Word:
    tense = (
        "past"
        if w in PAST
        else "future"
        if w in FUTURE or w.endswith("'ll")
        else "present"
        if w in PRESENT
        else ""
    )
    person = "1" if w in FIRST_PERSON else "2" if w in SECOND_PERSON else ""
    info = Word(
        stem=_stem(w),
        label=content_label(w),
        unit=word_unit(w),
        tag=_word_tag(w),
        negated=_negated_roots(w),
        negation=(
            w in NEGATION_WORDS
            or w.endswith("n't")
            or w == "non"
            or (w.startswith("non") and len(w) > 6 and w not in _NOT_NON)
        ),
        numeric=w in NUMBER_WORDS or w in MULTIPLIERS or w in ORDINAL_WORDS,
        date=(
            w in MONTHS
            or w in MONTH_ABBR
            or w in WEEKDAYS
            or (w.endswith("s") and w[:-1] in WEEKDAYS)
        ),
        tense=tense,
        person=person,
        special=False,
    )
    special = any(info[2:-1])
    return info._replace(special=special)


@lru_cache(maxsize=32768)
def token_entity(tok: str) -> tuple[int, str]:
    """(kind, name) of a token as written: kind 1 is a name wherever it stands (acronym,
    mixed case, known name), 2 a capitalised word (a name unless it starts a sentence or the
    prompt is in Title Case), 0 not a name."""
    low = tok.lower()
    if low in KNOWN_NAMES:
        return 1, _stem(low)
    first = tok[0]
    if not first.isalpha():
        return 0, ""
    tail = tok[1:]
    rest_upper = tail != tail.lower()
    if first.islower():
        return (1, _stem(low)) if rest_upper else (0, "")  # iPhone, eBay
    if len(tok) >= 2 and tok.isupper():  # acronym
        return (0, "") if low in WH_WORDS else (1, _stem(low))
    if rest_upper:  # McDonald, JavaScript
        return 1, _stem(low)
    if low in NUMBER_WORDS:
        return 2, low  # "Fitbit One": a capitalised number is part of a name
    if low in STOP or low in WH_WORDS or low == "i":
        return 0, ""
    return 2, _stem(low)


@lru_cache(maxsize=16384)
def _negated_roots(word: str) -> tuple[str, ...]:
    """What a word negates: "unsafe" -> safe, "illegal" -> legal, "non-profit" -> profit,
    "useless" -> use / useful. Empty for most words."""
    roots: list[str] = []
    for p in NEG_PREFIXES:
        if word.startswith(p):
            rest = word[len(p) :].lstrip("-")
            if len(rest) >= (6 if p == "a" else 4):
                roots += [rest, _stem(rest)]
    if word.endswith("less") and len(word) > 6:
        root = word[:-4]
        roots += [root, root + "ful", _stem(root)]
    return tuple(roots)
