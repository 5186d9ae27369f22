"""The learned verifier's judgements with the real all-MiniLM-L6-v2 reader and the shipped model,
at the shipped default: what must NOT hit (each narrow rule, the model's own look-alikes, other
languages) and paraphrases that must. End to end on both stores: test_semantic_meaning.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.semantic.embedders import LocalEmbedder
from proxy.semantic.verifier import LearnedVerifier, Verdict, load_model
from proxy.stores.similarity import Neighbor

Judge = Callable[[str, str], Verdict]


@pytest.fixture(scope="module")
def judge() -> Judge:
    model = load_model()
    reader = LocalEmbedder("all-MiniLM-L6-v2", projection=model.projection)
    verifier = LearnedVerifier(model, 0.005)

    def run(stored: str, asked: str) -> Verdict:
        (v1, s1), (v2, s2) = reader.read_many([stored, asked])
        neighbor = Neighbor("k", float(v1 @ v2), stored, s1.pack())
        return verifier.judge(asked, s2, neighbor, floor=model.min_similarity, requested=None)

    return run


RULE_LOOK_ALIKES = [
    ("What is 17 times 23?", "What is 17 times 24?", "number"),
    ("List five rivers in Africa", "List seven rivers in Africa", "number"),
    ("Is intermittent fasting healthy?", "Is intermittent fasting not healthy?", "negation"),
    ("Can I bring a laptop in carry-on luggage?", "Can I bring a laptop without carry-on luggage?",
     "negation"),
    ("Is this ticket transferable?", "Is this ticket non-transferable?", "antonym_prefix"),
    ("Summarize the advantages of remote work", "Summarize the disadvantages of remote work",
     "antonym_prefix"),
    ("How do I encrypt a file with openssl?", "How do I decrypt a file with openssl?", "opposite"),
    ("What should I eat before a marathon?", "What should I eat after a marathon?", "opposite"),
]  # fmt: skip


@pytest.mark.parametrize(("stored", "asked", "rule"), RULE_LOOK_ALIKES)
def test_each_rule_stops_its_look_alike(judge: Judge, stored: str, asked: str, rule: str) -> None:
    verdict = judge(stored, asked)
    assert not verdict.accepted
    assert verdict.reason in (rule, "below_threshold")
    assert verdict.margin is None  # final: no adaptive line can lift it


MODEL_LOOK_ALIKES = [
    ("What is the population of Canada?", "What is the population of Australia?"),
    ("How do I install Docker on Ubuntu?", "How do I install Docker on Windows?"),
    ("Explain recursion to a ten year old", "Explain recursion to a senior engineer"),
    ("Write a cover letter for a nursing job", "Write a resignation letter for a nursing job"),
    ("Sort a Python dictionary by value", "Sort a Python dictionary by key"),
    ("What are the side effects of ibuprofen?", "What are the side effects of acetaminophen?"),
    ("Convert this JSON to YAML", "Convert this YAML to JSON"),
    ("Who trains the new interns?", "Who do the new interns train?"),
    ("How many grams are in 3 pounds?", "How many grams are in 3 ounces?"),
    ("Translate 'good morning' into French", "Translate 'good morning' into Spanish"),
    # the same words once quotes are set aside, one comma apart: left to the model since
    # same_words keeps a comma that is code
    ("What does print('a' 'b') output in Python?", "What does print('a', 'b') output in Python?"),
]  # fmt: skip


SYMBOL_LOOK_ALIKES = [  # these went through the same-words shortcut (margin 1.0, no model)
    ("What is 10 + 3?", "What is 10 - 3?"),
    ("Is 7 > 5?", "Is 7 < 5?"),
    ("What is 2^10?", "What is 2*10?"),
    ("What is (2 + 3) * 4?", "What is 2 + 3 * 4?"),
    ("What is -3 squared?", "What is 3 squared?"),
    ("How do I convert Python to C++?", "How do I convert Python to C#?"),
    ("Is 1,000 greater than 999?", "Is 1.000 greater than 999?"),
    ("Convert 5' to cm", 'Convert 5" to cm'),
]  # fmt: skip


SHORTCUT_LOOK_ALIKES = [  # the same words once case and . , ! ? ; : were set aside: served
    # with margin 1.0, no model, until the case rule and same_words' prose-only punctuation
    ("What does ls -R do?", "What does ls -r do?"),  # recursive, or reverse order
    ("What does git branch -d do?", "What does git branch -D do?"),  # delete, or force it
    ("What does ssh -X do?", "What does ssh -x do?"),  # X11 forwarding on, or off
    ("In Python regex, what does \\S match?", "In Python regex, what does \\s match?"),
    ("Is 10 MW a lot of power?", "Is 10 mW a lot of power?"),  # megawatts, or milliwatts
    ("How long does it take to download 4 GB at 100 Mbps?",
     "How long does it take to download 4 GB at 100 MBps?"),
    ("What is the molar mass of CO?", "What is the molar mass of Co?"),  # a gas, or cobalt
    ("Is HF dangerous to touch?", "Is Hf dangerous to touch?"),  # an acid, or hafnium
    ("What does my_list[:3] return in Python?", "What does my_list[3:] return in Python?"),
    ("What does s[::-1] do in Python?", "What does s[:-1] do in Python?"),
    ("What does nums[::2] return?", "What does nums[:2] return?"),
    ("What is the type of {1: 2} in Python?", "What is the type of {1, 2} in Python?"),
    ("What is the type of (1,) in Python?", "What is the type of (1) in Python?"),
    ("What does x != 5 mean?", "What does x = 5 mean?"),
    ("What does cd .. do?", "What does cd . do?"),
    ("What does the regex .*? match?", "What does the regex .* match?"),  # lazy, or greedy
    ("In JavaScript, what does user?.name return if user is null?",
     "In JavaScript, what does user.name return if user is null?"),
    ("What does if !done mean in JavaScript?", "What does if done mean in JavaScript?"),
    # quotes that make a literal in code (set aside everywhere until they were kept in code)
    ("What does SELECT 'name' FROM users return?", "What does SELECT name FROM users return?"),
    ("What does echo '$HOME' print in bash?", "What does echo $HOME print in bash?"),
    ("In Python, what is x after x = 'abc'?", "In Python, what is x after x = abc?"),
    ("What does echo '$HOME' print?", 'What does echo "$HOME" print?'),  # single: no expansion
    # case with a lowercase side, where the capitals are an acronym or a unit's prefix
    ("What does IT stand for?", "What does it stand for?"),
    ("How much does 1 Mg weigh in kg?", "How much does 1 mg weigh in kg?"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "asked"), [*MODEL_LOOK_ALIKES, *SYMBOL_LOOK_ALIKES, *SHORTCUT_LOOK_ALIKES]
)
def test_look_alikes_are_refused(judge: Judge, stored: str, asked: str) -> None:
    """One detail apart, among them the same words with another operator, sign, bracket,
    number written otherwise, case where case is the meaning, or . , ! ? ; : that are code."""
    verdict = judge(stored, asked)
    assert not verdict.accepted, verdict


OTHER_LANGUAGES = [
    ("Quelle est la capitale de l'Australie ?", "Quelle est la capitale de l'Autriche ?"),
    ("Wie viele Tage hat der Februar 2024?", "Wie viele Tage hat der Februar 2023?"),
    ("¿Es malo el café para la salud?", "¿No es malo el café para la salud?"),
    ("Как приготовить борщ без мяса?", "Как приготовить борщ с мясом?"),
    ("如何学习Python编程？", "如何学习Java编程？"),
    (
        "東京から大阪まで新幹線で何時間かかりますか？",
        "東京から京都まで新幹線で何時間かかりますか？",
    ),
    ("Compra ou venda de ações hoje?", "Compra de ações hoje?"),
]


@pytest.mark.parametrize(("stored", "asked"), OTHER_LANGUAGES)
def test_other_languages_never_hit_through_the_english_model(
    judge: Judge, stored: str, asked: str
) -> None:
    verdict = judge(stored, asked)
    assert not verdict.accepted
    assert verdict.reason in ("language", "number", "below_threshold")
    assert verdict.margin is None  # final: no adaptive line can lift it


PARAPHRASES = [
    # "How do I reverse a list in Python?" / "How can I reverse a Python list?" was accepted by
    # the model shipped before the calibration was bagged; this one scores it 0.864, under the
    # 0.879 line of short questions: a miss, one upstream call (README, "The verifier").
    ("What is the capital of France?", "What's the capital of France?"),
    ("What are some good ways to improve my sleep?", "What are good ways to improve sleep?"),
    ("What is the best way to learn Python?", "What's the best way to learn Python?"),
]  # fmt: skip


@pytest.mark.parametrize(("stored", "asked"), PARAPHRASES)
def test_paraphrases_are_accepted(judge: Judge, stored: str, asked: str) -> None:
    verdict = judge(stored, asked)
    assert verdict.accepted, verdict


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is the capital of France?", "What is the capital of France ?"),
        ("How do I center a div in CSS?", "how do i center a div in css?"),
        ("Explain how photosynthesis works", "Explain how photosynthesis works."),
        ("HOW DO I RESET MY PASSWORD?", "How do I reset my password?"),
        ("What is NASA?", "what is nasa?"),
        ("Is PYTHON hard to learn?", "Is Python hard to learn?"),
        ("Hi, how do I reset my password?", "Hi how do I reset my password"),
        ("Who is better: Messi or Ronaldo?", "Who is better, Messi or Ronaldo?"),
        ("In 2019, who won the World Cup?", "In 2019 who won the World Cup?"),
        ("How do I use list.sort() in Python?", "How do I use list.sort() in Python"),
        ("What does 'ephemeral' mean?", "What does ephemeral mean?"),
    ],
)
def test_the_same_prompt_written_slightly_otherwise_is_accepted(
    judge: Judge, stored: str, asked: str
) -> None:
    verdict = judge(stored, asked)
    assert verdict.accepted, verdict
