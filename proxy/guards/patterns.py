"""Regular expressions of the guards, compiled at import."""

from __future__ import annotations

import re

from proxy.guards.lexicon import AUDIENCE, FORMAT, PHRASES, word_set
from proxy.guards.measures import (
    SHORT_UNITS,
    UNIT_PHRASE_TRIGGERS,
    UNIT_PHRASES,
    UNIT_SYMBOLS,
    UNITS,
)


def _named(items: list[tuple[str, str]], prefix: str) -> tuple[str, dict[str, str]]:
    """One alternation with a named group per item, and group name -> item name."""
    parts = [f"(?P<{prefix}{i}>{rx})" for i, (_, rx) in enumerate(items) if rx]
    names = {f"{prefix}{i}": name for i, (name, rx) in enumerate(items) if rx}
    return "|".join(parts), names


QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'"})
LIST_MARKER_RE = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")
USA_RE = re.compile(
    r"\b(?:U\.S\.A\.?|U\.S\.?|USA|US|(?<!North )(?<!South )(?<!Latin )(?<!Central )America)"
    r"(?![\w.])"
)
UK_RE = re.compile(r"\b(?:U\.K\.?|UK)(?![\w.])")
_PHRASE_SRC, PHRASE_NAMES = _named(list(PHRASES), "p")
PHRASE_RE = re.compile(r"\b(?:" + _PHRASE_SRC + r")\b", re.IGNORECASE)
_PHRASE_TRIGGERS = (
    "regular expr",
    "artificial",
    "machine learn",
    "united",
    "britain",
    "new york",
    "web",
    "mail",
    "all time",
    "world",
    "life",
    "lives",
    "general",
    "these days",
    "right now",
    "phone",
    "present",
    "made ",
    "capital cit",
    "log",
    "sign",
    " on",
    " off",
    " out",
    "compos",
    "consist",
)
PHRASE_TRIGGER_RE = re.compile("|".join(_PHRASE_TRIGGERS))
WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
SPLIT_RE = re.compile(r"([^\W_]+(?:'[^\W_]+)*)")
SPECIAL_NAME_RE = re.compile(r"(?<![\w+#])([A-Za-z])(\+\+|#)")
QUOTED_RE = re.compile(
    r"`([^`\n]+)`|(?<![\w'])'([^'\n]{1,200}?)'(?!\w)|\"([^\"\n]{1,200}?)\"|\u00ab([^\u00bb\n]+)\u00bb"
)
# (characters that must be present for the pattern to match, pattern)
CODE_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("_", re.compile(r"\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+\b")),  # snake_case
    ("", re.compile(r"\b[a-z]{2,}[A-Z][A-Za-z0-9]*\b")),  # camelCase (not iPhone: a name)
    ("(", re.compile(r"\b[A-Za-z_]\w*\([^()\n]{0,40}\)")),  # call(args)
    ("-", re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")),  # --flags
    ("/", re.compile(r"(?:^|(?<=\s))(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*")),  # /paths
    ("=&|:*<>", re.compile(r"===|!==|==|!=|<=|>=|&&|\|\||->|=>|::|\+=|-=|\*\*|<<|>>")),
)
FENCE_RE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
DOTTED_RE = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
DIGIT_RE = re.compile(r"\d")
NUM_RE = re.compile(r"(?<![\w.])([a-z]*)(\d+(?:,\d{3})+|\d+)(\.\d+)?([a-z]*)(?!\w)")
EXPR_RE = re.compile(
    r"(?:\b[a-z]\s*)?\d+(?:\.\d+)?(?:\s*[-+*/\u00d7\u00f7^=<>]\s*(?:\d+(?:\.\d+)?|[a-z]\b))+"
    r"|\b[a-z]\s*[\^*/+]\s*\d+(?:\.\d+)?"
)
EXPERIENCE_RE = re.compile(
    r"\bwhat(?:'s| is| was| will| would)? (?:it )?(?:be )?like\b|\bhow(?:'s| is| was) it like\b|"
    r"\b(?:how|what) (?:does|did|do|would|will) (?:it|you|one) feel\b|\bhow it feels?\b"
)
HOWTO_RE = re.compile(
    r"^(?:how (?:do|can|could|should|would|will|does|must) (?:i|we|you|one|someone|people)\b|"
    r"how to\b)|\b(?:best |easiest |fastest |quickest |good |right )?ways? (?:to|of)\b|"
    r"\bsteps to\b|\bwhat (?:should|can|could|do|must) (?:i|we|you|one) do to\b"
)
STORY_RE = re.compile(r"how did (?:you|they|he|she|people|i|we)\b")
DEFINE_RE = re.compile(r"(?:what|who)(?:'s| is| are| was| were) (?!it\b)")
NOT_DEFINE = word_set("to way ways should can could do does did best like")
YEAR_RE = re.compile(r"(?<![\w.,$\u20ac\u00a3])(1[6-9]\d\d|20\d\d)(?![\w.,%])")
DECADE_RE = re.compile(r"(?<![\w.])'?(1[6-9]\d0|20\d0|[2-9]0)'?s\b")
RELATIVE_DATE_RE = re.compile(
    r"\b(?:today|tonight|tomorrow|yesterday|"
    r"(?:this|next|last|past|previous|coming|upcoming) (?:week|weekend|month|year|decade|"
    r"century|morning|evening|night|season|quarter|semester)|"
    r"(?:day after|day before) (?:tomorrow|yesterday)|summer|winter|autumn|ago)\b"
)
DATE_TRIGGERS = word_set(
    "today tonight tomorrow yesterday this next last past previous coming upcoming day summer "
    "winter autumn ago"
)
_TAG_WORDS = [(n, w) for n, w, _ in AUDIENCE] + [(n, w) for n, w, _ in FORMAT]
_TAG_WORD_SRC, TAG_WORD_NAMES = _named(_TAG_WORDS, "t")
TAG_WORD_RE = re.compile(_TAG_WORD_SRC)
_TAG_PHRASES = [(n, p) for n, _, p in AUDIENCE] + [(n, p) for n, _, p in FORMAT]
_TAG_PHRASE_SRC, TAG_PHRASE_NAMES = _named(_TAG_PHRASES, "t")
TAG_PHRASE_RE = re.compile(r"\b(?:" + _TAG_PHRASE_SRC + r")\b")
AUDIENCE_NAMES = frozenset(n for n, _, _ in AUDIENCE)
_UNIT_WORD_SRC, UNIT_WORD_NAMES = _named(list(UNITS.items()), "u")
UNIT_WORD_RE = re.compile(_UNIT_WORD_SRC)
_SHORT_SRC, _SHORT_NAMES = _named(list(SHORT_UNITS.items()), "s")
UNIT_AFTER_NUMBER_RE = re.compile(
    r"\d(?:\.\d+)?[\s-]?(?:"
    + _SHORT_SRC
    + "|"
    + _UNIT_WORD_SRC.replace("?P<u", "?P<n")
    + r")(?!\w)"
)
AFTER_NUMBER_NAMES = {
    **_SHORT_NAMES,
    **{k.replace("u", "n", 1): v for k, v in UNIT_WORD_NAMES.items()},
}
_SYMBOL_SRC, SYMBOL_NAMES = _named([*UNIT_SYMBOLS.items(), *UNIT_PHRASES.items()], "y")
UNIT_SYMBOL_RE = re.compile(_SYMBOL_SRC)
UNIT_GATE_RE = re.compile("[°℃℉%$€£₹¥]|" + "|".join(UNIT_PHRASE_TRIGGERS))

SENTENCE_END = frozenset(".!?:;\n")
CAPITAL_RE = re.compile(r"\b[A-Z]")
