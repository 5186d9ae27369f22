"""Is a prompt English? The verifier's model and its narrow rules read English only.

all-MiniLM-L6-v2 and the verifier were trained on English; on other languages the model's
similarity is no guide at all (on 240 hand-written pairs in twelve languages, look-alikes scored
*higher* than paraphrases: ROC-AUC 0.14), and a rule such as "a negation on one side only"
would read Spanish "no" or Italian "non" as English. So a prompt that is not English gets no
semantic hit from the learned verifier, and no English rule is applied to it.

py3langid (langid.py's naive Bayes over byte n-grams, its model shipped in the package) makes
the call; short English prompts it misreads ("Is 17 a prime number?") are kept when they are
plain ASCII and hold an English function word (none of which is a common word of another
Latin-script language).
"""

from __future__ import annotations

import re
from functools import lru_cache

import py3langid

_WORD = re.compile(r"[a-z]+")
_ENGLISH_FUNCTION_WORDS = frozenset(
    (
        "the", "is", "are", "was", "were", "what", "how", "why", "which", "who", "whom", "when",
        "where", "does", "did", "can", "could", "should", "would", "will", "you", "your", "my",
        "of", "to", "and", "with", "for", "from", "this", "that", "than", "there", "their",
        "it", "its", "into", "about", "between", "without", "not",
    )
)  # fmt: skip


@lru_cache(maxsize=4096)
def is_english(text: str) -> bool:
    if not any(c.isalpha() for c in text):
        return True  # numbers and symbols only: nothing language-specific to misread
    language, _ = py3langid.classify(text)
    if language == "en":
        return True
    if not text.isascii():
        return False
    words = set(_WORD.findall(text.lower()))
    return bool(words & _ENGLISH_FUNCTION_WORDS)
