"""proxy.guards: look-alikes must be rejected by the right guard, paraphrases must pass.

Every example here is hand-written for these tests (none comes from the calibration data)."""

from __future__ import annotations

import pytest

from proxy.guards import DEFAULT_SIMILARITY, GUARDS, objections, verify

# (query, cached, the guard that must reject the pair)
LOOK_ALIKES: list[tuple[str, str, str]] = [
    # number: digits, decimals, number words, ordinals, arithmetic, model numbers
    ("What is 3+4?", "What is 3+5?", "number"),
    ("What is 15% of 80?", "What is 25% of 80?", "number"),
    ("Give me 5 ideas for a team outing", "Give me 15 ideas for a team outing", "number"),
    ("Name three famous painters", "Name four famous painters", "number"),
    (
        "Explain the first law of thermodynamics",
        "Explain the second law of thermodynamics",
        "number",
    ),
    ("Who directed the 3rd Matrix film?", "Who directed the 2nd Matrix film?", "number"),
    ("Is 0.1 + 0.2 equal to 0.3 in Python?", "Is 0.1 + 0.2 equal to 0.4 in Python?", "number"),
    ("What is 10 divided by 2?", "What is 10 times 2?", "number"),
    ("What is 5 + 3?", "What is 5 minus 3?", "number"),
    ("Is the PS4 worth buying?", "Is the PS5 worth buying?", "number"),
    ("Give me one example of irony", "Give me two examples of irony", "number"),
    ("What is 3 to the power of 4?", "What is 4 to the power of 3?", "number"),
    # negation: words, contractions, affixes
    ("Is Perl slow?", "Is Perl not slow?", "negation"),
    ("Why is my laptop fan loud?", "Why isn't my laptop fan loud?", "negation"),
    ("Which foods are gluten free?", "Which foods are not gluten free?", "negation"),
    ("Pancake recipes with eggs", "Pancake recipes without eggs", "negation"),
    ("Can cats eat chocolate?", "Can cats never eat chocolate?", "negation"),
    ("Is it legal to record a phone call?", "Is it illegal to record a phone call?", "negation"),
    ("Is this mushroom edible?", "Is this mushroom inedible?", "negation"),
    ("Is the plugin useful?", "Is the plugin useless?", "negation"),
    ("What can I do when I can sleep?", "What can I do when I cannot sleep?", "negation"),
    # entity: capitalised names, acronyms, languages, known lower-case names
    ("What is the capital of Slovakia?", "What is the capital of Slovenia?", "entity"),
    ("Who founded Amazon?", "Who founded Netflix?", "entity"),
    ("How do I set up a venv on macOS?", "How do I set up a venv on Windows?", "entity"),
    ("How do I say thank you in German?", "How do I say thank you in Italian?", "entity"),
    ("How do I reverse a string in Java?", "How do I reverse a string in C++?", "entity"),
    ("how do i install numpy on linux", "how do i install numpy on windows", "entity"),
    ("What does NASA stand for?", "What does ESA stand for?", "entity"),
    ("Summarize the plot of Hamlet", "Summarize the plot of Othello", "entity"),
    # quoted literals and inline code
    (
        "What does the error 'list index out of range' mean?",
        "What does the error 'string index out of range' mean?",
        "quoted",
    ),
    ("What does `git stash pop` do?", "What does `git stash drop` do?", "quoted"),
    ('Translate "I love you" to Japanese', 'Translate "I miss you" to Japanese', "quoted"),
    # code identifiers
    ("When should I use os.path.join?", "When should I use os.path.split?", "code"),
    (
        "How does array.map() work in JavaScript?",
        "How does array.filter() work in JavaScript?",
        "code",
    ),
    (
        "What does the --force flag do in git push?",
        "What does the --dry-run flag do in git push?",
        "code",
    ),
    ("Why is my_function slow?", "Why is your_function slow?", "code"),
    ("What does == mean in JavaScript?", "What does === mean in JavaScript?", "code"),
    # units and currencies, including conversion direction
    ("How many pounds is 10 kg?", "How many ounces is 10 kg?", "unit"),
    ("Convert 30 miles to kilometers", "Convert 30 kilometers to miles", "unit"),
    ("How many MB are in 1 GB?", "How many KB are in 1 GB?", "unit"),
    ("Convert 20 °C to Fahrenheit", "Convert 20 °F to Celsius", "unit"),
    ("How long does it take to walk 5 km?", "How long does it take to walk 5 miles?", "unit"),
    ("What does a Big Mac cost in dollars?", "What does a Big Mac cost in euros?", "unit"),
    ("How many calories should I eat per day?", "How many calories should I eat per week?", "unit"),
    # dates: years, months, weekdays, decades, relative dates
    ("What is the weather in Oslo today?", "What is the weather in Oslo tomorrow?", "date"),
    ("Who won the Super Bowl in 2020?", "Who won the Super Bowl in 2021?", "date"),
    ("What events are on in Lisbon in July?", "What events are on in Lisbon in December?", "date"),
    ("What's on TV on Monday night?", "What's on TV on Friday night?", "date"),
    ("Best movies of the 1990s", "Best movies of the 1980s", "date"),
    ("What was Japan's GDP last year?", "What was Japan's GDP this year?", "date"),
    # antonyms and role pairs
    ("What is the fastest land animal?", "What is the slowest land animal?", "antonym"),
    ("How do I gain weight?", "How do I lose weight?", "antonym"),
    ("What are the pros of nuclear power?", "What are the cons of nuclear power?", "antonym"),
    ("How do I encrypt a file with GPG?", "How do I decrypt a file with GPG?", "antonym"),
    ("What happens before a volcano erupts?", "What happens after a volcano erupts?", "antonym"),
    ("When is the best time to buy a car?", "When is the best time to sell a car?", "antonym"),
    ("Sort a list in ascending order", "Sort a list in descending order", "antonym"),
    (
        "What is the maximum value of an int in C?",
        "What is the minimum value of an int in C?",
        "antonym",
    ),
    ("How do I upload a file to S3?", "How do I download a file to S3?", "antonym"),
    ("How do I raise my blood pressure?", "How do I lower my blood pressure?", "antonym"),
    (
        "Tips for an employer before an interview",
        "Tips for an employee before an interview",
        "antonym",
    ),
    # audience
    (
        "Explain photosynthesis to a child",
        "Explain photosynthesis to a biology professor",
        "audience",
    ),
    ("Explain blockchain for beginners", "Explain blockchain for experts", "audience"),
    (
        "Explain quantum computing in simple terms",
        "Explain quantum computing to a developer",
        "audience",
    ),
    # format
    ("List the planets as bullet points", "List the planets in a table", "format"),
    ("Write a poem about autumn", "Write a short story about autumn", "format"),
    ("Describe the water cycle briefly", "Describe the water cycle in detail", "format"),
    ("Give me the capitals of Europe as JSON", "Give me the capitals of Europe as CSV", "format"),
    (
        "Write a formal email declining the invitation",
        "Write a casual email declining the invitation",
        "format",
    ),
    ("Write a haiku about rain", "Write a limerick about rain", "format"),
    ("Write a function that parses dates", "Explain a function that parses dates", "format"),
    ("Recommend a laptop for travel", "Find a laptop for travel", "format"),
    # question: answer type, yes/no vs open, modal, how-to vs definition
    ("Where was Mozart born?", "When was Mozart born?", "question"),
    ("Why is the sky blue?", "Is the sky blue?", "question"),
    ("Can I take aspirin with coffee?", "How can I take aspirin with coffee?", "question"),
    ("Should I learn Rust?", "Will I learn Rust?", "question"),
    ("What is a hash map?", "How do I build a hash map?", "question"),
    # tense
    ("Who will win the next election in Brazil?", "Who won the next election in Brazil?", "tense"),
    ("What was the population of Lagos?", "What is the population of Lagos?", "tense"),
    # person: the asker's thing vs a specific "you"
    ("What's my zodiac sign?", "What's your zodiac sign?", "person"),
    ("What is your favourite book?", "What is my favourite book?", "person"),
    # order: swapped roles and directions
    ("Is Python faster than Java?", "Is Java faster than Python?", "order"),
    ("Does a dog chase a cat?", "Does a cat chase a dog?", "order"),
    (
        "Translate 'merci' from French to English",
        "Translate 'merci' from English to French",
        "order",
    ),
    ("Flights to Madrid next week", "Flights from Madrid next week", "order"),
    (
        "How do I convert a string to an int in Go?",
        "How do I convert an int to a string in Go?",
        "order",
    ),
    # content: a topic word swapped or added
    (
        "What is the difference between a virus and a bacterium?",
        "What is the difference between a virus and a fungus?",
        "content",
    ),
    (
        "How do I remove duplicates from a list?",
        "How do I remove duplicates from a dictionary?",
        "content",
    ),
    ("How do I make pancakes?", "How do I make waffles?", "content"),
    ("What is the speed of light?", "What is the speed of sound?", "content"),
    ("How do I change my password?", "How do I change my username?", "content"),
    ("How do I write a unit test?", "How do I find a unit test?", "content"),
    ("How do I call a method in Ruby?", "How do I define a method in Ruby?", "content"),
    ("How do I sign up for Slack?", "How do I sign in to Slack?", "content"),
    ("How do I log in to Slack?", "How do I log out of Slack?", "antonym"),
    ("How do I turn on dark mode?", "How do I turn off dark mode?", "antonym"),
    ("Is Rust the only safe systems language?", "Is Rust a safe systems language?", "content"),
    ("How do I clean a washing machine?", "How do I clean my washing?", "content"),
    (
        "What does body language say about confidence?",
        "What does the body say about confidence?",
        "content",
    ),
    ("Which Python library is fastest?", "Which Python language is fastest?", "content"),
    ("Write a regex that matches a hex colour", "Write a regex that matches a postcode", "content"),
    ("Validate an email address in Go", "Validate a phone number in Go", "content"),
    ("How do I center an image horizontally?", "How do I center an image vertically?", "antonym"),
    (
        "What is the time complexity of merge sort in the worst case?",
        "What is the time complexity of merge sort in the average case?",
        "antonym",
    ),
    (
        "Is tap water safe to drink in Lima?",
        "Is tap water safe to drink in Lima in summer?",
        "date",
    ),
    (
        "What is the boiling point of water at sea level?",
        "What is the boiling point of water on a mountain?",
        "content",
    ),
]

# (query, cached): an answer to the cached prompt answers the query.
PARAPHRASES: list[tuple[str, str]] = [
    ("How do I reset my router password?", "How can I reset my router password?"),
    ("how do i clear my browser cache", "How do I clear my browser cache?"),
    ("What is machine learning?", "Can you explain what machine learning is?"),
    ("Explain machine learning", "Can you explain machine learning?"),
    ("How do I reverse a list in Python?", "What's the best way to reverse a Python list?"),
    ("What are the benefits of meditation?", "What are the advantages of meditation?"),
    ("Give me 5 tips to improve my sleep", "Give me five tips to improve my sleep"),
    ("What is the capital of Peru?", "Which city is the capital of Peru?"),
    ("What is the capital of Peru?", "What's Peru's capital?"),
    ("How do I delete a file in Linux?", "How can I remove a file on Linux?"),
    ("What's the difference between a list and a tuple?", "How do lists and tuples differ?"),
    ("How many ounces are in a pound?", "How many oz are in a lb?"),
    ("Convert 10 kg to pounds", "Convert 10 kilograms to lbs"),
    ("Convert 5 miles to km", "Convert five miles to kilometers"),
    ("How do I install Node.js on Ubuntu?", "How can I install Node.js on Ubuntu?"),
    ("Write a poem about the ocean", "Write me a poem about the ocean"),
    ("Write a haiku about autumn leaves", "Compose a haiku about autumn leaves"),
    ("Can you recommend a good book on Python?", "Recommend a good Python book"),
    ("How do I fix a dripping faucet?", "How can I repair a dripping faucet?"),
    (
        "What is the time complexity of binary search?",
        "What's the time complexity of binary search?",
    ),
    ("How do I learn guitar fast?", "How can I learn guitar quickly?"),
    ("What is the largest ocean on Earth?", "Which ocean is the biggest on Earth?"),
    ("How do I exit vim?", "How can I quit vim?"),
    ('Translate "thank you" into Spanish', 'Translate "thank you" to Spanish'),
    ("Translate 'thank you' into Spanish", "Translate thank you into Spanish"),
    ("Summarize the plot of Hamlet", "Give me a summary of the plot of Hamlet"),
    ("Why do cats purr?", "What is the reason cats purr?"),
    ("What causes thunder?", "Why does thunder happen?"),
    ("Is it possible to run Windows apps on a Mac?", "Can I run Windows apps on a Mac?"),
    ("How to make a cup of tea", "How do I make a cup of tea?"),
    ("Give me one example of a metaphor", "Give me an example of a metaphor"),
    ("What is 5 + 3?", "What is five plus three?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
    ("Is it safe to eat raw eggs?", "Are raw eggs safe to eat?"),
    ("Which is better, Vue or React?", "Which is better, React or Vue?"),
    ("What is the colour of a flamingo?", "What is the color of a flamingo?"),
    ("Should gambling be legalised?", "Should gambling be legalized?"),
    ("What is a Pokémon?", "What is a Pokemon?"),
    (
        "If you were president, what would you change?",
        "If you were the president, what would you change?",
    ),
    ("Explain recursion with an example", "Explain recursion with examples"),
    ("What is it like to live in Oslo?", "What does it feel like to live in Oslo?"),
    ("Why is my code slow or not?", "Why is my code slow?"),
    ("Please explain how TLS works", "Can you explain how TLS works?"),
    ("Help me write a thank-you note", "Write a thank-you note for me"),
    ("I want you to summarize this paragraph", "Summarize this paragraph"),
    ("How do I log in to Slack?", "How can I sign in to Slack?"),
    ("How do I turn on dark mode in Firefox?", "How can I enable dark mode in Firefox?"),
    ("How can I find out my IP address?", "How do I find my IP address?"),
    ("How do you reset a router?", "How do I reset a router?"),
    ("Define entropy", "Explain entropy"),
    ("Tell me about entropy", "Can you explain entropy?"),
    ("Give me a limerick about rain", "Write a limerick about rain"),
    ("List five fruits", "Name five fruits"),
    ("Is Go fast?", "Is Go a fast language?"),
    ("How do I update Fedora?", "How can I update my Fedora machine?"),
    ("What does HTTP 503 mean?", "What does the HTTP status code 503 mean?"),
]


@pytest.mark.parametrize(("query", "cached", "guard"), LOOK_ALIKES)
def test_look_alike_is_rejected_by_the_right_guard(query: str, cached: str, guard: str) -> None:
    assert verify(query, cached) == guard
    assert verify(cached, query) == guard, "verify must be symmetric"


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES)
def test_paraphrase_passes(query: str, cached: str) -> None:
    assert verify(query, cached) is None, objections(query, cached)
    assert verify(cached, query) is None, objections(cached, query)


def test_every_guard_has_a_look_alike() -> None:
    assert {guard for _, _, guard in LOOK_ALIKES} == set(GUARDS)


def test_identical_prompts_pass() -> None:
    assert verify("What is 7+7?", "What is 7+7?") is None
    assert verify("", "") is None


def test_objections_lists_every_guard_in_order() -> None:
    found = objections("Is Java faster than Python in 2024?", "Is Python faster than Java?")
    assert found[0] == "date"
    assert "order" in found
    assert list(found) == sorted(found, key=GUARDS.index)
    assert objections("How do I renew my passport?", "How can I renew my passport?") == ()


def test_default_similarity_is_a_cosine() -> None:
    assert 0.5 < DEFAULT_SIMILARITY < 1.0


def test_odd_inputs_do_not_crash() -> None:
    odd = [
        "",
        " ",
        "?",
        "'",
        '"',
        "`",
        "```",
        "2",
        "1,000,000",
        "x^2",
        "C#",
        "\u00e9\u00e8",
        "\n\n",
    ]
    for a in odd:
        for b in odd:
            result = verify(a, b)
            assert result is None or result in GUARDS
