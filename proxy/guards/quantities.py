"""Quantities in a prompt: numbers in digits and in words, arithmetic operators, units, dates."""

from __future__ import annotations

from proxy.guards.measures import (
    MONTH_ABBR,
    MONTHS,
    MULTIPLIERS,
    NUMBER_WORDS,
    ORDINAL_WORDS,
    SHORT_UNITS,
    WEEKDAYS,
)
from proxy.guards.patterns import (
    AFTER_NUMBER_NAMES,
    DATE_TRIGGERS,
    DECADE_RE,
    DIGIT_RE,
    NUM_RE,
    RELATIVE_DATE_RE,
    SENTENCE_END,
    SYMBOL_NAMES,
    UNIT_AFTER_NUMBER_RE,
    UNIT_GATE_RE,
    UNIT_SYMBOL_RE,
    YEAR_RE,
)
from proxy.guards.words import word_unit


def canon_number(integer: str, fraction: str | None) -> str:
    digits = integer.replace(",", "").lstrip("0") or "0"
    if fraction:
        frac = fraction[1:].rstrip("0")
        if frac:
            return f"{digits}.{frac}"
    return digits


def digit_numbers(lower: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """Numbers in digits ("1,000" = "1000", "50k" = "50000"), ordinals ("12th"), letter+digit
    tokens ("ps4", "5s") and decades ("1990s", "90s")."""
    numbers: set[str] = set()
    ordinals: set[str] = set()
    alnum: set[str] = set()
    decades: set[str] = set()
    for m in NUM_RE.finditer(lower):
        prefix, integer, fraction, suffix = m.groups()
        value = canon_number(integer, fraction)
        if prefix:
            alnum.add(m.group(0))
        elif not suffix:
            numbers.add(value)
        elif suffix in ("st", "nd", "rd", "th"):
            ordinals.add(value)
        elif suffix == "s" and value.endswith("0") and len(value) in (2, 4):
            decades.add(value[-2:] if len(value) == 2 else value)
        elif suffix == "k":
            numbers.add(canon_number(str(round(float(value) * 1000)), None))
        elif word_unit(suffix) or suffix in _SHORT_UNIT_WORDS:
            numbers.add(value)  # "5kg": the unit guard compares the unit
        else:
            alnum.add(m.group(0))
    return numbers, ordinals, alnum, decades


_SHORT_UNIT_WORDS = frozenset(w for alts in SHORT_UNITS.values() for w in alts.split("|"))


def word_numbers(
    words: tuple[str, ...], gaps: tuple[str, ...]
) -> tuple[set[str], set[str], set[str]]:
    """Numbers written as words ("twenty five", "a dozen", "three hundred"), with a bare "one"
    kept apart as weak, and ordinal words ("third")."""
    strong: set[str] = set()
    weak: set[str] = set()
    ordinals: set[str] = set()
    i, n = 0, len(words)
    while i < n:
        w = words[i]
        if w in ORDINAL_WORDS:
            prev = words[i - 1] if i else ""
            if not (w == "second" and (prev in ("a", "per", "one") or prev.isdigit())):
                ordinals.add(str(ORDINAL_WORDS[w]))
            i += 1
            continue
        starts = w in NUMBER_WORDS or w in MULTIPLIERS
        if w in ("a", "an") and i + 1 < n and words[i + 1] in MULTIPLIERS and gaps[i] == " ":
            starts = True
        if not starts:
            i += 1
            continue
        total = current = 0
        used = 0
        j = i
        while j < n:
            t = words[j]
            if j > i and gaps[j - 1].strip(" -") not in ("", "and"):
                break
            if t in NUMBER_WORDS:
                current += NUMBER_WORDS[t]
            elif t in MULTIPLIERS:
                total += max(current, 1) * MULTIPLIERS[t]
                current = 0
            elif not (t in ("a", "an") and j == i):
                break
            used += 1
            j += 1
        value = str(total + current)
        (weak if used == 1 and w == "one" else strong).add(value)
        i = max(j, i + 1)
    return strong, weak, ordinals


def _sentence_start(text: str, pos: int) -> bool:
    k = pos - 1
    while k >= 0 and text[k] in " \t\"'(*[":
        k -= 1
    return k < 0 or text[k] in SENTENCE_END


def units_in(lower: str, unit_at: dict[int, str], has_digit: bool) -> tuple[str, ...]:
    """Canonical units in order of first appearance; `unit_at` holds those of single words."""
    found = dict(unit_at)
    if has_digit:
        for m in UNIT_AFTER_NUMBER_RE.finditer(lower):
            if m.lastgroup:
                found.setdefault(m.start(m.lastgroup), AFTER_NUMBER_NAMES[m.lastgroup])
    if UNIT_GATE_RE.search(lower):
        for m in UNIT_SYMBOL_RE.finditer(lower):
            if m.lastgroup:
                found[m.start()] = SYMBOL_NAMES[m.lastgroup]
    out: list[str] = []
    for _, name in sorted(found.items()):
        if name != "k" and name not in out:
            out.append(name)
    return tuple(out)


def dates_in(
    text: str,
    lower: str,
    words: tuple[str, ...],
    offsets: list[int],
    decades: set[str],
    has_digit: bool,
    dated: bool,
) -> set[str]:
    found: set[str] = set()
    if has_digit:
        found.update("y" + y for y in YEAR_RE.findall(lower))
        found.update("s" + d for d in decades)
        found.update("s" + d for d in DECADE_RE.findall(lower))
    if not DATE_TRIGGERS.isdisjoint(words):
        found.update(m.group(0) for m in RELATIVE_DATE_RE.finditer(lower))
    if not dated:
        return found
    for pos, w in zip(offsets, words, strict=True):
        if w in MONTHS or w in MONTH_ABBR:
            if w in MONTH_ABBR or w in ("may", "march"):
                near_digit = has_digit and bool(
                    DIGIT_RE.search(lower, max(0, pos - 4), pos + len(w) + 4)
                )
                named = text[pos].isupper() and not _sentence_start(text, pos)
                if not near_digit and not (named and w in ("may", "march")):
                    continue
            found.add(MONTH_ABBR.get(w, w))
        elif w in WEEKDAYS or (w.endswith("s") and w[:-1] in WEEKDAYS):
            found.add(w.removesuffix("s") if w not in WEEKDAYS else w)
    return found


def operators(words: tuple[str, ...], expressions: frozenset[str]) -> frozenset[str]:
    """Arithmetic operators, written as symbols inside an expression or as words between
    numbers: "5 + 3" ~ "five plus three", but not "5 minus 3"."""
    ops = {_OP_SYMBOLS[c] for e in expressions for c in e[1:] if c in _OP_SYMBOLS}
    for i in range(1, len(words) - 1):
        op = _OP_WORDS.get(words[i])
        if op and _is_number(words[i - 1]) and _is_number(words[i + 1]):
            ops.add(op)
    return frozenset(ops)


def _is_number(w: str) -> bool:
    return w.isdigit() or w in NUMBER_WORDS or w in MULTIPLIERS


_OP_SYMBOLS = {"+": "+", "-": "-", "*": "*", "\u00d7": "*", "/": "/", "\u00f7": "/", "^": "^"}
_OP_WORDS = {
    "plus": "+",
    "minus": "-",
    "times": "*",
    "multiplied": "*",
    "divided": "/",
    "over": "/",
}
