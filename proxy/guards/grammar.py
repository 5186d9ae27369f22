"""Word classes that shape a question rather than its topic: negations, question and
request words, direction, tense and person markers; and irregular word forms.
"""

from __future__ import annotations

from proxy.guards.lexicon import word_list, word_set

NEGATION_WORDS = word_set(
    """
    not no never none nobody nothing nowhere neither nor cannot without noone
    dont doesnt didnt isnt arent wasnt werent cant wont couldnt shouldnt wouldnt havent hasnt
    hadnt mustnt neednt aint
    """
)
NEG_PREFIXES = ("non", "un", "in", "im", "il", "ir", "dis", "de", "anti", "a")

# First word of a yes/no question -> what it asks: ability, advice, future, fact, obligation.
POLAR = {
    **dict.fromkeys(word_set("can could may might"), "can"),
    **dict.fromkeys(word_set("should shall ought"), "should"),
    **dict.fromkeys(word_set("will would"), "will"),
    **dict.fromkeys(word_set("do does did is are was were am has have had"), "fact"),
    "must": "must",
}
AUX = word_set(
    "is are was were am be do does did has have had can could should would will may might "
    "must shall"
)
WH_WORDS = word_set("what which who whom whose when where why how")
FILLERS = word_set("so and but ok okay hey hi hello please also now well")
REQUEST_VERBS = word_set(
    """
    explain tell describe give show list write help recommend suggest summarize summarise
    translate provide define clarify compare create make generate find name teach outline
    elaborate walk break share calculate convert check fix review rewrite say draft compose
    """
)
QUANTITY = word_set("many much long far big old often tall fast heavy large high deep wide soon")
NOT_DEGREE = AUX | word_set("to i you we they he she it one people someone the a an my your this")
CLAUSE_OPENERS = word_set("and or but so to from by in of with for at on about")
DIRECTION = {
    "to": "to",
    "into": "to",
    "onto": "to",
    "towards": "to",
    "from": "from",
    "than": "than",
}
DERIVATIONAL = word_set(
    "ence ance ment ation ition tion ion ity ness al ally ical ic ive er or iz ist ism ful ship "
    "hood y i ing"
)
DO_VERBS = word_set("do does did doing")
# Nouns that only restate the category of the word next to them ("the Python language", "an
# Ubuntu machine", "HTTP status code 404"): one prompt may add one where the other does not.
GENERIC_NOUNS = word_set(
    "language languages machine machines computer system device tool app application platform "
    "program software service code status city country word term concept field company"
)
FIRST_PERSON = word_set("i me my mine myself i'm i've i'd i'll")
SECOND_PERSON = word_set("you your yours yourself you're you've you'd you'll")
GENERIC_YOU = word_set("do does can could should would will might must if when once")
NOT_EMAIL = word_set("address addresses account accounts id server client provider")
WHY_WORDS = frozenset({"=reason", "=happen"})
PRONOUNS = word_set("i you we they he she it there one someone")
OF_NOUNS = word_set("list lists kind kinds type types sort sorts name names")
# Verbs that only frame a request ("Explain X", "Can you write X", "help me find X") where they
# open it; elsewhere they are content ("How do I write a test?" vs "How do I find a test?").
REQUEST_ONLY = word_set(
    """
    explain describe tell give show list write summarize summarise provide share recommend
    suggest define name create compose draft generate produce make find teach outline elaborate
    clarify help say
    """
)
REQUEST_LEADS = word_set("please kindly just you")
# What a request verb asks for; "give me", "tell me", "show me" go with any of them.
TASKS = {
    **dict.fromkeys(word_list("write create compose draft generate produce make"), "produce"),
    **dict.fromkeys(word_list("explain describe clarify elaborate teach define"), "explain"),
    **dict.fromkeys(word_list("list name"), "list"),
    **dict.fromkeys(word_list("summarize summarise outline"), "summarize"),
    **dict.fromkeys(word_list("recommend suggest"), "recommend"),
    "find": "find",
}
# Verbs whose particle changes the meaning: "log in" / "log out", "sign up" / "sign in".
PHRASAL = word_set("log sign check turn switch plug opt zoom tune cash clock")
TO_FROM = {"to": "to", "into": "to", "onto": "to", "towards": "to", "toward": "to", "from": "from"}
PAST = word_set("was were did had wasn't weren't didn't hadn't")
FUTURE = word_set("will won't shall gonna")
PRESENT = word_set("is are am do does has have isn't aren't don't doesn't hasn't haven't what's")


# Irregular forms -> base form, before suffix stripping.
IRREGULAR: dict[str, str] = {
    "used": "use",
    "uses": "use",
    "using": "use",
    "usage": "use",
    "kept": "keep",
    "came": "come",
    "comes": "come",
    "coming": "come",
    "saw": "see",
    "seen": "see",
    "sees": "see",
    "took": "take",
    "taken": "take",
    "takes": "take",
    "taking": "take",
    "went": "go",
    "gone": "go",
    "goes": "go",
    "made": "make",
    "makes": "make",
    "making": "make",
    "knew": "know",
    "known": "know",
    "knows": "know",
    "felt": "feel",
    "thought": "think",
    "found": "find",
    "bought": "buy",
    "sold": "sell",
    "won": "win",
    "lost": "lose",
    "became": "become",
    "becomes": "become",
    "becoming": "become",
    "began": "begin",
    "begun": "begin",
    "wrote": "write",
    "written": "write",
    "writes": "write",
    "writing": "write",
    "ran": "run",
    "runs": "run",
    "running": "run",
    "gave": "give",
    "given": "give",
    "gives": "give",
    "giving": "give",
    "told": "tell",
    "said": "say",
    "meant": "mean",
    "ate": "eat",
    "eaten": "eat",
    "drank": "drink",
    "drunk": "drink",
    "spent": "spend",
    "built": "build",
    "taught": "teach",
    "brought": "bring",
    "men": "man",
    "women": "woman",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
}
