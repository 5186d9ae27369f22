"""The per-text analysis: everything the guards compare, extracted once per prompt and
memoised.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

from proxy.guards.grammar import (
    AUX,
    DO_VERBS,
    FILLERS,
    GENERIC_YOU,
    NOT_EMAIL,
    OF_NOUNS,
    QUANTITY,
    REQUEST_ONLY,
    TASKS,
    TO_FROM,
    WHY_WORDS,
)
from proxy.guards.lexicon import KNOWN_NAMES, TAG_TRIGGERS
from proxy.guards.patterns import (
    AUDIENCE_NAMES,
    CAPITAL_RE,
    CODE_RES,
    DIGIT_RE,
    DOTTED_RE,
    EXPR_RE,
    FENCE_RE,
    NUM_RE,
    QUOTED_RE,
    SENTENCE_END,
    SPECIAL_NAME_RE,
    SPLIT_RE,
    TAG_PHRASE_NAMES,
    TAG_PHRASE_RE,
    WORD_RE,
)
from proxy.guards.quantities import (
    canon_number,
    dates_in,
    digit_numbers,
    operators,
    units_in,
    word_numbers,
)
from proxy.guards.questions import is_request, question_kind
from proxy.guards.words import (
    ADJECTIVES,
    GENERIC_STEMS,
    PHRASAL_STEMS,
    Word,
    fold,
    token_entity,
    word_info,
)


def _generic_nouns(
    words: tuple[str, ...], infos: list[Word], gaps: tuple[str, ...], anchor: list[bool]
) -> set[str]:
    """Category nouns that only restate what the name or number next to them is: "the Python
    language", "an Ubuntu machine", "HTTP status code 404", "Is Go a fast language?". Next to
    an ordinary word the same noun is the head of a compound and means something ("washing
    machine", "body language")."""
    found: set[str] = set()
    n = len(infos)
    marked = list(anchor)
    for j in range(n - 2):  # "<name> is a [fast] language", "is <name> a [fast] language"
        if not anchor[j]:
            continue
        k = j + 1
        if words[k] in ("is", "are"):
            k += 1
        if k >= n or words[k] not in ("a", "an"):
            continue
        k += 1
        if k < n and words[k] in ADJECTIVES:
            k += 1
        label = infos[k].label if k < n else None
        if label in GENERIC_STEMS:
            marked[k] = True
            found.add(label or "")
    for order in (range(n), range(n - 1, -1, -1)):  # "status code" after "HTTP" chains along
        for i in order:
            label = infos[i].label
            if marked[i] or label not in GENERIC_STEMS:
                continue
            near = (i and marked[i - 1] and gaps[i - 1] == " ") or (
                i + 1 < n and marked[i + 1] and gaps[i] == " "
            )
            if near:
                marked[i] = True
                found.add(label)
    return found


class Facts(NamedTuple):
    """Everything the guards compare, extracted once per text."""

    lower: str
    words: tuple[str, ...]  # lower-case word tokens in order
    stems: frozenset[str]  # stems of every word, function words included
    vocab: frozenset[str]  # words and stems
    negated: tuple[tuple[str, tuple[str, ...]], ...]  # (word, what it negates), see Word.negated
    content: tuple[str, ...]  # content labels in order
    numbers: frozenset[str]  # digits and number words, except a bare "one"
    weak_numbers: frozenset[str]  # a bare "one": often a pronoun
    ordinals: frozenset[str]
    alnum: frozenset[str]  # model-like tokens mixing letters and digits: "ps4", "5s", "x86"
    expressions: frozenset[str]
    quoted: frozenset[str]
    code: frozenset[str]
    units: tuple[str, ...]  # canonical units in order of first appearance
    dates: frozenset[str]
    negations: int
    audience: frozenset[str]
    formats: frozenset[str]
    entities: frozenset[str]
    wh: frozenset[str]  # answer types asked for, see question_kind
    polar: str
    intent: str
    wh_noun: str  # content label of the noun in "which X is ...": asks for an X, may be implied
    generic: frozenset[str]  # category nouns restating a name: "Ubuntu machine", "Go language"
    directed: frozenset[tuple[str, str]]  # ("to" | "from", content label that follows)
    tense: frozenset[str]  # markers present: "past", "future", "present"
    ops: frozenset[str]  # arithmetic operators between numbers: "+", "-", "*", "/", "^"
    person: str  # "1" (only I / my), "2" (only a specific you / your), else ""
    tasks: frozenset[str]  # what the request verbs ask for: "produce", "explain", "list", ...
    number_order: tuple[str, ...]  # numbers in digits, in order


def _exempt_negation(words: tuple[str, ...], gaps: tuple[str, ...], i: int) -> bool:
    """A negation word that does not negate the question: "or not", "why or why not", "if
    not", "not only", "no matter", "no doubt", "No. 5"."""
    w = words[i]
    prev = words[i - 1] if i else ""
    nxt = words[i + 1] if i + 1 < len(words) else ""
    if w == "not":
        return (
            prev in ("or", "if")
            or nxt in ("only", "just", "merely")
            or (prev == "why" and i > 1 and words[i - 2] == "or")
        )
    if w == "no":
        return nxt in ("matter", "doubt") or (nxt[:1].isdigit() and "." in gaps[i])
    return False


def _opens_sentence(gap: str) -> bool:
    """Whether the text between two words ends a sentence (quotes and brackets skipped)."""
    gap = gap.rstrip(" \t\"'(*[")
    return bool(gap) and gap[-1] in SENTENCE_END


@lru_cache(maxsize=4096)
def analyse(raw: str) -> Facts:
    text = fold(raw)
    lower = text.lower()
    parts = SPLIT_RE.split(text)  # [gap, word, gap, word, ..., gap]
    tokens = parts[1::2]
    words = tuple(t.lower() for t in tokens)
    gaps = tuple(parts[2:-1:2])
    offsets = list(accumulate(map(len, parts), initial=0))[1:-1:2]
    has_digit = bool(DIGIT_RE.search(lower))
    charset = set(text)
    infos = [word_info(w) for w in words]

    n = len(words)
    skip: set[str] = set()  # words of a tag phrase ("step by step"): not content
    tags: set[str] = set()
    if not TAG_TRIGGERS.isdisjoint(words):
        for m in TAG_PHRASE_RE.finditer(lower):
            if m.lastgroup:
                tags.add(TAG_PHRASE_NAMES[m.lastgroup])
                skip.update(WORD_RE.findall(m.group(0)))

    # One pass over the words.
    unit_at: dict[int, str] = {}
    negated: list[tuple[str, tuple[str, ...]]] = []
    negations = 0
    numeric = dated = has_generic = False
    tense: set[str] = set()
    first_person = second_person = generic_you = False
    content: list[str] = []
    wh_noun = ""
    directed: set[tuple[str, str]] = set()
    heading, heading_until = "", -1  # a "to" / "from" waiting for the word it points at
    entities: set[str] = set()
    anchor = [False] * n  # names and numbers, for _generic_nouns
    # In a Title Case Prompt capitals say nothing: only acronyms and mixed case count there.
    capitals = len(CAPITAL_RE.findall(text)) - (1 if text[:1].isupper() else 0)
    title_case = n > 4 and capitals > 0.6 * (n - 1)
    last = n - 1
    first = 0
    while first < n and words[first] in FILLERS:
        first += 1
    request_at = -2
    tasks: set[str] = set()
    for i, info in enumerate(infos):
        w = words[i]
        label = info.label
        if info.special:
            if info.tense and not (w == "were" and "if" in words[max(0, i - 2) : i]):
                tense.add(info.tense)  # the "were" of "if I were" is a conditional, not a past
            if info.person == "1":
                first_person = True
            elif info.person == "2":
                second_person = True
                generic_you = generic_you or (w == "you" and i > 0 and words[i - 1] in GENERIC_YOU)
            if info.tag and not (info.tag == "email" and i < last and words[i + 1] in NOT_EMAIL):
                tags.add(info.tag)  # "write an email" is a format, "an email address" is not
            if info.unit:
                unit_at[offsets[i]] = info.unit
            if info.negated:
                negated.append((w, info.negated))
            if info.negation and not _exempt_negation(words, gaps, i):
                negations += 1
            numeric = numeric or info.numeric
            dated = dated or info.date

        # Names.
        kind, name = token_entity(tokens[i])
        if kind == 1 or (kind == 2 and not title_case and i and not _opens_sentence(gaps[i - 1])):
            entities.add(name)
            anchor[i] = True
        elif w.isdigit():
            anchor[i] = True

        # Direction: "flights to Paris" vs "flights from Paris".
        if heading and label:
            if i <= heading_until:
                directed.add((heading, label))
            heading = ""
        if w in TO_FROM:
            heading, heading_until = TO_FROM[w], i + 3

        # Content words, in order.
        if w in REQUEST_ONLY and is_request(words, gaps, i, first, request_at):
            request_at = i
            if w in TASKS:
                tasks.add(TASKS[w])
            continue
        if label is None:
            if w in DO_VERBS and (i == last or any(c in gaps[i] for c in "?.!,;")):
                content.append("do")  # "what does X do?" asks for a function, not a definition
            elif w in ("in", "on", "into") and i and infos[i - 1].stem in PHRASAL_STEMS:
                content.append(w)  # "log in" vs "log out", "sign in" vs "sign up"
            continue
        if w in skip or (w in QUANTITY and i and words[i - 1] == "how"):
            continue
        if w in OF_NOUNS and ((i < last and words[i + 1] == "of") or (w == "list" and i == 0)):
            continue  # "a list of", "what kind of", imperative "List ..."
        if (
            not wh_noun
            and 0 < i < last
            and words[i - 1] in ("which", "what")
            and words[i + 1] in AUX
        ):
            wh_noun = label
            continue
        content.append(label)
        has_generic = has_generic or label in GENERIC_STEMS

    if "+" in charset or "#" in charset:
        entities.update(m.group(0).lower() for m in SPECIAL_NAME_RE.finditer(text))
    generic = _generic_nouns(words, infos, gaps, anchor) if has_generic else set()

    # Numbers.
    numbers: set[str] = set()
    ordinals: set[str] = set()
    alnum: set[str] = set()
    decades: set[str] = set()
    weak: set[str] = set()
    expressions: frozenset[str] = frozenset()
    if has_digit:
        numbers, ordinals, alnum, decades = digit_numbers(lower)
        expressions = frozenset(re.sub(r"\s+", "", e) for e in EXPR_RE.findall(lower))
    if numeric:
        strong, weak, word_ordinals = word_numbers(words, gaps)
        numbers |= strong
        ordinals |= word_ordinals

    # Literals and code.
    quoted: set[str] = set()
    if not charset.isdisjoint('`"\u00ab') or text.count("'") >= 2:
        for m in QUOTED_RE.finditer(text):
            inner = next(g for g in m.groups() if g is not None)
            norm = " ".join(inner.lower().split())
            if norm:
                quoted.add(norm)
    code: set[str] = set()
    if "```" in text:  # fenced code blocks compare whole (whitespace-normalised)
        code.update("```" + " ".join(m.group(1).split()) for m in FENCE_RE.finditer(text))
    for chars, rx in CODE_RES:
        if not chars or not charset.isdisjoint(chars):
            code.update(m.group(0).strip().lower() for m in rx.finditer(text))
    code -= KNOWN_NAMES  # macOS, iOS: names, compared by the entity guard
    if "." in text.rstrip(".?! "):
        for m in DOTTED_RE.finditer(text):
            if all(len(p) >= 2 for p in m.group(0).split(".")):  # not "e.g", "U.S", "Ph.D"
                code.add(m.group(0).lower())

    wh, polar, intent = question_kind(lower, words, gaps)
    if n > 2 and words[-1] == "you" and words[-2] in ("to", "for"):
        content.append("you")  # "what does X mean to you?" asks for the assistant's view
    if "experience" in wh:  # "what does it feel like" ~ "what is it like"
        content = [c for c in content if c != "feel"]
    if "why" in wh:  # "why does X happen" ~ "what causes X" ~ "what is the reason for X"
        content = [c for c in content if c not in WHY_WORDS]
    stems = frozenset([info.stem for info in infos])
    return Facts(
        lower=lower,
        words=words,
        stems=stems,
        vocab=stems | frozenset(words),
        negated=tuple(negated),
        content=tuple(content),
        numbers=frozenset(numbers),
        weak_numbers=frozenset(weak - numbers),
        ordinals=frozenset(ordinals),
        alnum=frozenset(alnum),
        expressions=expressions,
        quoted=frozenset(quoted),
        code=frozenset(code),
        units=units_in(lower, unit_at, has_digit),
        dates=frozenset(dates_in(text, lower, words, offsets, decades, has_digit, dated)),
        negations=negations,
        audience=frozenset(t for t in tags if t in AUDIENCE_NAMES),
        formats=frozenset(t for t in tags if t not in AUDIENCE_NAMES),
        entities=frozenset(entities),
        wh=frozenset(wh),
        polar=polar,
        intent=intent,
        wh_noun=wh_noun,
        generic=frozenset(generic),
        directed=frozenset(directed),
        tense=frozenset(tense),
        ops=operators(words, expressions) if has_digit or numeric else frozenset(),
        tasks=frozenset(tasks),
        person=(
            ""
            if generic_you or first_person == second_person or (second_person and intent == "howto")
            else "1"
            if first_person
            else "2"
        ),
        number_order=tuple(
            canon_number(m.group(2), m.group(3)) for m in NUM_RE.finditer(lower) if not m.group(1)
        )
        if has_digit
        else (),
    )
