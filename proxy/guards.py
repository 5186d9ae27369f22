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
function below whose docstring says what it catches.

What still gets through: differences carried only by function words these rules do not model
("Is Earth a black hole?" vs "... in a black hole?"), swapped roles without a content word
between them, synonyms outside the small list (both ways: a false synonym would be a wrong
hit, so the list is short), and meaning that depends on earlier turns (the cache partitions
on those separately).

Pure and stdlib-only. Regexes are compiled at import and the per-text analysis is memoised (a
cached prompt is compared with many queries).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

__all__ = ["DEFAULT_SIMILARITY", "GUARDS", "objections", "verify"]

DEFAULT_SIMILARITY: float = 0.89
"""Cosine threshold for all-MiniLM-L6-v2 (normalized embeddings) used together with
:func:`verify`, calibrated with ``bench/calibrate.py``. On the QQP dev sample it keeps the
wrong-hit rate at 0.33 % (5 of 1,500 different-meaning pairs, most of them mislabelled) for a
recall of 0.20, where plain cosine at the same precision reaches 0.02; on the hand-made LLM
look-alikes it serves no wrong hit and keeps 20 of 25 paraphrases. Lower thresholds add
paraphrases written with more freedom but let in proportionally more wrong hits (0.47 % at
0.85); the guards, not the threshold, carry the precision."""


# ============================================================================================
# Lexicons: small, general English. Nothing here is specific to a data set.
# ============================================================================================


def _split(text: str) -> list[str]:
    return text.split()


def _words(text: str) -> frozenset[str]:
    return frozenset(_split(text))


# Function words and the scaffolding of a request ("can you explain", "what is the best way to",
# "give me some tips"): paraphrases change these freely, so the content comparison skips them.
# Words that other guards compare (negations, numbers, units, dates, wh-words) are skipped too.
_STOP = _words(
    """
    a an the this that these those there here it its itself they them their theirs themselves
    i me my mine myself you your yours yourself yourselves we us our ours ourselves
    he him his himself she her hers herself one someone somebody anyone anybody everyone
    everybody something anything everything thing things stuff oneself
    be am is are was were been being do does did doing done have has had having
    can could may might must shall should will would ought
    what which whose how whatever whichever however
    if then than so as such too very really actually just also even still ever else quite
    rather pretty much many more lot lots some any all each every both either few several own
    of to in on at by for from with about into onto over under through within via per upon
    between among amongst across around toward towards regarding concerning along besides
    and or but nor yet because since while although though whether whereas
    again further once
    please know understand think want need like get got gotten let
    way ways method methods best good great top
    nice excellent possible possibly likely example examples
    mean meaning means meant definition called
    important main common basic real exactly basically generally general typically truly
    totally absolutely specific particular certain various available overall
    tip tips advice suggestion suggestions idea ideas using recommendation recommendations
    exist exists existed existence
    opinion view views thought thoughts
    people person guy guys
    question questions answer answers
    other others another now currently nowadays presently world's
    plus minus times multiplied divided
    s t d ll ve re m
    """
)

# Opposite classes: saying one where the other prompt says the other asks the opposite question.
# Each side lists interchangeable words (inflections are handled by the stemmer).
_ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
    (
        "increase raise boost grow rise maximize",
        "decrease reduce lower lessen shrink drop decline minimize cut",
    ),
    ("best greatest top", "worst"),
    ("good great", "bad poor"),
    ("better", "worse"),
    ("most", "least fewest"),
    ("more", "less fewer"),
    ("max maximum", "min minimum"),
    ("big large huge", "small little tiny"),
    ("bigger larger", "smaller"),
    ("biggest largest", "smallest"),
    ("high tall", "low short"),
    ("higher taller upper", "lower shorter"),
    ("highest tallest", "lowest shortest"),
    ("long", "short"),
    ("longer", "shorter"),
    ("longest", "shortest"),
    ("heavy", "light"),
    ("hot warm", "cold cool"),
    ("hard difficult tough", "soft"),
    ("hard difficult tough", "easy simple"),
    ("hardest", "easiest"),
    ("fast quick", "slow"),
    ("faster quicker", "slower"),
    ("fastest quickest", "slowest"),
    ("cheap inexpensive", "expensive costly"),
    ("rich wealthy", "poor"),
    ("strong", "weak"),
    ("old older oldest elderly", "new newer newest young younger youngest"),
    ("early earlier earliest", "late later latest"),
    ("before prior", "after"),
    ("first", "last"),
    ("start begin beginning", "end finish stop ending"),
    ("open", "close closed shut"),
    ("enable", "disable"),
    ("add insert create make build", "remove delete erase destroy"),
    ("install", "uninstall remove"),
    ("import", "export"),
    ("upload", "download"),
    ("upgrade", "downgrade"),
    ("push", "pull"),
    ("buy purchase buyer", "sell sale seller"),
    ("lend lender", "borrow borrower"),
    ("send sender", "receive receiver recipient"),
    ("win winner victory", "lose loser loss defeat"),
    ("gain profit", "lose loss"),
    ("pro advantage benefit upside", "con disadvantage drawback downside"),
    ("like love", "dislike hate"),
    ("agree", "disagree"),
    ("accept", "reject decline"),
    ("allow permit", "forbid prohibit ban block deny"),
    ("include", "exclude"),
    ("inner inside internal interior", "outer outside external exterior"),
    ("input", "output"),
    ("positive", "negative"),
    ("true", "false"),
    ("plus add addition sum", "minus subtract subtraction"),
    ("multiply multiplication", "divide division"),
    ("odd", "even"),
    ("male", "female"),
    ("man men boy gentleman guy", "woman women girl lady"),
    ("he him his himself", "she her hers herself"),
    ("husband", "wife"),
    ("father dad daddy", "mother mom mum mommy"),
    ("son", "daughter"),
    ("brother", "sister"),
    ("boyfriend", "girlfriend"),
    ("king", "queen"),
    ("teacher professor", "student pupil"),
    ("parent", "child kid"),
    ("client customer", "server"),
    ("frontend", "backend"),
    ("left", "right"),
    ("north northern", "south southern"),
    ("east eastern", "west western"),
    ("horizontal horizontally", "vertical vertically"),
    ("top", "bottom"),
    ("ascend ascending", "descend descending"),
    ("uppercase", "lowercase"),
    ("encrypt encryption encode encoding", "decrypt decryption decode decoding"),
    ("compress compression", "decompress decompression"),
    ("public", "private"),
    ("static", "dynamic"),
    ("local", "remote global"),
    ("online", "offline"),
    ("wet", "dry"),
    ("full", "empty"),
    ("light bright", "dark"),
    ("black", "white"),
    ("day daytime", "night nighttime"),
    ("morning", "evening night"),
    ("sunrise", "sunset"),
    ("past", "future"),
    ("ancient", "modern"),
    ("success succeed successful", "failure fail"),
    ("pass", "fail"),
    ("safe safety", "dangerous danger harmful risky"),
    ("inhale", "exhale"),
    ("introvert", "extrovert"),
    ("optimist optimistic", "pessimist pessimistic"),
    ("attack offense offence", "defend defense defence"),
    ("friend", "enemy"),
    ("happy", "sad unhappy"),
    ("alive live living", "dead die death"),
    ("birth born", "death die"),
    ("enter entry entrance", "exit leave"),
    ("above", "below"),
    ("over", "under"),
    ("forward", "backward back"),
    ("majority", "minority"),
    ("summer", "winter"),
    ("average mean", "best worst"),
    ("always", "never sometimes rarely"),
    ("login", "logout"),
    ("in", "out"),
    ("on", "off"),
    ("up", "down"),
    ("strength", "weakness"),
    ("all every", "some any"),
    ("many", "few"),
)

# Synonym classes for the content comparison. Only near-universal equivalences: a false
# synonym lets a look-alike through. Opposites above are never merged.
_SYNONYM_GROUPS: tuple[str, ...] = (
    "big large huge",
    "bigger larger",
    "biggest largest",
    "small little tiny",
    "fast quick rapid speedy",
    "begin start commence",
    "buy purchase",
    "remove delete erase removal deletion",
    "change modify alter modification",
    "advantage benefit pro upside merit",
    "disadvantage drawback con downside demerit",
    "difference differ different distinguish vs versus compare comparison",
    "movie film",
    "photo picture image pic photograph",
    "kid child children",
    "fix repair solve resolve",
    "cheap inexpensive affordable",
    "easy simple",
    "hard difficult tough",
    "exit quit",
    "learn study",
    "job career",
    "reason cause",
    "happen occur",
    "build construct",
    "create make generate produce",
    "correct right proper",
    "mistake error",
    "affect effect impact influence",
    "cope deal handle",
    "car automobile",
    "phone smartphone cellphone",
    "website site",
    "internet online web",
    "regex regexp",
    "javascript js",
    "typescript ts",
    "postgres postgresql",
    "kubernetes k8s",
    "app application",
    "repo repository",
    "db database",
    "config configuration",
    "info information",
    "doc docs documentation",
    "math maths mathematics",
    "usa america",
    "uk britain",
)

# Multi-word spellings rewritten to one token (or dropped) before anything else.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("regex", r"regular expressions?"),
    ("ai", r"artificial intelligence"),
    ("ml", r"machine learning"),
    ("usa", r"united states(?: of america)?"),
    ("uk", r"united kingdom|great britain"),
    ("nyc", r"new york city"),
    ("website", r"web ?sites?"),
    ("email", r"e-?mail"),
    ("phone", r"(?:mobile|cell|smart) ?phones?"),
    ("capital", r"capital cit(?:y|ies)"),
    ("login", r"(?:log|sign)(?:s|ged|ging|ing|ed)? ?(?:in|on)(?:to)?|login"),
    ("logout", r"(?:log|sign)(?:s|ged|ging|ing|ed)? ?(?:out|off)(?: of)?|logout"),
    ("signup", r"sign(?:s|ing|ed)? ?up|signup"),
    ("enable", r"(?:turn|switch)(?:s|ing|ed)? on"),
    ("disable", r"(?:turn|switch)(?:s|ing|ed)? off"),
    ("find", r"(?:find|found|finding|finds|figure|figured|figuring|figures) out"),
    ("composition", r"made (?:up )?(?:of|from|out of)|composed of|consists? of"),
    (
        "",
        r"of all times?|(?:in|of) the (?:whole )?world|in this world|at present|"
        r"(?:in|of) (?:my|your|one's|our|his|her|their) lives?|"
        r"in general|these days|in today's world|right now",
    ),
)

# Audience of the answer: name, single words (full-word regex), phrases (regex).
_AUDIENCE: tuple[tuple[str, str, str], ...] = (
    (
        "child",
        r"child|children|kids?|toddlers?|eli5",
        r"\w+[- ]years?[- ]olds?|little ones?|grade school(?:ers?)?|elementary school",
    ),
    ("teen", r"teens?|teenagers?", r"high school(?:ers)?"),
    (
        "beginner",
        r"beginners?|novices?|newbies?|noobs?|dummies|laym[ae]n|laypersons?|starters?",
        r"lay persons?|non-?technical|non-?experts?|non-?programmers?|plain english|simple terms|"
        r"simple words|from scratch",
    ),
    (
        "expert",
        r"experts?|professionals?|advanced|phd|specialists?|researchers?|experienced",
        r"senior (?:engineers?|developers?)",
    ),
    ("student", r"students?|undergrad(?:uate)?s?|graduates?", ""),
    ("manager", r"managers?|executives?|stakeholders?", r"business people"),
    ("developer", r"developers?|programmers?|engineers?|coders?", ""),
)

# Shape of the answer: genre, structure, markup, length, tone.
_FORMAT: tuple[tuple[str, str, str], ...] = (
    (
        "list",
        r"bullets|bulleted|checklist",
        r"bullet(?:ed)? (?:points?|list)|numbered list|as a list|in a list|list form(?:at)?",
    ),
    ("table", r"tables?|tabular", ""),
    ("json", r"json", ""),
    ("yaml", r"ya?ml", ""),
    ("xml", r"xml", ""),
    ("csv", r"csv", ""),
    ("markdown", r"markdown", ""),
    ("latex", r"latex", ""),
    ("html", r"html", ""),
    ("poem", r"poems?|poetry|verses?|rhymes?|rhyming", ""),
    ("haiku", r"haikus?", ""),
    ("limerick", r"limericks?", ""),
    ("sonnet", r"sonnets?", ""),
    ("song", r"songs?|lyrics|rap", ""),
    ("story", r"story|stories|tales?|fables?|narrative", ""),
    ("joke", r"jokes?|puns?|riddles?", ""),
    ("essay", r"essays?|articles?", ""),
    ("tweet", r"tweets?", ""),
    ("email", r"emails?|letter", ""),
    ("speech", r"speech", ""),
    ("summary", r"summary|summari[sz]e|summari[sz]ing|tldr|recap|overview|outline", r"tl;dr"),
    ("sentence", r"sentences?", r"one-liners?"),
    ("paragraph", r"paragraphs?", ""),
    ("diagram", r"diagrams?|charts?|graphs?|flowcharts?", ""),
    (
        "brief",
        r"brief|briefly|concise|concisely|succinct|succinctly|nutshell",
        r"in short|short answer|few words",
    ),
    (
        "detailed",
        r"detailed|comprehensive|thorough|thoroughly|elaborate",
        r"in detail|in-depth|in depth|step[- ]by[- ]step",
    ),
    ("formal", r"formal|formally", ""),
    ("casual", r"casual|informal|casually|informally", ""),
    ("funny", r"funny|humorous|humourous|witty|sarcastic", ""),
    ("snippet", r"snippets?", r"example code|code example|sample code"),
)
# Words that can occur in a phrase above: the phrase regex only runs when one is present.
_TAG_TRIGGERS = _words(
    "old olds little grade elementary high lay non plain simple scratch senior business bullet "
    "bulleted numbered list tl one short few detail depth step example sample"
)

# Units and currencies: canonical -> single-word forms. _SHORT_UNITS are also ordinary words
# ("m", "in", "day") and count only right after a number; _UNIT_SYMBOLS and _UNIT_PHRASES are
# found in the raw text.
_UNITS: dict[str, str] = {
    "km": "km|kms|kilomet(?:er|re)s?",
    "mile": "miles?",
    "m": "met(?:er|re)s?",
    "cm": "cm|centimet(?:er|re)s?",
    "mm": "mm|millimet(?:er|re)s?",
    "inch": "inch|inches",
    "ft": "ft|foot|feet",
    "yard": "yards?|yds?",
    "kg": "kgs?|kilos?|kilogram(?:me)?s?",
    "g": "gram(?:me)?s?",
    "mg": "mg|milligrams?",
    "lb": "lbs?|pounds?",
    "oz": "oz|ounces?",
    "ton": "tons?|tonnes?",
    "l": "lit(?:er|re)s?",
    "ml": "millilit(?:er|re)s?",
    "gallon": "gallons?",
    "tbsp": "tbsp|tablespoons?",
    "tsp": "tsp|teaspoons?",
    "c": "celsius|centigrade",
    "f": "fahrenheit",
    "kelvin": "kelvins?",
    "degree": "degrees?",
    "kb": "kb|kilobytes?",
    "mb": "mb|megabytes?",
    "gb": "gb|gigabytes?|gigs?",
    "tb": "tb|terabytes?",
    "bit": "bits?",
    "mbps": "mbps",
    "gbps": "gbps",
    "hz": "hz|hertz",
    "mhz": "mhz",
    "ghz": "ghz",
    "w": "watts?",
    "kw": "kw|kilowatts?",
    "kwh": "kwh",
    "mah": "mah",
    "v": "volts?",
    "kcal": "kcal|calories|calorie",
    "mph": "mph",
    "kmh": "kph|kmph",
    "ms": "milliseconds?",
    "second": "seconds|secs?",
    "minute": "minutes?|mins",
    "hour": "hours?|hrs?",
    "day": "days",
    "week": "weeks",
    "month": "months",
    "year": "years|yrs",
    "decade": "decades",
    "century": "centuries",
    "percent": "percent",
    "usd": "usd|dollars?|bucks",
    "eur": "eur|euros?",
    "gbp": "gbp|sterling",
    "inr": "inr|rupees?|rs|lakhs?|crores?",
    "jpy": "jpy|yen",
    "cny": "cny|rmb|yuan",
    "btc": "btc|bitcoins?",
    "cent": "cents?",
    "acre": "acres?",
    "hectare": "hectares?",
}
_SHORT_UNITS: dict[str, str] = {
    "m": "m",
    "g": "g",
    "l": "l",
    "ml": "ml",
    "ms": "ms",
    "mile": "mi",
    "second": "s|sec|second",
    "minute": "min",
    "hour": "h|hr|hour",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year|yr",
    "w": "w",
    "v": "v",
    "k": "k",
    "inch": "in",
}
_UNIT_SYMBOLS: dict[str, str] = {
    "c": "°\\s?c\\b|℃",
    "f": "°\\s?f\\b|℉",
    "degree": "°",
    "percent": "%",
    "usd": "\\$",
    "eur": "€",
    "gbp": "£",
    "inr": "₹",
    "jpy": "¥",
}
_UNIT_PHRASES: dict[str, str] = {
    "mph": "miles per hour",
    "kmh": "km/h|kilomet(?:er|re)s per hour",
    "percent": "per cent",
    "c": "degrees? c",
    "f": "degrees? f",
    "sqft": "sq\\.? ?f(?:ee)?t|square f(?:ee|oo)t",
    "sqm": "sq\\.? ?m|square met(?:er|re)s?",
    **{  # a rate: "per day", "twice a week", "every month"
        unit: rf"\b(?:per|a|an|each|every) {unit}\b"
        for unit in ("second", "minute", "hour", "day", "week", "month", "year")
    },
}
_UNIT_PHRASE_TRIGGERS = (
    "per",
    "/h",
    "degree",
    "sq",
    "square",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
)

_MONTHS = _words(
    "january february march april may june july august september october november december"
)
_MONTH_ABBR = {
    "jan": "january",
    "feb": "february",
    "mar": "march",
    "apr": "april",
    "jun": "june",
    "jul": "july",
    "aug": "august",
    "sep": "september",
    "sept": "september",
    "oct": "october",
    "nov": "november",
    "dec": "december",
}
_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")

_NUMBER_WORDS: dict[str, int] = {
    **{
        w: i
        for i, w in enumerate(
            _split(
                "zero one two three four five six seven eight nine ten eleven twelve thirteen "
                "fourteen fifteen sixteen seventeen eighteen nineteen"
            )
        )
    },
    **{
        w: 10 * i
        for i, w in enumerate(_split("twenty thirty forty fifty sixty seventy eighty ninety"), 2)
    },
}
_MULTIPLIERS = {
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
}
_ORDINAL_WORDS: dict[str, int] = {
    **{
        w: i
        for i, w in enumerate(
            _split(
                "first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
                "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
                "nineteenth twentieth"
            ),
            1,
        )
    },
    "thirtieth": 30,
    "fortieth": 40,
    "fiftieth": 50,
    "hundredth": 100,
}

# Names often written in lower case (languages, programming languages, operating systems), so
# that "in french" vs "in spanish" is an entity difference too.
_KNOWN_NAMES = _words(
    """
    english french spanish german italian portuguese russian chinese mandarin cantonese japanese
    korean arabic hindi bengali urdu turkish dutch swedish norwegian danish finnish polish greek
    hebrew latin persian farsi thai vietnamese indonesian malay swahili tamil telugu marathi
    punjabi gujarati kannada malayalam ukrainian czech hungarian romanian sanskrit
    python javascript typescript java golang rust ruby php perl swift kotlin scala haskell
    matlab julia lua dart elixir erlang clojure bash powershell fortran cobol pascal
    windows linux ubuntu debian fedora centos macos osx ios android
    """
)

_NEGATION_WORDS = _words(
    """
    not no never none nobody nothing nowhere neither nor cannot without noone
    dont doesnt didnt isnt arent wasnt werent cant wont couldnt shouldnt wouldnt havent hasnt
    hadnt mustnt neednt aint
    """
)
_NEG_PREFIXES = ("non", "un", "in", "im", "il", "ir", "dis", "de", "anti", "a")

# First word of a yes/no question -> what it asks: ability, advice, future, fact, obligation.
_POLAR = {
    **dict.fromkeys(_words("can could may might"), "can"),
    **dict.fromkeys(_words("should shall ought"), "should"),
    **dict.fromkeys(_words("will would"), "will"),
    **dict.fromkeys(_words("do does did is are was were am has have had"), "fact"),
    "must": "must",
}
_AUX = _words(
    "is are was were am be do does did has have had can could should would will may might "
    "must shall"
)
_WH_WORDS = _words("what which who whom whose when where why how")
_FILLERS = _words("so and but ok okay hey hi hello please also now well")
_REQUEST_VERBS = _words(
    """
    explain tell describe give show list write help recommend suggest summarize summarise
    translate provide define clarify compare create make generate find name teach outline
    elaborate walk break share calculate convert check fix review rewrite say draft compose
    """
)
_QUANTITY = _words("many much long far big old often tall fast heavy large high deep wide soon")
_NOT_DEGREE = _AUX | _words("to i you we they he she it one people someone the a an my your this")
_CLAUSE_OPENERS = _words("and or but so to from by in of with for at on about")
_DIRECTION = {
    "to": "to",
    "into": "to",
    "onto": "to",
    "towards": "to",
    "from": "from",
    "than": "than",
}
_DERIVATIONAL = _words(
    "ence ance ment ation ition tion ion ity ness al ally ical ic ive er or iz ist ism ful ship "
    "hood y i ing"
)
_DO_VERBS = _words("do does did doing")
# Nouns that only restate the category of the word next to them ("the Python language", "an
# Ubuntu machine", "HTTP status code 404"): one prompt may add one where the other does not.
_GENERIC_NOUNS = _words(
    "language languages machine machines computer system device tool app application platform "
    "program software service code status city country word term concept field company"
)
_FIRST_PERSON = _words("i me my mine myself i'm i've i'd i'll")
_SECOND_PERSON = _words("you your yours yourself you're you've you'd you'll")
_GENERIC_YOU = _words("do does can could should would will might must if when once")
_NOT_EMAIL = _words("address addresses account accounts id server client provider")
_WHY_WORDS = frozenset({"=reason", "=happen"})
_PRONOUNS = _words("i you we they he she it there one someone")
_OF_NOUNS = _words("list lists kind kinds type types sort sorts name names")
# Verbs that only frame a request ("Explain X", "Can you write X", "help me find X") where they
# open it; elsewhere they are content ("How do I write a test?" vs "How do I find a test?").
_REQUEST_ONLY = _words(
    """
    explain describe tell give show list write summarize summarise provide share recommend
    suggest define name create compose draft generate produce make find teach outline elaborate
    clarify help say
    """
)
_REQUEST_LEADS = _words("please kindly just you")
# What a request verb asks for; "give me", "tell me", "show me" go with any of them.
_TASKS = {
    **dict.fromkeys(_split("write create compose draft generate produce make"), "produce"),
    **dict.fromkeys(_split("explain describe clarify elaborate teach define"), "explain"),
    **dict.fromkeys(_split("list name"), "list"),
    **dict.fromkeys(_split("summarize summarise outline"), "summarize"),
    **dict.fromkeys(_split("recommend suggest"), "recommend"),
    "find": "find",
}
# Verbs whose particle changes the meaning: "log in" / "log out", "sign up" / "sign in".
_PHRASAL = _words("log sign check turn switch plug opt zoom tune cash clock")
_TO_FROM = {"to": "to", "into": "to", "onto": "to", "towards": "to", "toward": "to", "from": "from"}
_PAST = _words("was were did had wasn't weren't didn't hadn't")
_FUTURE = _words("will won't shall gonna")
_PRESENT = _words("is are am do does has have isn't aren't don't doesn't hasn't haven't what's")


# ============================================================================================
# Compiled patterns.
# ============================================================================================


def _named(items: list[tuple[str, str]], prefix: str) -> tuple[str, dict[str, str]]:
    """One alternation with a named group per item, and group name -> item name."""
    parts = [f"(?P<{prefix}{i}>{rx})" for i, (_, rx) in enumerate(items) if rx]
    names = {f"{prefix}{i}": name for i, (name, rx) in enumerate(items) if rx}
    return "|".join(parts), names


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'"})
_LIST_MARKER_RE = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")
_USA_RE = re.compile(
    r"\b(?:U\.S\.A\.?|U\.S\.?|USA|US|(?<!North )(?<!South )(?<!Latin )(?<!Central )America)"
    r"(?![\w.])"
)
_UK_RE = re.compile(r"\b(?:U\.K\.?|UK)(?![\w.])")
_PHRASE_SRC, _PHRASE_NAMES = _named(list(_PHRASES), "p")
_PHRASE_RE = re.compile(r"\b(?:" + _PHRASE_SRC + r")\b", re.IGNORECASE)
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
_PHRASE_TRIGGER_RE = re.compile("|".join(_PHRASE_TRIGGERS))
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SPLIT_RE = re.compile(r"([^\W_]+(?:'[^\W_]+)*)")
_SPECIAL_NAME_RE = re.compile(r"(?<![\w+#])([A-Za-z])(\+\+|#)")
_QUOTED_RE = re.compile(
    r"`([^`\n]+)`|(?<![\w'])'([^'\n]{1,200}?)'(?!\w)|\"([^\"\n]{1,200}?)\"|\u00ab([^\u00bb\n]+)\u00bb"
)
# (characters that must be present for the pattern to match, pattern)
_CODE_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("_", re.compile(r"\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+\b")),  # snake_case
    ("", re.compile(r"\b[a-z]{2,}[A-Z][A-Za-z0-9]*\b")),  # camelCase (not iPhone: a name)
    ("(", re.compile(r"\b[A-Za-z_]\w*\([^()\n]{0,40}\)")),  # call(args)
    ("-", re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")),  # --flags
    ("/", re.compile(r"(?:^|(?<=\s))(?:~|\.{1,2})?/[\w.-]+(?:/[\w.-]+)*")),  # /paths
    ("=&|:*<>", re.compile(r"===|!==|==|!=|<=|>=|&&|\|\||->|=>|::|\+=|-=|\*\*|<<|>>")),
)
_FENCE_RE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_DOTTED_RE = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_DIGIT_RE = re.compile(r"\d")
_NUM_RE = re.compile(r"(?<![\w.])([a-z]*)(\d+(?:,\d{3})+|\d+)(\.\d+)?([a-z]*)(?!\w)")
_EXPR_RE = re.compile(
    r"(?:\b[a-z]\s*)?\d+(?:\.\d+)?(?:\s*[-+*/\u00d7\u00f7^=<>]\s*(?:\d+(?:\.\d+)?|[a-z]\b))+"
    r"|\b[a-z]\s*[\^*/+]\s*\d+(?:\.\d+)?"
)
_EXPERIENCE_RE = re.compile(
    r"\bwhat(?:'s| is| was| will| would)? (?:it )?(?:be )?like\b|\bhow(?:'s| is| was) it like\b|"
    r"\b(?:how|what) (?:does|did|do|would|will) (?:it|you|one) feel\b|\bhow it feels?\b"
)
_HOWTO_RE = re.compile(
    r"^(?:how (?:do|can|could|should|would|will|does|must) (?:i|we|you|one|someone|people)\b|"
    r"how to\b)|\b(?:best |easiest |fastest |quickest |good |right )?ways? (?:to|of)\b|"
    r"\bsteps to\b|\bwhat (?:should|can|could|do|must) (?:i|we|you|one) do to\b"
)
_STORY_RE = re.compile(r"how did (?:you|they|he|she|people|i|we)\b")
_DEFINE_RE = re.compile(r"(?:what|who)(?:'s| is| are| was| were) (?!it\b)")
_NOT_DEFINE = _words("to way ways should can could do does did best like")
_YEAR_RE = re.compile(r"(?<![\w.,$\u20ac\u00a3])(1[6-9]\d\d|20\d\d)(?![\w.,%])")
_DECADE_RE = re.compile(r"(?<![\w.])'?(1[6-9]\d0|20\d0|[2-9]0)'?s\b")
_RELATIVE_DATE_RE = re.compile(
    r"\b(?:today|tonight|tomorrow|yesterday|"
    r"(?:this|next|last|past|previous|coming|upcoming) (?:week|weekend|month|year|decade|"
    r"century|morning|evening|night|season|quarter|semester)|"
    r"(?:day after|day before) (?:tomorrow|yesterday)|summer|winter|autumn|ago)\b"
)
_DATE_TRIGGERS = _words(
    "today tonight tomorrow yesterday this next last past previous coming upcoming day summer "
    "winter autumn ago"
)
_TAG_WORDS = [(n, w) for n, w, _ in _AUDIENCE] + [(n, w) for n, w, _ in _FORMAT]
_TAG_WORD_SRC, _TAG_WORD_NAMES = _named(_TAG_WORDS, "t")
_TAG_WORD_RE = re.compile(_TAG_WORD_SRC)
_TAG_PHRASES = [(n, p) for n, _, p in _AUDIENCE] + [(n, p) for n, _, p in _FORMAT]
_TAG_PHRASE_SRC, _TAG_PHRASE_NAMES = _named(_TAG_PHRASES, "t")
_TAG_PHRASE_RE = re.compile(r"\b(?:" + _TAG_PHRASE_SRC + r")\b")
_AUDIENCE_NAMES = frozenset(n for n, _, _ in _AUDIENCE)
_UNIT_WORD_SRC, _UNIT_WORD_NAMES = _named(list(_UNITS.items()), "u")
_UNIT_WORD_RE = re.compile(_UNIT_WORD_SRC)
_SHORT_SRC, _SHORT_NAMES = _named(list(_SHORT_UNITS.items()), "s")
_UNIT_AFTER_NUMBER_RE = re.compile(
    r"\d(?:\.\d+)?[\s-]?(?:"
    + _SHORT_SRC
    + "|"
    + _UNIT_WORD_SRC.replace("?P<u", "?P<n")
    + r")(?!\w)"
)
_AFTER_NUMBER_NAMES = {
    **_SHORT_NAMES,
    **{k.replace("u", "n", 1): v for k, v in _UNIT_WORD_NAMES.items()},
}
_SYMBOL_SRC, _SYMBOL_NAMES = _named([*_UNIT_SYMBOLS.items(), *_UNIT_PHRASES.items()], "y")
_UNIT_SYMBOL_RE = re.compile(_SYMBOL_SRC)
_UNIT_GATE_RE = re.compile("[°℃℉%$€£₹¥]|" + "|".join(_UNIT_PHRASE_TRIGGERS))

_SENTENCE_END = frozenset(".!?:;\n")
_CAPITAL_RE = re.compile(r"\b[A-Z]")


# ============================================================================================
# Word normalisation.
# ============================================================================================


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
    w = _IRREGULAR.get(w, w)
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


# Irregular forms -> base form, before suffix stripping.
_IRREGULAR: dict[str, str] = {
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


def _undouble(w: str) -> str:
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        return w[:-1]
    return w


def _build_lexicon() -> tuple[dict[str, str], dict[str, frozenset[str]]]:
    """Stem -> synonym class; stem -> the stems opposite to it."""
    cls: dict[str, str] = {}
    for group in _SYNONYM_GROUPS:
        words = group.split()
        for w in words:
            cls.setdefault(_stem(w), "=" + words[0])
    opposite: dict[str, set[str]] = {}
    for left, right in _ANTONYM_PAIRS:
        for a in {_stem(w) for w in left.split()}:
            for b in {_stem(w) for w in right.split()}:
                opposite.setdefault(a, set()).add(b)
                opposite.setdefault(b, set()).add(a)
    return cls, {k: frozenset(v) for k, v in opposite.items()}


_CLASS, _OPPOSITE = _build_lexicon()
_PHRASAL_STEMS = frozenset(_stem(w) for w in _PHRASAL)
_GENERIC_STEMS = frozenset(_stem(w) for w in _GENERIC_NOUNS)
# Words of the antonym list plus a few evaluative ones: the adjectives of "a slow language".
_ADJECTIVES = frozenset(
    w for pair in _ANTONYM_PAIRS for side in pair for w in side.split()
) | _words("good great nice popular modern safe secure reliable powerful useful")


def _generic_nouns(
    words: tuple[str, ...], infos: list[_Word], gaps: tuple[str, ...], anchor: list[bool]
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
        if k < n and words[k] in _ADJECTIVES:
            k += 1
        label = infos[k].label if k < n else None
        if label in _GENERIC_STEMS:
            marked[k] = True
            found.add(label or "")
    for order in (range(n), range(n - 1, -1, -1)):  # "status code" after "HTTP" chains along
        for i in order:
            label = infos[i].label
            if marked[i] or label not in _GENERIC_STEMS:
                continue
            near = (i and marked[i - 1] and gaps[i - 1] == " ") or (
                i + 1 < n and marked[i + 1] and gaps[i] == " "
            )
            if near:
                marked[i] = True
                found.add(label)
    return found


# Scaffolding words whose inflections are scaffolding too ("explained", "examples", "helps").
_STOP_STEMS = frozenset(
    _stem(w)
    for w in _split(
        "please know understand think want need get let way method example mean definition "
        "tip advice suggestion idea exist opinion view thought people person guy question "
        "answer recommendation thing"
    )
)


@lru_cache(maxsize=16384)
def _word_unit(word: str) -> str | None:
    m = _UNIT_WORD_RE.fullmatch(word)
    return _UNIT_WORD_NAMES[m.lastgroup] if m and m.lastgroup else None


@lru_cache(maxsize=16384)
def _word_tag(word: str) -> str | None:
    m = _TAG_WORD_RE.fullmatch(word)
    return _TAG_WORD_NAMES[m.lastgroup] if m and m.lastgroup else None


@lru_cache(maxsize=16384)
def _content_label(word: str) -> str | None:
    """The label a word contributes to the content comparison, or None if it is not content
    (function word, request scaffolding, or a detail another guard compares)."""
    if word in _STOP or word in _WH_WORDS or word in _NEGATION_WORDS:
        return None
    if "'" in word:  # what's, you're, it'll
        base = word.split("'", 1)[0]
        if base in _STOP or base in _WH_WORDS:
            return None
    if not word.isalpha() and any(c.isdigit() for c in word):
        return None
    if word in _NUMBER_WORDS or word in _ORDINAL_WORDS or word in _MULTIPLIERS:
        return None
    if word in _MONTH_ABBR or word in _MONTHS or word in _WEEKDAYS:
        return None
    if _word_unit(word) is not None or _word_tag(word) is not None:
        return None
    s = _stem(word)
    if s in _STOP_STEMS:
        return None
    return _CLASS.get(s, s)


def _fold(text: str) -> str:
    """Accents off (Pokémon ~ Pokemon), typographic quotes to ASCII, a leading list marker
    dropped, spellings of the US and UK unified, multi-word names made one token."""
    text = text.translate(_QUOTES)
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = _LIST_MARKER_RE.sub("", text.strip())
    if "U" in text or "America" in text:
        text = _USA_RE.sub("USA", _UK_RE.sub("UK", text))
    low = text.lower()
    if _PHRASE_TRIGGER_RE.search(low):
        text = _PHRASE_RE.sub(lambda m: _PHRASE_NAMES[m.lastgroup or ""], text)
    return text


# ============================================================================================
# Per-text analysis.
# ============================================================================================


class _Facts(NamedTuple):
    """Everything the guards compare, extracted once per text."""

    lower: str
    words: tuple[str, ...]  # lower-case word tokens in order
    stems: frozenset[str]  # stems of every word, function words included
    vocab: frozenset[str]  # words and stems
    negated: tuple[tuple[str, tuple[str, ...]], ...]  # (word, what it negates), see _negated_roots
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
    wh: frozenset[str]  # answer types asked for, see _question_kind
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


def _canon_number(integer: str, fraction: str | None) -> str:
    digits = integer.replace(",", "").lstrip("0") or "0"
    if fraction:
        frac = fraction[1:].rstrip("0")
        if frac:
            return f"{digits}.{frac}"
    return digits


def _digit_numbers(lower: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """Numbers in digits ("1,000" = "1000", "50k" = "50000"), ordinals ("12th"), letter+digit
    tokens ("ps4", "5s") and decades ("1990s", "90s")."""
    numbers: set[str] = set()
    ordinals: set[str] = set()
    alnum: set[str] = set()
    decades: set[str] = set()
    for m in _NUM_RE.finditer(lower):
        prefix, integer, fraction, suffix = m.groups()
        value = _canon_number(integer, fraction)
        if prefix:
            alnum.add(m.group(0))
        elif not suffix:
            numbers.add(value)
        elif suffix in ("st", "nd", "rd", "th"):
            ordinals.add(value)
        elif suffix == "s" and value.endswith("0") and len(value) in (2, 4):
            decades.add(value[-2:] if len(value) == 2 else value)
        elif suffix == "k":
            numbers.add(_canon_number(str(round(float(value) * 1000)), None))
        elif _word_unit(suffix) or suffix in _SHORT_UNIT_WORDS:
            numbers.add(value)  # "5kg": the unit guard compares the unit
        else:
            alnum.add(m.group(0))
    return numbers, ordinals, alnum, decades


_SHORT_UNIT_WORDS = frozenset(w for alts in _SHORT_UNITS.values() for w in alts.split("|"))


def _word_numbers(
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
        if w in _ORDINAL_WORDS:
            prev = words[i - 1] if i else ""
            if not (w == "second" and (prev in ("a", "per", "one") or prev.isdigit())):
                ordinals.add(str(_ORDINAL_WORDS[w]))
            i += 1
            continue
        starts = w in _NUMBER_WORDS or w in _MULTIPLIERS
        if w in ("a", "an") and i + 1 < n and words[i + 1] in _MULTIPLIERS and gaps[i] == " ":
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
            if t in _NUMBER_WORDS:
                current += _NUMBER_WORDS[t]
            elif t in _MULTIPLIERS:
                total += max(current, 1) * _MULTIPLIERS[t]
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
    return k < 0 or text[k] in _SENTENCE_END


def _question_kind(
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
        if w not in _WH_WORDS:
            continue
        nxt = words[i + 1] if i + 1 < n else ""
        if w == "why":
            kinds.add("why")
        elif w == "how":
            if nxt in _QUANTITY:
                kinds.add("how-much")
            elif nxt == "come":
                kinds.add("why")
            elif (
                nxt not in _NOT_DEGREE
                and i + 2 < n
                and (words[i + 2] in _AUX or words[i + 2] in ("a", "an"))
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
            i == 0 or words[i - 1] in _CLAUSE_OPENERS or any(c in gaps[i - 1] for c in ".?!,;:(\n")
        ):
            kinds.add("who" if w in ("who", "whom") else w)
    for i in range(1, n - 1):  # a later yes/no question: "..., could I have X?"
        if (
            words[i] in _POLAR
            and words[i + 1] in _PRONOUNS
            and any(c in gaps[i - 1] for c in "?.!;,")
        ):
            kinds.add("yes-no")
            break
    if ("like" in words or "feel" in words or "feels" in words) and _EXPERIENCE_RE.search(lower):
        kinds.add("experience")
        kinds.discard("how-degree")

    polar = ""
    k = 0
    while k < n and words[k] in _FILLERS:
        k += 1
    if k < n:
        first = words[k]
        if first.endswith("'s"):
            first = first[:-2]
        rest = words[k + 1 : k + 5]
        if first in _WH_WORDS:
            polar = "wh"
        elif first in _POLAR:
            polar = _POLAR[first]
            if rest[:1] == ("you",) and polar in ("can", "will"):
                verb = rest[2] if rest[1:2] in (("please",), ("kindly",), ("just",)) else ""
                verb = verb or (rest[1] if len(rest) > 1 else "")
                if verb in _REQUEST_VERBS:
                    polar = ""  # "can you explain ...": a request, not a yes/no question
            elif polar == "fact" and rest[:1] == ("you",) and rest[1:2] in _OPINION_VERBS:
                polar = "polar"
            elif polar == "fact" and rest[:2] in (("it", "possible"), ("it", "ok"), ("it", "okay")):
                polar = "can"
            elif polar == "fact" and rest[:3] in (("there", "a", "way"), ("there", "any", "way")):
                polar = ""  # "is there a way to X?" asks how to X
        elif first.endswith("n't"):
            polar = _POLAR.get(first[:-3], _POLAR.get(first[:-2], ""))

    intent = ""
    if _STORY_RE.match(lower):
        intent = "story"  # "how did you learn X?" asks for an experience, not instructions
    elif _HOWTO_RE.search(lower):
        intent = "howto"
    elif _DEFINE_RE.match(lower) and _NOT_DEFINE.isdisjoint(words[2:]):
        intent = "define"
    return kinds, polar, intent


_OPINION_VERBS = frozenset({("think",), ("believe",), ("feel",), ("reckon",)})


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


_NOT_NON = _words("nonetheless nonsense nonstop")


def _units(lower: str, unit_at: dict[int, str], has_digit: bool) -> tuple[str, ...]:
    """Canonical units in order of first appearance; `unit_at` holds those of single words."""
    found = dict(unit_at)
    if has_digit:
        for m in _UNIT_AFTER_NUMBER_RE.finditer(lower):
            if m.lastgroup:
                found.setdefault(m.start(m.lastgroup), _AFTER_NUMBER_NAMES[m.lastgroup])
    if _UNIT_GATE_RE.search(lower):
        for m in _UNIT_SYMBOL_RE.finditer(lower):
            if m.lastgroup:
                found[m.start()] = _SYMBOL_NAMES[m.lastgroup]
    out: list[str] = []
    for _, name in sorted(found.items()):
        if name != "k" and name not in out:
            out.append(name)
    return tuple(out)


def _dates(
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
        found.update("y" + y for y in _YEAR_RE.findall(lower))
        found.update("s" + d for d in decades)
        found.update("s" + d for d in _DECADE_RE.findall(lower))
    if not _DATE_TRIGGERS.isdisjoint(words):
        found.update(m.group(0) for m in _RELATIVE_DATE_RE.finditer(lower))
    if not dated:
        return found
    for pos, w in zip(offsets, words, strict=True):
        if w in _MONTHS or w in _MONTH_ABBR:
            if w in _MONTH_ABBR or w in ("may", "march"):
                near_digit = has_digit and bool(
                    _DIGIT_RE.search(lower, max(0, pos - 4), pos + len(w) + 4)
                )
                named = text[pos].isupper() and not _sentence_start(text, pos)
                if not near_digit and not (named and w in ("may", "march")):
                    continue
            found.add(_MONTH_ABBR.get(w, w))
        elif w in _WEEKDAYS or (w.endswith("s") and w[:-1] in _WEEKDAYS):
            found.add(w.removesuffix("s") if w not in _WEEKDAYS else w)
    return found


class _Word(NamedTuple):
    """What a lower-case word contributes, computed once per distinct word."""

    stem: str
    label: str | None  # content label, see _content_label
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
def _word(w: str) -> _Word:
    tense = (
        "past"
        if w in _PAST
        else "future"
        if w in _FUTURE or w.endswith("'ll")
        else "present"
        if w in _PRESENT
        else ""
    )
    person = "1" if w in _FIRST_PERSON else "2" if w in _SECOND_PERSON else ""
    info = _Word(
        stem=_stem(w),
        label=_content_label(w),
        unit=_word_unit(w),
        tag=_word_tag(w),
        negated=_negated_roots(w),
        negation=(
            w in _NEGATION_WORDS
            or w.endswith("n't")
            or w == "non"
            or (w.startswith("non") and len(w) > 6 and w not in _NOT_NON)
        ),
        numeric=w in _NUMBER_WORDS or w in _MULTIPLIERS or w in _ORDINAL_WORDS,
        date=(
            w in _MONTHS
            or w in _MONTH_ABBR
            or w in _WEEKDAYS
            or (w.endswith("s") and w[:-1] in _WEEKDAYS)
        ),
        tense=tense,
        person=person,
        special=False,
    )
    special = any(info[2:-1])
    return info._replace(special=special)


@lru_cache(maxsize=32768)
def _token_entity(tok: str) -> tuple[int, str]:
    """(kind, name) of a token as written: kind 1 is a name wherever it stands (acronym,
    mixed case, known name), 2 a capitalised word (a name unless it starts a sentence or the
    prompt is in Title Case), 0 not a name."""
    low = tok.lower()
    if low in _KNOWN_NAMES:
        return 1, _stem(low)
    first = tok[0]
    if not first.isalpha():
        return 0, ""
    tail = tok[1:]
    rest_upper = tail != tail.lower()
    if first.islower():
        return (1, _stem(low)) if rest_upper else (0, "")  # iPhone, eBay
    if len(tok) >= 2 and tok.isupper():  # acronym
        return (0, "") if low in _WH_WORDS else (1, _stem(low))
    if rest_upper:  # McDonald, JavaScript
        return 1, _stem(low)
    if low in _NUMBER_WORDS:
        return 2, low  # "Fitbit One": a capitalised number is part of a name
    if low in _STOP or low in _WH_WORDS or low == "i":
        return 0, ""
    return 2, _stem(low)


def _is_request(
    words: tuple[str, ...], gaps: tuple[str, ...], i: int, first: int, request_at: int
) -> bool:
    """Whether words[i] opens a request: first word of the prompt or of a sentence, or after
    "please", "can you", "help me", "I want you to", or "explain and ..." ."""
    if i == first or (i and any(c in gaps[i - 1] for c in ".!?:;\n")):
        return True
    prev = words[i - 1] if i else ""
    before = words[i - 2] if i > 1 else ""
    if prev in _REQUEST_LEADS:
        return prev != "you" or before in ("can", "could", "would", "will")
    if prev == "me":
        return before in ("help", "let", "to")
    if prev == "to":
        return before in ("you", "me")
    return prev in ("and", "or") and request_at == i - 2


def _opens_sentence(gap: str) -> bool:
    """Whether the text between two words ends a sentence (quotes and brackets skipped)."""
    gap = gap.rstrip(" \t\"'(*[")
    return bool(gap) and gap[-1] in _SENTENCE_END


@lru_cache(maxsize=4096)
def _analyse(raw: str) -> _Facts:
    text = _fold(raw)
    lower = text.lower()
    parts = _SPLIT_RE.split(text)  # [gap, word, gap, word, ..., gap]
    tokens = parts[1::2]
    words = tuple(t.lower() for t in tokens)
    gaps = tuple(parts[2:-1:2])
    offsets = list(accumulate(map(len, parts), initial=0))[1:-1:2]
    has_digit = bool(_DIGIT_RE.search(lower))
    charset = set(text)
    infos = [_word(w) for w in words]

    n = len(words)
    skip: set[str] = set()  # words of a tag phrase ("step by step"): not content
    tags: set[str] = set()
    if not _TAG_TRIGGERS.isdisjoint(words):
        for m in _TAG_PHRASE_RE.finditer(lower):
            if m.lastgroup:
                tags.add(_TAG_PHRASE_NAMES[m.lastgroup])
                skip.update(_WORD_RE.findall(m.group(0)))

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
    capitals = len(_CAPITAL_RE.findall(text)) - (1 if text[:1].isupper() else 0)
    title_case = n > 4 and capitals > 0.6 * (n - 1)
    last = n - 1
    first = 0
    while first < n and words[first] in _FILLERS:
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
                generic_you = generic_you or (w == "you" and i > 0 and words[i - 1] in _GENERIC_YOU)
            if info.tag and not (info.tag == "email" and i < last and words[i + 1] in _NOT_EMAIL):
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
        kind, name = _token_entity(tokens[i])
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
        if w in _TO_FROM:
            heading, heading_until = _TO_FROM[w], i + 3

        # Content words, in order.
        if w in _REQUEST_ONLY and _is_request(words, gaps, i, first, request_at):
            request_at = i
            if w in _TASKS:
                tasks.add(_TASKS[w])
            continue
        if label is None:
            if w in _DO_VERBS and (i == last or any(c in gaps[i] for c in "?.!,;")):
                content.append("do")  # "what does X do?" asks for a function, not a definition
            elif w in ("in", "on", "into") and i and infos[i - 1].stem in _PHRASAL_STEMS:
                content.append(w)  # "log in" vs "log out", "sign in" vs "sign up"
            continue
        if w in skip or (w in _QUANTITY and i and words[i - 1] == "how"):
            continue
        if w in _OF_NOUNS and ((i < last and words[i + 1] == "of") or (w == "list" and i == 0)):
            continue  # "a list of", "what kind of", imperative "List ..."
        if (
            not wh_noun
            and 0 < i < last
            and words[i - 1] in ("which", "what")
            and words[i + 1] in _AUX
        ):
            wh_noun = label
            continue
        content.append(label)
        has_generic = has_generic or label in _GENERIC_STEMS

    if "+" in charset or "#" in charset:
        entities.update(m.group(0).lower() for m in _SPECIAL_NAME_RE.finditer(text))
    generic = _generic_nouns(words, infos, gaps, anchor) if has_generic else set()

    # Numbers.
    numbers: set[str] = set()
    ordinals: set[str] = set()
    alnum: set[str] = set()
    decades: set[str] = set()
    weak: set[str] = set()
    expressions: frozenset[str] = frozenset()
    if has_digit:
        numbers, ordinals, alnum, decades = _digit_numbers(lower)
        expressions = frozenset(re.sub(r"\s+", "", e) for e in _EXPR_RE.findall(lower))
    if numeric:
        strong, weak, word_ordinals = _word_numbers(words, gaps)
        numbers |= strong
        ordinals |= word_ordinals

    # Literals and code.
    quoted: set[str] = set()
    if not charset.isdisjoint('`"\u00ab') or text.count("'") >= 2:
        for m in _QUOTED_RE.finditer(text):
            inner = next(g for g in m.groups() if g is not None)
            norm = " ".join(inner.lower().split())
            if norm:
                quoted.add(norm)
    code: set[str] = set()
    if "```" in text:  # fenced code blocks compare whole (whitespace-normalised)
        code.update("```" + " ".join(m.group(1).split()) for m in _FENCE_RE.finditer(text))
    for chars, rx in _CODE_RES:
        if not chars or not charset.isdisjoint(chars):
            code.update(m.group(0).strip().lower() for m in rx.finditer(text))
    code -= _KNOWN_NAMES  # macOS, iOS: names, compared by the entity guard
    if "." in text.rstrip(".?! "):
        for m in _DOTTED_RE.finditer(text):
            if all(len(p) >= 2 for p in m.group(0).split(".")):  # not "e.g", "U.S", "Ph.D"
                code.add(m.group(0).lower())

    wh, polar, intent = _question_kind(lower, words, gaps)
    if n > 2 and words[-1] == "you" and words[-2] in ("to", "for"):
        content.append("you")  # "what does X mean to you?" asks for the assistant's view
    if "experience" in wh:  # "what does it feel like" ~ "what is it like"
        content = [c for c in content if c != "feel"]
    if "why" in wh:  # "why does X happen" ~ "what causes X" ~ "what is the reason for X"
        content = [c for c in content if c not in _WHY_WORDS]
    stems = frozenset([info.stem for info in infos])
    return _Facts(
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
        units=_units(lower, unit_at, has_digit),
        dates=frozenset(_dates(text, lower, words, offsets, decades, has_digit, dated)),
        negations=negations,
        audience=frozenset(t for t in tags if t in _AUDIENCE_NAMES),
        formats=frozenset(t for t in tags if t not in _AUDIENCE_NAMES),
        entities=frozenset(entities),
        wh=frozenset(wh),
        polar=polar,
        intent=intent,
        wh_noun=wh_noun,
        generic=frozenset(generic),
        directed=frozenset(directed),
        tense=frozenset(tense),
        ops=_operators(words, expressions) if has_digit or numeric else frozenset(),
        tasks=frozenset(tasks),
        person=(
            ""
            if generic_you or first_person == second_person or (second_person and intent == "howto")
            else "1"
            if first_person
            else "2"
        ),
        number_order=tuple(
            _canon_number(m.group(2), m.group(3)) for m in _NUM_RE.finditer(lower) if not m.group(1)
        )
        if has_digit
        else (),
    )


def _operators(words: tuple[str, ...], expressions: frozenset[str]) -> frozenset[str]:
    """Arithmetic operators, written as symbols inside an expression or as words between
    numbers: "5 + 3" ~ "five plus three", but not "5 minus 3"."""
    ops = {_OP_SYMBOLS[c] for e in expressions for c in e[1:] if c in _OP_SYMBOLS}
    for i in range(1, len(words) - 1):
        op = _OP_WORDS.get(words[i])
        if op and _is_number(words[i - 1]) and _is_number(words[i + 1]):
            ops.add(op)
    return frozenset(ops)


def _is_number(w: str) -> bool:
    return w.isdigit() or w in _NUMBER_WORDS or w in _MULTIPLIERS


_NONCOMMUTATIVE = _words("to from minus divided over power of than into per out")
_OP_SYMBOLS = {"+": "+", "-": "-", "*": "*", "\u00d7": "*", "/": "/", "\u00f7": "/", "^": "^"}
_OP_WORDS = {
    "plus": "+",
    "minus": "-",
    "times": "*",
    "multiplied": "*",
    "divided": "/",
    "over": "/",
}


# ============================================================================================
# Guards: each compares the facts of two prompts and returns True when they differ.
# ============================================================================================


def _quoted(a: _Facts, b: _Facts) -> bool:
    """Quoted strings and backtick code ('id' vs 'name', `git rebase` vs `git merge`): the
    literal is what the question is about, so each must be quoted on the other side too, or
    appear there as the same run of whole words ("translate 'hello'" ~ "translate hello")."""
    return _missing_literal(a.quoted, b) or _missing_literal(b.quoted, a)


def _missing_literal(literals: frozenset[str], other: _Facts) -> bool:
    for q in literals:
        if q in other.quoted:
            continue
        run = " ".join(_WORD_RE.findall(q))
        if run and f" {run} " in f" {' '.join(other.words)} ":
            continue
        return True
    return False


def _code(a: _Facts, b: _Facts) -> bool:
    """Code (snake_case, camelCase, dotted names and file names, calls, --flags, paths,
    operators such as == vs ===, fenced blocks): each must be found on the other side, as
    code or as the same word. os.path.join vs os.path.split differ in a token embeddings
    barely see."""
    return any(c not in b.code and c not in b.vocab for c in a.code) or any(
        c not in a.code and c not in a.vocab for c in b.code
    )


def _date(a: _Facts, b: _Facts) -> bool:
    """Dates: years (1990 vs 2020), decades, months, weekdays, seasons and relative dates
    (today vs tomorrow, last year vs next year). Facts change with time: any difference,
    including a date on one side only, rejects."""
    return a.dates != b.dates


def _unit(a: _Facts, b: _Facts) -> bool:
    """Units and currencies (kg vs lb, GB vs MB, Celsius vs Fahrenheit, USD vs EUR, hours vs
    days): the sets must match, and so must their order when there are several, which is the
    direction of a conversion ("km to miles" vs "miles to km")."""
    if set(a.units) != set(b.units):
        return True
    return len(a.units) > 1 and a.units != b.units


def _number(a: _Facts, b: _Facts) -> bool:
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


def _negation(a: _Facts, b: _Facts) -> bool:
    """Negation: not / no / never / n't / without / cannot / non-... on one side only, or a
    different count of them; and negating affixes (safe vs unsafe, legal vs illegal, like vs
    dislike, useful vs useless). "or not", "why or why not", "if not" and "not only" are not
    negations of the question."""
    if a.negations != b.negations:
        return True
    return _affix_negation(a, b) or _affix_negation(b, a)


def _affix_negation(a: _Facts, b: _Facts) -> bool:
    """A word of `a` (absent from `b`) that is a negated form of a word of `b`."""
    return any(w not in b.vocab and not b.vocab.isdisjoint(roots) for w, roots in a.negated)


@lru_cache(maxsize=16384)
def _negated_roots(word: str) -> tuple[str, ...]:
    """What a word negates: "unsafe" -> safe, "illegal" -> legal, "non-profit" -> profit,
    "useless" -> use / useful. Empty for most words."""
    roots: list[str] = []
    for p in _NEG_PREFIXES:
        if word.startswith(p):
            rest = word[len(p) :].lstrip("-")
            if len(rest) >= (6 if p == "a" else 4):
                roots += [rest, _stem(rest)]
    if word.endswith("less") and len(word) > 6:
        root = word[:-4]
        roots += [root, root + "ful", _stem(root)]
    return tuple(roots)


def _antonym(a: _Facts, b: _Facts) -> bool:
    """Opposites: a word on one side only whose listed opposite is on the other side only
    (increase vs decrease, best vs worst, before vs after, buy vs sell, horizontal vs
    vertical), and role pairs (employer vs employee, interviewer vs interviewee)."""
    only_a = a.stems - b.stems
    only_b = b.stems - a.stems
    if not only_a or not only_b:
        return False
    for s in only_a:
        opposite = _OPPOSITE.get(s)
        if opposite and not opposite.isdisjoint(only_b):
            return True
    return _role_swap(a, b) or _role_swap(b, a)


def _role_swap(a: _Facts, b: _Facts) -> bool:
    """employee / employer, interviewee / interviewer, mentee / mentor, payee / payer."""
    for w in a.words:
        w = w.removesuffix("s")
        if len(w) > 5 and w.endswith("ee") and w not in b.vocab:
            root = w[:-2]
            for other in (root + "er", root + "or", root + "ers", root + "ors"):
                if other in b.vocab and other not in a.vocab:
                    return True
    return False


def _audience(a: _Facts, b: _Facts) -> bool:
    """Audience: for a child / teen / beginner vs an expert / student / developer / manager.
    The right answer to the same question differs with who it is for."""
    return a.audience != b.audience


def _format(a: _Facts, b: _Facts) -> bool:
    """Answer format: bullet list vs paragraph, table, JSON / YAML / CSV, poem vs haiku vs
    limerick, story, joke, email, summary, sentence, brief vs detailed, formal vs casual; and
    the task of the request verb when both have one ("Write a function that ..." vs "Explain a
    function that ...", "Summarize X" vs "Explain X"; "give me" / "tell me" go with any)."""
    if a.formats != b.formats:
        return True
    return bool(a.tasks and b.tasks and a.tasks != b.tasks)


def _question(a: _Facts, b: _Facts) -> bool:
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


def _person(a: _Facts, b: _Facts) -> bool:
    """Whose: "What is my IP address?" vs "What is your IP address?". Only a prompt about the
    asker alone against one about a specific "you" alone; the generic "how do you ..." matches
    anyone."""
    return bool(a.person and b.person and a.person != b.person)


def _tense(a: _Facts, b: _Facts) -> bool:
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


def _entity(a: _Facts, b: _Facts) -> bool:
    """Names: capitalised words not starting a sentence, acronyms, mixed-case names (iPhone,
    McDonald), C++ / C#, language and OS names in any case. Each must appear on the other side
    (any case; possessive, plural and demonym ignored: India ~ Indian)."""
    return _missing_entity(a, b) or _missing_entity(b, a)


def _missing_entity(a: _Facts, b: _Facts) -> bool:
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


def _order(a: _Facts, b: _Facts) -> bool:
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


def _direction_between(f: _Facts, x: str, y: str) -> frozenset[str]:
    idx: dict[str, int] = {}
    for k, w in enumerate(f.words):
        label = _content_label(w)
        if label in (x, y) and label not in idx:
            idx[label] = k
    if len(idx) < 2:
        return frozenset()
    lo, hi = sorted(idx.values())
    return frozenset(_DIRECTION[w] for w in f.words[lo + 1 : hi] if w in _DIRECTION)


def _content(a: _Facts, b: _Facts) -> bool:
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
    return len(x) >= 5 and y.startswith(x) and y[len(x) :] in _DERIVATIONAL


_Guard = Callable[[_Facts, _Facts], bool]
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
    a = _analyse(query)
    b = _analyse(cached)
    return tuple(name for name, guard in _CHAIN if guard(a, b))


def verify(query: str, cached: str) -> str | None:
    """None when an answer to `cached` also answers `query`; otherwise the name of the first
    guard that rejects the pair (one of :data:`GUARDS`)."""
    if query == cached:
        return None
    a = _analyse(query)
    b = _analyse(cached)
    for name, guard in _CHAIN:
        if guard(a, b):
            return name
    return None
