"""Verification of semantic-cache candidates: cheap, explainable rules that reject look-alikes.

A sentence embedding puts "What is 2+2?" and "What is 2+3?", or "Is Python slow?" and "Is Python
not slow?", almost on top of each other: it encodes the topic and blurs the details that decide
the answer. Serving the cached answer of a look-alike is the worst thing a semantic cache can do,
so a candidate above the similarity threshold must also pass :func:`verify`: a chain of guards,
each comparing one kind of detail between the two prompts. The first guard that sees a
difference names the rejection (a metric label); a pair no guard objects to is a hit.

The guards lean towards precision: a missed hit costs one upstream call, a wrong hit serves a
wrong answer. Paraphrases survive because details are compared in normalised form (case,
accents, inflection, British/American spelling, number words vs digits, a small synonym list,
function words and request scaffolding dropped), not because differences are tolerated.

Guards, in the order they run (:data:`GUARDS`): quoted literals, code, dates, units,
audience, numbers, negation, answer format, antonyms, question type, tense, person, names
(entities), word order (swapped roles and directions), and content words. Each is a small
function in :mod:`proxy.guards.rules` whose docstring says what it catches.

What still gets through: differences carried only by function words these rules do not model
("Is Earth a black hole?" vs "... in a black hole?"), swapped roles without a content word
between them, synonyms outside the small list (both ways: a false synonym would be a wrong
hit, so the list is short), and meaning that depends on earlier turns (the cache partitions
on those separately).

Pure and stdlib-only. Regexes are compiled at import and the per-text analysis is memoised (a
cached prompt is compared with many queries).

Modules: word lists in :mod:`~proxy.guards.lexicon`, :mod:`~proxy.guards.measures` and
:mod:`~proxy.guards.grammar`; regexes in :mod:`~proxy.guards.patterns`; the per-text analysis
in :mod:`~proxy.guards.facts`, built on :mod:`~proxy.guards.words`,
:mod:`~proxy.guards.quantities` and :mod:`~proxy.guards.questions`; the guards and their chain
in :mod:`~proxy.guards.rules`.
"""

from __future__ import annotations

from proxy.guards.rules import GUARDS, objections, verify

__all__ = ["DEFAULT_SIMILARITY", "GUARDS", "objections", "verify"]

DEFAULT_SIMILARITY: float = 0.89
"""Cosine threshold for all-MiniLM-L6-v2 (normalized embeddings) used together with
:func:`verify`, calibrated with ``bench/calibrate.py``. On the QQP dev sample it keeps the
wrong-hit rate at 0.33 % (5 of 1,500 different-meaning pairs, most of them mislabelled) for a
recall of 0.20, where plain cosine at the same precision reaches 0.02; on the hand-made LLM
look-alikes it serves no wrong hit and keeps 20 of 25 paraphrases. Lower thresholds add
paraphrases written with more freedom but let in proportionally more wrong hits (0.47 % at
0.85); the guards, not the threshold, carry the precision."""
