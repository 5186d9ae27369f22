"""The features the verifier's model reads for a (query, candidate) pair. Pure numpy.

Most come from aligning the two prompts' word pieces by their contextual vectors (each piece's
best match on the other side, as BERTScore does), weighted by rarity (the inverse document
frequency of each piece in the training prompts, shipped with the model): a paraphrase matches
every rare piece somewhere; a look-alike leaves one unmatched ("Canada" against "Australia").
The rest are overlap and length, and the order of strongly matched pieces. Pairs a narrow rule
of :mod:`proxy.semantic.rules` objects to never reach the model.

The same function builds the training rows (``bench/train_verifier.py``) and the rows judged at
run time, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proxy.semantic.sketch import MAX_TOKENS, Sketch

NAMES: tuple[str, ...] = (
    "cosine",
    "align_q", "align_c", "align_min_q", "align_min_c",
    "weak_q_0.6", "weak_c_0.6", "weak_q_0.8", "weak_c_0.8",
    "worst_rare_q", "worst_rare_c",
    "overlap", "rarest_unshared",
    "length_ratio", "length",
    "digits_differ", "order_inversions",
    "align_median_q", "align_median_c",
    "unshared_mass_q", "unshared_mass_c", "unshared_q", "unshared_c",
    "unshared_match_q", "unshared_match_c", "unshared_gap_q", "unshared_gap_c",
    "unshared_rarest_q", "unshared_rarest_c", "content_q", "content_c",
    "unshared_mass_min", "unshared_mass_max",
)  # fmt: skip

LONG_PAIR = 3.6
"""log(pieces of both prompts) from which a pair counts as long (about 37 pieces)."""
BUCKETS = 4
"""Calibration buckets: (question or not) x (short or long)."""

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Per word-piece id: rarity, and whether it is punctuation or holds a digit."""

    idf: Floats
    punctuation: npt.NDArray[np.bool_]
    digit: npt.NDArray[np.bool_]


def features(q: Sketch, c: Sketch, vocab: Vocabulary) -> Floats:
    """One row of :data:`NAMES` for the query ``q`` and the candidate ``c``."""
    f = np.zeros(len(NAMES), dtype=np.float32)
    f[0] = float(q.sentence @ c.sentence)
    qi, ci = q.ids.astype(np.intp), c.ids.astype(np.intp)
    if qi.size == 0 or ci.size == 0:
        return f
    sims = q.tokens @ c.tokens.T
    bq, bc = sims.max(axis=1), sims.max(axis=0)
    idf, punct = vocab.idf, vocab.punctuation
    iq, ic = idf[qi], idf[ci]
    content_q, content_c = ~punct[qi], ~punct[ci]
    wq, wc = iq * content_q + 0.05, ic * content_c + 0.05
    sum_q, sum_c = wq.sum(), wc.sum()
    f[1], f[2] = (wq * bq).sum() / sum_q, (wc * bc).sum() / sum_c
    f[3], f[4] = bq.min(), bc.min()
    f[5], f[6] = (wq * (bq < 0.6)).sum() / sum_q, (wc * (bc < 0.6)).sum() / sum_c
    f[7], f[8] = (wq * (bq < 0.8)).sum() / sum_q, (wc * (bc < 0.8)).sum() / sum_c
    f[9], f[10] = (wq * (1 - bq)).max(), (wc * (1 - bc)).max()
    q_list, c_list = qi.tolist(), ci.tolist()
    sq, sc = set(q_list), set(c_list)
    shared, union = sq & sc, sq | sc
    f[11] = float(idf[list(shared)].sum() / max(float(idf[list(union)].sum()), 1e-6))
    only = [t for t in union - shared if not punct[t]]
    f[12] = float(idf[only].max()) if only else 0.0
    f[13] = abs(math.log(qi.size / ci.size))
    f[14] = math.log(qi.size + ci.size)
    digit = vocab.digit
    f[15] = float({t for t in sq if digit[t]} != {t for t in sc if digit[t]})
    f[16] = _inversions(sims.argmax(axis=1)[(bq > 0.85) & content_q & (iq > 2.0)])
    f[17], f[18] = _median(bq), _median(bc)
    only_q = np.array([t not in sc for t in q_list]) & content_q
    only_c = np.array([t not in sq for t in c_list]) & content_c
    mass_q, mass_c = iq * only_q, ic * only_c
    f[19], f[20] = mass_q.sum(), mass_c.sum()
    f[21], f[22] = only_q.sum(), only_c.sum()
    any_q, any_c = f[21] > 0, f[22] > 0
    f[23] = bq[only_q].min() if any_q else 1.0
    f[24] = bc[only_c].min() if any_c else 1.0
    f[25], f[26] = (mass_q * (1 - bq)).sum(), (mass_c * (1 - bc)).sum()
    f[27] = mass_q.max() if any_q else 0.0
    f[28] = mass_c.max() if any_c else 0.0
    f[29], f[30] = content_q.sum(), content_c.sum()
    f[31], f[32] = min(f[19], f[20]), max(f[19], f[20])
    return f


SENTENCE_MARKS = frozenset(".,!?;:'\"")
"""The only symbols :func:`same_words` sets aside, the first six only where they punctuate a
sentence (:func:`_prose_marks`). Every other one (``+ - * / ^ < > = %``, brackets, ``#``,
``@``...) can be what a prompt is about: 10 + 3 is not 10 - 3, C++ is not C#."""
_PIECES = re.compile(r"\d+(?:[.,]\d+)*['\"]?|\w+|[^\w\s]")
"""A number keeps its separators and a unit mark after it (1,000 is not 1.000, 5' is not 5")."""
_WORD_HYPHEN = re.compile(r"(?<=[^\W\d_])[-\u2010\u2011](?=[^\W\d_])")
_QUOTES = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")
_MARK_RUN = re.compile(r"[.,!?;:]+")


def same_words(q_text: str, c_text: str) -> bool:
    """The same words, numbers and symbols in the same order, once case, spacing, sentence
    punctuation (:data:`SENTENCE_MARKS`, where it punctuates a sentence: not ``my_list[:3]``
    against ``my_list[3:]``, ``(1,)`` against ``(1)``, ``cd ..`` against ``cd .``, ``x != 5``
    against ``x = 5``, ``.*?`` against ``.*``), curly quotes and hyphens inside words
    (mind-blowing, mind blowing) are set aside: the same prompt written differently. Such a
    pair is accepted without the model, which learned from look-alikes one word apart to doubt
    pairs this close."""
    code = looks_like_code(q_text) or looks_like_code(c_text)
    words = _words(q_text, code=code)
    return bool(words) and words == _words(c_text, code=code)


_CODE = re.compile(
    r"[=$`{}\[\]\\|<>]|\w_\w|\w\(|\b(?:SELECT|FROM|WHERE|INSERT|UPDATE|DELETE|JOIN)\b"
    r"|(?i:\b(?:python|javascript|typescript|bash|shell|zsh|powershell|sql|java|ruby|php|perl"
    r"|regex|json|yaml|rust|golang|kotlin|swift|c\+\+|c#)\b)"
)
"""What makes a prompt read as code, or as about code: a code symbol (``= $ ` { } [ ] \\ | <
>``), ``snake_case``, a call (``len(``), an SQL keyword in capitals, or a language's name."""


def looks_like_code(text: str) -> bool:
    """Whether quotes in ``text`` may make a literal (``SELECT 'name'`` is not ``SELECT name``,
    ``x = 'abc'`` is not ``x = abc``, ``echo '$HOME'`` is not ``echo $HOME``) rather than only
    mark a mention (``the meaning of "RMS"``)."""
    return _CODE.search(text.translate(_QUOTES)) is not None


def _words(text: str, *, code: bool) -> list[str]:
    text = _WORD_HYPHEN.sub(" ", text.casefold().translate(_QUOTES))
    prose = _prose_marks(text)
    words = []
    for m in _PIECES.finditer(text):
        piece = m.group()
        if piece in SENTENCE_MARKS and ((piece in "'\"" and not code) or m.start() in prose):
            continue  # quotes unless in code; the other marks where they punctuate a sentence
        words.append(piece)
    return words


def _prose_marks(text: str) -> set[int]:
    """Where ``. , ! ? ; :`` punctuate a sentence: a run of them after a word (``!`` after a
    letter only: ``5!`` is a factorial), a closing bracket, or (``. ? !`` only) a closing
    quote; or ``?`` and ``!`` standing alone (``France ?``); followed by a space, a quote or
    the end; and outside ``[...]`` and ``{...}``, where they are code (``x[1:]``, ``{1: 2}``)."""
    out: set[int] = set()
    seen = 0  # the brackets before each run are counted once, as the runs go (linear time)
    square = curly = 0  # open minus closed, as in ``text[:start].count``
    for run in _MARK_RUN.finditer(text):
        start, end = run.span()
        head = text[seen:start]
        square += head.count("[") - head.count("]")
        curly += head.count("{") - head.count("}")
        seen = start
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        first = run.group()[0]
        attached = (
            (before.isalpha() or (before.isdigit() and first != "!"))
            or before in ")]}"
            or (before in "'\"" and first in ".?!")
        )
        alone = before.isspace() and set(run.group()) <= {"?", "!"}
        in_code = square > 0 or curly > 0
        if (attached or alone) and (after.isspace() or after in "'\"") and not in_code:
            out.update(range(start, end))
    return out


def bucket(q_text: str, c_text: str, row: Floats) -> int:
    """Which calibration bucket a pair falls in: a question or not, short or long. The kinds of
    text differ in how close their look-alikes come (news sentences sharing all but one fact,
    short questions differing in one word), so each bucket has its own threshold."""
    question = "?" in q_text or "?" in c_text
    long = row[14] >= LONG_PAIR
    return 2 * int(long) + int(question)


def _median(values: Floats) -> float:
    """``np.median`` of a 1-d array, to the bit, without its general machinery (a tenth of
    the time on a prompt's few dozen pieces)."""
    ordered = np.sort(values)
    middle = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


@functools.lru_cache(maxsize=MAX_TOKENS + 1)
def _pairs(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices (i, j) of every pair i < j of n items."""
    return np.triu_indices(n, 1)


def _inversions(positions: npt.NDArray[np.intp]) -> float:
    """Share of strongly matched piece pairs whose order differs on the other side."""
    n = positions.size
    if n < 2:
        return 0.0
    a, b = _pairs(n)
    first, second = positions[a], positions[b]
    moved = first != second
    total = int(moved.sum())
    return float((first > second)[moved].sum() / total) if total else 0.0
