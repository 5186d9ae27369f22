"""What a prompt asks for: the kind of answer, and where a request verb opens it."""

from __future__ import annotations

from proxy.guards.grammar import (
    AUX,
    CLAUSE_OPENERS,
    FILLERS,
    NOT_DEGREE,
    POLAR,
    PRONOUNS,
    QUANTITY,
    REQUEST_LEADS,
    REQUEST_VERBS,
    WH_WORDS,
)
from proxy.guards.patterns import DEFINE_RE, EXPERIENCE_RE, HOWTO_RE, NOT_DEFINE, STORY_RE


def question_kind(
    lower: str, words: tuple[str, ...], gaps: tuple[str, ...]
) -> tuple[set[str], str, str]:
    """What kind of answer the prompt asks for.

    - kinds: who / when / where / why / how-much / how-degree ("how good is") / experience
      ("what is it like"). who, when and where count only where they open a clause ("people
      who ..." is not a question about a person).
    - polar: for a prompt opening with a yes/no question, what it asks: "can" (ability, also
      "is it possible"), "should", "will", "fact", "must"; "polar" for "do you think ..."
      (compatible with any of them); "wh" for an open question; "" for anything else, such as
      a request ("can you explain ...", "tell me ...").
    - intent: "howto" (how do I / how to / best way to), "define" (what is X), "story" (how
      did you ...), else "".
    """
    kinds: set[str] = set()
    n = len(words)
    for i, w in enumerate(words):
        if w not in WH_WORDS:
            continue
        nxt = words[i + 1] if i + 1 < n else ""
        if w == "why":
            kinds.add("why")
        elif w == "how":
            if nxt in QUANTITY:
                kinds.add("how-much")
            elif nxt == "come":
                kinds.add("why")
            elif (
                nxt not in NOT_DEGREE
                and i + 2 < n
                and (words[i + 2] in AUX or words[i + 2] in ("a", "an"))
            ):
                kinds.add("how-degree")  # "how good is ...", "how safe are ..."
        elif w in ("what", "which"):
            if nxt in ("time", "year", "date", "day", "month"):
                kinds.add("when")
            elif w == "what" and (
                nxt in ("causes", "cause", "caused")
                or (
                    i + 3 < n
                    and nxt in ("is", "are", "was")
                    and words[i + 2] == "the"
                    and words[i + 3] in ("reason", "reasons", "cause", "causes")
                )
            ):
                kinds.add("why")
        elif w != "whose" and (
            i == 0 or words[i - 1] in CLAUSE_OPENERS or any(c in gaps[i - 1] for c in ".?!,;:(\n")
        ):
            kinds.add("who" if w in ("who", "whom") else w)
    for i in range(1, n - 1):  # a later yes/no question: "..., could I have X?"
        if (
            words[i] in POLAR
            and words[i + 1] in PRONOUNS
            and any(c in gaps[i - 1] for c in "?.!;,")
        ):
            kinds.add("yes-no")
            break
    if ("like" in words or "feel" in words or "feels" in words) and EXPERIENCE_RE.search(lower):
        kinds.add("experience")
        kinds.discard("how-degree")

    polar = ""
    k = 0
    while k < n and words[k] in FILLERS:
        k += 1
    if k < n:
        first = words[k]
        if first.endswith("'s"):
            first = first[:-2]
        rest = words[k + 1 : k + 5]
        if first in WH_WORDS:
            polar = "wh"
        elif first in POLAR:
            polar = POLAR[first]
            if rest[:1] == ("you",) and polar in ("can", "will"):
                verb = rest[2] if rest[1:2] in (("please",), ("kindly",), ("just",)) else ""
                verb = verb or (rest[1] if len(rest) > 1 else "")
                if verb in REQUEST_VERBS:
                    polar = ""  # "can you explain ...": a request, not a yes/no question
            elif polar == "fact" and rest[:1] == ("you",) and rest[1:2] in _OPINION_VERBS:
                polar = "polar"
            elif polar == "fact" and rest[:2] in (("it", "possible"), ("it", "ok"), ("it", "okay")):
                polar = "can"
            elif polar == "fact" and rest[:3] in (("there", "a", "way"), ("there", "any", "way")):
                polar = ""  # "is there a way to X?" asks how to X
        elif first.endswith("n't"):
            polar = POLAR.get(first[:-3], POLAR.get(first[:-2], ""))

    intent = ""
    if STORY_RE.match(lower):
        intent = "story"  # "how did you learn X?" asks for an experience, not instructions
    elif HOWTO_RE.search(lower):
        intent = "howto"
    elif DEFINE_RE.match(lower) and NOT_DEFINE.isdisjoint(words[2:]):
        intent = "define"
    return kinds, polar, intent


_OPINION_VERBS = frozenset({("think",), ("believe",), ("feel",), ("reckon",)})


def is_request(
    words: tuple[str, ...], gaps: tuple[str, ...], i: int, first: int, request_at: int
) -> bool:
    """Whether words[i] opens a request: first word of the prompt or of a sentence, or after
    "please", "can you", "help me", "I want you to", or "explain and ..." ."""
    if i == first or (i and any(c in gaps[i - 1] for c in ".!?:;\n")):
        return True
    prev = words[i - 1] if i else ""
    before = words[i - 2] if i > 1 else ""
    if prev in REQUEST_LEADS:
        return prev != "you" or before in ("can", "could", "would", "will")
    if prev == "me":
        return before in ("help", "let", "to")
    if prev == "to":
        return before in ("you", "me")
    return prev in ("and", "or") and request_at == i - 2
