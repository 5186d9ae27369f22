"""The guards, and the chain that :func:`verify` and :func:`objections` run.

Each guard compares one kind of detail in the facts of two prompts and returns True when they
differ.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.guards.facts import Facts, analyse
from proxy.guards.grammar import DERIVATIONAL, DIRECTION
from proxy.guards.lexicon import word_set
from proxy.guards.patterns import WORD_RE
from proxy.guards.words import OPPOSITE, content_label

_NONCOMMUTATIVE = word_set("to from minus divided over power of than into per out")


def _quoted(a: Facts, b: Facts) -> bool:
    """Quoted strings and backtick code ('id' vs 'name', `git rebase` vs `git merge`): the
    literal is what the question is about, so each must be quoted on the other side too, or
    appear there as the same run of whole words ("translate 'hello'" ~ "translate hello")."""
    return _missing_literal(a.quoted, b) or _missing_literal(b.quoted, a)


def _missing_literal(literals: frozenset[str], other: Facts) -> bool:
    for q in literals:
        if q in other.quoted:
            continue
        run = " ".join(WORD_RE.findall(q))
        if run and f" {run} " in f" {' '.join(other.words)} ":
            continue
        return True
    return False


def _code(a: Facts, b: Facts) -> bool:
    """Code (snake_case, camelCase, dotted names and file names, calls, --flags, paths,
    operators such as == vs ===, fenced blocks): each must be found on the other side, as
    code or as the same word. os.path.join vs os.path.split differ in a token embeddings
    barely see."""
    return any(c not in b.code and c not in b.vocab for c in a.code) or any(
        c not in a.code and c not in a.vocab for c in b.code
    )


def _date(a: Facts, b: Facts) -> bool:
    """Dates: years (1990 vs 2020), decades, months, weekdays, seasons and relative dates
    (today vs tomorrow, last year vs next year). Facts change with time: any difference,
    including a date on one side only, rejects."""
    return a.dates != b.dates


def _unit(a: Facts, b: Facts) -> bool:
    """Units and currencies (kg vs lb, GB vs MB, Celsius vs Fahrenheit, USD vs EUR, hours vs
    days): the sets must match, and so must their order when there are several, which is the
    direction of a conversion ("km to miles" vs "miles to km")."""
    if set(a.units) != set(b.units):
        return True
    return len(a.units) > 1 and a.units != b.units


def _number(a: Facts, b: Facts) -> bool:
    """Quantities: digits (2+2 vs 2+3, 404 vs 403), decimals, number words (three = 3), "50k",
    ordinals (3rd, third), model numbers (PS4 vs PS5, iPhone 5 vs 5s) and arithmetic
    expressions. A bare "one" is usually a pronoun: it may stand in for a 1 on the other side,
    but its absence is not a difference."""
    if a.numbers != b.numbers and (
        a.numbers - b.numbers - b.weak_numbers or b.numbers - a.numbers - a.weak_numbers
    ):
        return True
    if a.ordinals != b.ordinals or a.alnum != b.alnum:
        return True
    if a.ops != b.ops:
        return True
    if (
        a.number_order != b.number_order
        and len(set(a.number_order)) > 1
        and sorted(a.number_order) == sorted(b.number_order)
        and not _NONCOMMUTATIVE.isdisjoint(a.words)
    ):
        return True  # "2 to the power of 10" vs "10 to the power of 2", "5 - 3" vs "3 - 5"
    return bool(a.expressions and b.expressions and a.expressions != b.expressions)


def _negation(a: Facts, b: Facts) -> bool:
    """Negation: not / no / never / n't / without / cannot / non-... on one side only, or a
    different count of them; and negating affixes (safe vs unsafe, legal vs illegal, like vs
    dislike, useful vs useless). "or not", "why or why not", "if not" and "not only" are not
    negations of the question."""
    if a.negations != b.negations:
        return True
    return _affix_negation(a, b) or _affix_negation(b, a)


def _affix_negation(a: Facts, b: Facts) -> bool:
    """A word of `a` (absent from `b`) that is a negated form of a word of `b`."""
    return any(w not in b.vocab and not b.vocab.isdisjoint(roots) for w, roots in a.negated)


def _antonym(a: Facts, b: Facts) -> bool:
    """Opposites: a word on one side only whose listed opposite is on the other side only
    (increase vs decrease, best vs worst, before vs after, buy vs sell, horizontal vs
    vertical), and role pairs (employer vs employee, interviewer vs interviewee)."""
    only_a = a.stems - b.stems
    only_b = b.stems - a.stems
    if not only_a or not only_b:
        return False
    for s in only_a:
        opposite = OPPOSITE.get(s)
        if opposite and not opposite.isdisjoint(only_b):
            return True
    return _role_swap(a, b) or _role_swap(b, a)


def _role_swap(a: Facts, b: Facts) -> bool:
    """employee / employer, interviewee / interviewer, mentee / mentor, payee / payer."""
    for w in a.words:
        w = w.removesuffix("s")
        if len(w) > 5 and w.endswith("ee") and w not in b.vocab:
            root = w[:-2]
            for other in (root + "er", root + "or", root + "ers", root + "ors"):
                if other in b.vocab and other not in a.vocab:
                    return True
    return False


def _audience(a: Facts, b: Facts) -> bool:
    """Audience: for a child / teen / beginner vs an expert / student / developer / manager.
    The right answer to the same question differs with who it is for."""
    return a.audience != b.audience


def _format(a: Facts, b: Facts) -> bool:
    """Answer format: bullet list vs paragraph, table, JSON / YAML / CSV, poem vs haiku vs
    limerick, story, joke, email, summary, sentence, brief vs detailed, formal vs casual; and
    the task of the request verb when both have one ("Write a function that ..." vs "Explain a
    function that ...", "Summarize X" vs "Explain X"; "give me" / "tell me" go with any)."""
    if a.formats != b.formats:
        return True
    return bool(a.tasks and b.tasks and a.tasks != b.tasks)


def _question(a: Facts, b: Facts) -> bool:
    """Answer type: who / when / where / why / how many-much-long / how good / what is it like
    ("Where did X die?" vs "When did X die?" share every content word); a yes/no question vs an
    open one, or a different modal ("Can I ...?" vs "How can I ...?", "Will I ...?" vs "Can I
    ...?"); how-to vs definition ("How do I do X?" vs "What is X?")."""
    if a.wh != b.wh:
        return True
    if a.polar != b.polar and a.polar and b.polar and "polar" not in (a.polar, b.polar):
        return True
    if ("polar" in (a.polar, b.polar)) and "wh" in (a.polar, b.polar):
        return True
    return bool(a.intent and b.intent and a.intent != b.intent)


def _person(a: Facts, b: Facts) -> bool:
    """Whose: "What is my IP address?" vs "What is your IP address?". Only a prompt about the
    asker alone against one about a specific "you" alone; the generic "how do you ..." matches
    anyone."""
    return bool(a.person and b.person and a.person != b.person)


def _tense(a: Facts, b: Facts) -> bool:
    """Tense: future (will / 'll / shall) on one side only, or past (was / were / did / had)
    on one side where the other is explicitly present (is / are / do / has): "Who won the
    election?" vs "Who will win the election?", "What was the population of X?" vs "What is
    the population of X?". A past verb without an auxiliary ("Who invented X?") is not told
    apart from the present, so it never conflicts."""
    if ("future" in a.tense) != ("future" in b.tense):
        return True
    if ("past" in a.tense) == ("past" in b.tense):
        return False
    present = b.tense if "past" in a.tense else a.tense
    return "present" in present


def _entity(a: Facts, b: Facts) -> bool:
    """Names: capitalised words not starting a sentence, acronyms, mixed-case names (iPhone,
    McDonald), C++ / C#, language and OS names in any case. Each must appear on the other side
    (any case; possessive, plural and demonym ignored: India ~ Indian)."""
    return _missing_entity(a, b) or _missing_entity(b, a)


def _missing_entity(a: Facts, b: Facts) -> bool:
    for e in a.entities:
        if e in b.stems:
            continue
        if not e.isalnum() and "'" not in e:  # c++, c#
            if e in b.lower:
                continue
            return True
        if any(_demonym(e, s) for s in b.stems):
            continue
        if any(x + y == e for x, y in zip(b.words, b.words[1:], strict=False)):
            continue  # "Jaya lalitha" ~ "Jayalalitha"
        return True
    return False


def _demonym(x: str, y: str) -> bool:
    """India ~ Indian, China ~ Chinese, Canada ~ Canadian, Japan ~ Japanese, Germany ~ German."""
    if len(x) > len(y):
        x, y = y, x
    if len(x) < 4 or not y.startswith(x[:-1]):
        return False
    for suffix in ("n", "an", "ian", "es", "ese", "ish", "i"):
        if y in (x + suffix, x[:-1] + suffix):
            return True
    return x == y[:-1] and y.endswith("y")


def _order(a: Facts, b: Facts) -> bool:
    """Swapped roles: the same content words in an order that swaps two of them around a third
    ("can a boy rule a girl" vs "can a girl rule a boy", "older men and younger women" vs
    "older women and younger men"), or across the same direction word ("English to Latin" vs
    "Latin to English"). A swap with nothing between ("X or Y" vs "Y or X") is a paraphrase."""
    for way, label in a.directed:
        opposite = ("from" if way == "to" else "to", label)
        if opposite in b.directed and (way, label) not in b.directed:
            return True
    if set(a.content) != set(b.content):
        return False
    pos_a = _positions(a.content)
    pos_b = _positions(b.content)
    items = list(pos_a)
    for i, x in enumerate(items):
        for y in items[i + 1 :]:
            if (pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]):
                continue
            lo_a, hi_a = sorted((pos_a[x], pos_a[y]))
            lo_b, hi_b = sorted((pos_b[x], pos_b[y]))
            if set(a.content[lo_a + 1 : hi_a]) & set(b.content[lo_b + 1 : hi_b]):
                return True
            dir_a = _direction_between(a, x, y)
            if dir_a and dir_a == _direction_between(b, x, y):
                return True
    return False


def _positions(seq: tuple[str, ...]) -> dict[str, int]:
    pos: dict[str, int] = {}
    for k, w in enumerate(seq):
        pos.setdefault(w, k)
    return pos


def _direction_between(f: Facts, x: str, y: str) -> frozenset[str]:
    idx: dict[str, int] = {}
    for k, w in enumerate(f.words):
        label = content_label(w)
        if label in (x, y) and label not in idx:
            idx[label] = k
    if len(idx) < 2:
        return frozenset()
    lo, hi = sorted(idx.values())
    return frozenset(DIRECTION[w] for w in f.words[lo + 1 : hi] if w in DIRECTION)


def _content(a: Facts, b: Facts) -> bool:
    """Content words: every salient word (not a function word, not request scaffolding such as
    "explain" or "best way", not a detail another guard compares) must have a counterpart on
    the other side: the same stem, a listed synonym, or a derivation (differ ~ difference). A
    swapped or added topic word is exactly what embeddings blur ("email address" vs "phone
    number", "worst case" vs "average case", "... for SEO" added). The noun of "which city is
    ..." may be left implicit by the other prompt, unless that one names a different noun."""
    if a.wh_noun and b.wh_noun and a.wh_noun != b.wh_noun:
        return True
    pool_a = (*a.content, a.wh_noun) if a.wh_noun else a.content
    pool_b = (*b.content, b.wh_noun) if b.wh_noun else b.content
    extra_a = _unmatched(a.content, pool_b)
    extra_b = _unmatched(b.content, pool_a)
    if extra_a and extra_b:
        return True
    # One prompt only adds a category noun to a word both share: "Is Python a slow language?"
    # ~ "Is Python slow?", "an Ubuntu machine" ~ "Ubuntu".
    return not (extra_a <= a.generic and extra_b <= b.generic)


def _unmatched(xs: tuple[str, ...], ys: tuple[str, ...]) -> set[str]:
    pool = set(ys)
    return {x for x in xs if x not in pool and not any(_derived(x, y) for y in pool)}


def _derived(x: str, y: str) -> bool:
    """One stem is the other plus a derivational suffix: prepare ~ preparation, freelance ~
    freelancer, suicide ~ suicidal. The shorter stem needs five letters, so that port / portal,
    part / party and numb / number stay apart."""
    if x[0] == "=" or y[0] == "=":
        return False
    if len(x) > len(y):
        x, y = y, x
    return len(x) >= 5 and y.startswith(x) and y[len(x) :] in DERIVATIONAL


_Guard = Callable[[Facts, Facts], bool]
_CHAIN: tuple[tuple[str, _Guard], ...] = (
    ("quoted", _quoted),
    ("code", _code),
    ("date", _date),
    ("unit", _unit),
    ("audience", _audience),
    ("number", _number),
    ("negation", _negation),
    ("format", _format),
    ("antonym", _antonym),
    ("question", _question),
    ("tense", _tense),
    ("person", _person),
    ("entity", _entity),
    ("order", _order),
    ("content", _content),
)

GUARDS: tuple[str, ...] = tuple(name for name, _ in _CHAIN)
"""Guard names, in the order :func:`verify` applies them (metric labels of rejections)."""


def objections(query: str, cached: str) -> tuple[str, ...]:
    """Every guard that rejects the pair, in :data:`GUARDS` order (for calibration and
    debugging; :func:`verify` stops at the first)."""
    if query == cached:
        return ()
    a = analyse(query)
    b = analyse(cached)
    return tuple(name for name, guard in _CHAIN if guard(a, b))


def verify(query: str, cached: str) -> str | None:
    """None when an answer to `cached` also answers `query`; otherwise the name of the first
    guard that rejects the pair (one of :data:`GUARDS`)."""
    if query == cached:
        return None
    a = analyse(query)
    b = analyse(cached)
    for name, guard in _CHAIN:
        if guard(a, b):
            return name
    return None
