"""Curated word lists of the guards: function words, opposites, synonyms, multi-word
spellings, audiences and answer formats, and names often written in lower case.

Small, general English; nothing here is specific to a data set.
"""

from __future__ import annotations


def word_list(text: str) -> list[str]:
    return text.split()


def word_set(text: str) -> frozenset[str]:
    return frozenset(word_list(text))


# Function words and the scaffolding of a request ("can you explain", "what is the best way to",
# "give me some tips"): paraphrases change these freely, so the content comparison skips them.
# Words that other guards compare (negations, numbers, units, dates, wh-words) are skipped too.
STOP = word_set(
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
ANTONYM_PAIRS: tuple[tuple[str, str], ...] = (
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
SYNONYM_GROUPS: tuple[str, ...] = (
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
PHRASES: tuple[tuple[str, str], ...] = (
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
AUDIENCE: tuple[tuple[str, str, str], ...] = (
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
FORMAT: tuple[tuple[str, str, str], ...] = (
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
TAG_TRIGGERS = word_set(
    "old olds little grade elementary high lay non plain simple scratch senior business bullet "
    "bulleted numbered list tl one short few detail depth step example sample"
)

# Names often written in lower case (languages, programming languages, operating systems), so
# that "in french" vs "in spanish" is an entity difference too.
KNOWN_NAMES = word_set(
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
