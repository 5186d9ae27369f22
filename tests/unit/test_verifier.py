"""The verifier's pure parts: narrow rules and their language gate, sketches, the tree
ensemble, the calibration table, and the cosine fallback (the real model's judgements on
meaning are in tests/integration/test_verifier_meaning.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from proxy.errors import SettingsError
from proxy.semantic.features import _median, same_words
from proxy.semantic.language import is_english
from proxy.semantic.rules import first_objection, objection
from proxy.semantic.sketch import MAX_TOKENS, Projection, make_sketch, unpack
from proxy.semantic.trees import Trees
from proxy.semantic.verifier import (
    UNCALIBRATED_COSINE,
    CosineVerifier,
    LearnedVerifier,
    calibrated_cosine,
    load_model,
)
from proxy.stores.similarity import Neighbor


@pytest.mark.parametrize(
    ("a", "b", "rule"),
    [
        pytest.param("What is 2+2?", "What is 2+3?", "number", id="digits"),
        pytest.param(
            "List three moons of Jupiter",
            "List 4 moons of Jupiter",
            "number",
            id="number-word-vs-digit",
        ),
        pytest.param("Is tea bad for you?", "Is tea not bad for you?", "negation", id="not"),
        pytest.param("Can I fly with a dog?", "Can I fly without a dog?", "negation", id="without"),
        pytest.param(
            "Is the fare refundable?", "Is the fare non-refundable?", "antonym_prefix", id="non-"
        ),
        pytest.param(
            "Pros of working from home", "Cons of working from home", "opposite", id="pros-cons"
        ),
        pytest.param(
            "Can I cancel before it ships?",
            "Can I cancel after it ships?",
            "opposite",
            id="before-after",
        ),
        pytest.param("What does ls -R do?", "What does ls -r do?", "case", id="flag"),
        pytest.param(r"What does \S match?", r"What does \s match?", "case", id="escape"),
        pytest.param("Is 10 MW a lot?", "Is 10 mW a lot?", "case", id="unit"),
        pytest.param("How many MB is 500 Mb?", "How many Mb is 500 MB?", "case", id="units"),
        pytest.param("Molar mass of CO", "Molar mass of Co", "case", id="symbol"),
    ],
)
def test_each_rule_refuses_its_look_alike(a: str, b: str, rule: str) -> None:
    assert first_objection(a, b, english=True) == rule
    assert first_objection(b, a, english=True) == rule


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
        ("What's the capital of France?", "What is the capital city of France?"),
        ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
        ("Give me 3 tips for sleeping better", "Share three tips for better sleep"),
        ("Why shouldn't I go?", "Why shouldn\u2019t I go?"),  # a curly apostrophe: one negation
        # Case that is the writer's habit: one side lowercase, shouting, or a long word.
        ("What is the capital of France?", "what is the capital of france?"),
        ("HOW DO I RESET MY PASSWORD?", "How do I reset my password?"),
        ("What is NASA?", "what is nasa?"),
        ("Is PYTHON hard to learn?", "Is Python hard to learn?"),
        ("Give me 5 Tips for sleep", "give me 5 tips for sleep"),
        ("Some mind-blowing facts", "some Mind-Blowing facts"),
    ],
)
def test_rules_let_paraphrases_through(a: str, b: str) -> None:
    assert first_objection(a, b, english=True) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What does IT stand for?", "What does it stand for?"),
        ("How do I get into IT?", "how do I get into it?"),
        ("Is the US safe to visit?", "Is the us safe to visit?"),
        ("What does WHO say about masks?", "What does who say about masks?"),
        ("How much does 1 Mg weigh in kg?", "How much does 1 mg weigh in kg?"),  # mega, milli
        ("Is 5 Mb enough for a photo?", "is 5 mb enough for a photo?"),
        ("Is 3 Pa a lot?", "Is 3 pa a lot?"),  # pascal, or not a unit
    ],
)
def test_same_words_with_case_as_the_meaning_are_refused(a: str, b: str) -> None:
    """Pairs the same-words shortcut would accept, where one side's capitals are an acronym that
    is a function word on the other, or a mega/milli unit prefix; :func:`case` lets them by
    because one side is lowercase."""
    assert same_words(a, b)
    assert first_objection(a, b, english=True) is None
    assert objection(a, b, english=True) == objection(b, a, english=True) == "case"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("HOW DO I GET INTO IT?", "How do I get into it?"),  # shouting
        ("Why is IT SO slow?", "Why is it so slow?"),
        ("What is NASA?", "what is nasa?"),  # an acronym, but no other word
        ("Give me 5 Tips for sleep", "give me 5 tips for sleep"),  # not a unit prefix
        ("Is 5 Kg heavy?", "Is 5 kg heavy?"),  # kilo either way
        ("Is 6 M enough?", "Is 6 m enough?"),  # one letter: not read as a prefix
    ],
)
def test_same_words_with_case_as_habit_are_accepted(a: str, b: str) -> None:
    assert same_words(a, b)
    assert objection(a, b, english=True) is None


def test_acronyms_are_read_in_english_only() -> None:
    a, b = "¿Qué significa IT en inglés?", "¿Qué significa it en inglés?"
    assert objection(a, b, english=False) is None
    assert objection("¿Es 1 Mg mucho?", "¿Es 1 mg mucho?", english=False) == "case"


def test_english_rules_are_not_applied_to_other_languages() -> None:
    # Spanish "no" on one side only is not an English negation; the digits still count.
    a, b = "¿Cómo instalo Python en Windows?", "¿No sé cómo instalo Python en Windows?"
    assert not is_english(a)
    assert first_objection(a, b, english=False) is None
    assert first_objection("¿Cuánto es 2+2?", "¿Cuánto es 2+3?", english=False) == "number"


@pytest.mark.parametrize(
    ("text", "english"),
    [
        ("How do I reverse a list in Python?", True),
        ("Is 17 a prime number?", True),
        ("Comment inverser une liste en Python ?", False),
        ("Wie mache ich den letzten Commit in Git rückgängig?", False),
        ("如何在Python中反转列表", False),
        ("Как перевернуть список в Python?", False),
        ("2+2", True),
    ],
)
def test_language_gate(text: str, english: bool) -> None:
    assert is_english(text) is english


def _projection(dims: int = 8, out: int = 4) -> Projection:
    basis = np.eye(dims, out, dtype=np.float32)
    return Projection(np.zeros(dims, np.float32), basis)


def test_a_sketch_survives_packing_and_is_unit_length() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([101, 7, 8, 9, 102])
    sketch = make_sketch(ids, rng.standard_normal((5, 8)), rng.standard_normal(8),
                         _projection(), english=True)  # fmt: skip
    assert sketch.ids.tolist() == [7, 8, 9]  # [CLS] and [SEP] dropped
    assert np.allclose(np.linalg.norm(sketch.tokens, axis=1), 1.0, atol=1e-5)
    again = unpack(sketch.pack(), sentence_dims=8)
    assert again is not None
    assert again.ids.tolist() == [7, 8, 9]
    assert np.allclose(again.tokens, sketch.tokens)
    assert again.english
    assert not again.truncated


def test_a_long_prompt_is_marked_truncated() -> None:
    n = MAX_TOKENS + 10
    sketch = make_sketch(np.arange(n), np.ones((n, 8)), np.ones(8), _projection(), english=True)
    assert sketch.truncated
    assert sketch.ids.size == MAX_TOKENS


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x02\x00\x01\x00\x04\x00" + b"\x00" * 50])
def test_a_bad_sketch_reads_as_none(data: bytes) -> None:
    assert unpack(data, sentence_dims=8) is None


def test_trees_follow_their_splits() -> None:
    # One stump: feature 1 <= 0.5 goes left (value -1), else right (value +2).
    trees = Trees(
        feature=np.array([[1, 0, 0]]), threshold=np.array([[0.5, 0.0, 0.0]]),
        left=np.array([[1, 0, 0]]), right=np.array([[2, 0, 0]]),
        leaf=np.array([[False, True, True]]), value=np.array([[0.0, -1.0, 2.0]]),
        baseline=0.5, depth=3,
    )  # fmt: skip
    low = trees.score(np.array([9.0, 0.4], np.float32))
    high = trees.score(np.array([9.0, 0.6], np.float32))
    assert low == pytest.approx(1 / (1 + np.exp(0.5)))
    assert high == pytest.approx(1 / (1 + np.exp(-2.5)))


def test_trees_of_uneven_depth_stop_at_their_leaves() -> None:
    # Tree 0: x0 <= 0 is a leaf (1.0); else x1 <= 0 splits again (2.0 / 3.0). Tree 1: a leaf.
    # Four steps for trees two deep: a leaf reached early must stay where it is.
    trees = Trees(
        feature=np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]),
        threshold=np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [0.0] * 5]),
        left=np.array([[1, 0, 3, 0, 0], [0] * 5]), right=np.array([[2, 0, 4, 0, 0], [0] * 5]),
        leaf=np.array([[False, True, False, True, True], [True] * 5]),
        value=np.array([[0.0, 1.0, 0.0, 2.0, 3.0], [0.25, 0, 0, 0, 0]]),
        baseline=0.0, depth=4,
    )  # fmt: skip

    def raw(x0: float, x1: float) -> float:
        p = trees.score(np.array([x0, x1], np.float32))
        return float(np.log(p / (1 - p)))

    assert raw(-1, 5) == pytest.approx(1.25)
    assert raw(1, -1) == pytest.approx(2.25)
    assert raw(1, 1) == pytest.approx(3.25)


@pytest.mark.parametrize("size", [1, 2, 3, 10, 11, 128])
def test_the_median_is_numpys_to_the_bit(size: int) -> None:
    values = np.random.default_rng(size).standard_normal(size).astype(np.float32)
    assert _median(values) == float(np.median(values))


def test_the_shipped_model_loads_with_its_provenance() -> None:
    model = load_model()
    assert model.meta["reader"] == "all-MiniLM-L6-v2"
    assert {t["file"] for t in model.meta["training"]} >= {"qqp-train.tsv", "mrpc-train.tsv"}
    assert model.thresholds.shape == (model.risks.size, 4)
    # A stricter rate never lowers a threshold.
    assert np.all(np.diff(model.thresholds, axis=0) <= 1e-12)


def test_the_table_row_is_the_largest_rate_not_above_the_one_asked() -> None:
    model = load_model()
    at_half = LearnedVerifier(model, 0.005)._thresholds
    assert np.array_equal(at_half, model.thresholds[list(model.risks).index(0.005)])
    assert np.array_equal(LearnedVerifier(model, 0.007)._thresholds, at_half)
    assert np.array_equal(LearnedVerifier(model, 1e-6)._thresholds, model.thresholds[0])


def test_a_rate_below_every_calibrated_one_is_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    model = load_model()
    with caplog.at_level("WARNING", logger="semcache.verifier"):
        LearnedVerifier(model, float(model.risks.min()))
    assert not caplog.records
    with caplog.at_level("WARNING", logger="semcache.verifier"):
        LearnedVerifier(model, 1e-4)
    assert "below the verifier's strictest calibrated rate, 0.001" in caplog.text


def test_the_learned_verifier_refuses_what_it_cannot_read() -> None:
    verifier = LearnedVerifier(load_model(), 0.005)
    neighbor = Neighbor("k", 0.99, "What is AI?", b"")
    verdict = verifier.judge("What's AI?", None, neighbor, floor=0.75, requested=None)
    assert (verdict.accepted, verdict.reason) == (False, "unreadable")
    below = Neighbor("k", 0.5, "What is AI?", b"")
    verdict = verifier.judge("What's AI?", None, below, floor=0.75, requested=None)
    assert verdict.reason == "below_threshold"


def test_cosine_verifier_uses_the_request_threshold_else_the_calibrated_one() -> None:
    verifier = CosineVerifier(0.95)
    near = Neighbor("k", 0.9, "What is the capital of France?")
    assert not verifier.judge("capital of France?", None, near, floor=0.75, requested=None).accepted
    assert verifier.judge("capital of France?", None, near, floor=0.75, requested=0.8).accepted
    number = Neighbor("k", 0.99, "What is 2 plus 2?")
    verdict = verifier.judge("What is 2 plus 3?", None, number, floor=0.75, requested=0.5)
    assert (verdict.accepted, verdict.reason) == (False, "number")


def test_the_cosine_verifier_refuses_case_as_the_meaning_too() -> None:
    """The capitals check is no learned verifier's alone: a cosine line (``hash:``, a
    calibration file) refuses ``IT`` for ``it`` and ``1 Mg`` for ``1 mg`` however close."""
    verifier = CosineVerifier(0.95)
    for stored, asked in [
        ("What does IT stand for?", "What does it stand for?"),
        ("How much does 1 Mg weigh in kg?", "How much does 1 mg weigh in kg?"),
    ]:
        near = Neighbor("k", 0.999, stored)
        verdict = verifier.judge(asked, None, near, floor=0.75, requested=None)
        assert (verdict.accepted, verdict.reason) == (False, "case")  # fmt: skip


def test_a_request_threshold_decides_but_the_margin_stays_on_the_calibrated_scale() -> None:
    """X-Cache-Threshold: 0.5 accepts a 0.80 cosine, whose margin is still -0.15 from the
    calibrated 0.95: an audit that finds it wrong is evidence at -0.15, where the line can use it
    (it was counted at +0.30, where it raised the line over everyone's calibrated hits)."""
    verifier = CosineVerifier(0.95)
    near = Neighbor("k", 0.80, "What is the capital of France?")
    chosen = verifier.judge("capital of France?", None, near, floor=0.5, requested=0.5)
    assert (chosen.accepted, chosen.requested) == (True, True)
    assert chosen.margin == pytest.approx(-0.15)
    refused = verifier.judge("capital of France?", None, near, floor=0.75, requested=0.85)
    assert (refused.accepted, refused.requested) == (False, True)
    assert refused.margin == pytest.approx(-0.15)
    plain = verifier.judge("capital of France?", None, near, floor=0.75, requested=None)
    assert (plain.accepted, plain.requested) == (False, False)
    assert plain.margin == pytest.approx(-0.15)


def test_a_calibration_file_maps_the_rate_to_a_cosine(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    table = {"embedder": "http:nomic-embed-text", "thresholds": [[0.001, 0.97], [0.01, 0.9]]}
    path.write_text(json.dumps(table))
    assert calibrated_cosine(path, "http:nomic-embed-text", 0.005) == 0.97
    assert calibrated_cosine(path, "http:nomic-embed-text", 0.01) == 0.9
    assert calibrated_cosine(path, "http:nomic-embed-text", 0.0001) == 0.97
    with pytest.raises(SettingsError, match="fitted for"):
        calibrated_cosine(path, "http:text-embedding-3-small", 0.005)
    path.write_text("{}")
    with pytest.raises(SettingsError, match="not a calibration file"):
        calibrated_cosine(path, "http:nomic-embed-text", 0.005)
    assert UNCALIBRATED_COSINE >= 0.95


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is the capital of France?", "what is the capital of france"),
        ("What is the capital of France?", "What is the capital of France ?"),
        ("Why shouldn't I go?", "Why shouldn\u2019t I go?"),  # a curly apostrophe
        ("Some mind-blowing facts", "some mind blowing facts"),  # a hyphen inside a word
        ("Explain how photosynthesis works", "Explain how photosynthesis works..."),
        ("Is 10 bigger than 9?", "is 10 bigger than 9"),  # a number at the end of a sentence
        ("Hi, how do I reset my password?", "Hi how do I reset my password"),
        ("Who is better: Messi or Ronaldo?", "Who is better, Messi or Ronaldo?"),
        ("I love pizza! What goes with it?", "I love pizza. What goes with it?"),
        ("In 2019, who won?", "In 2019 who won?"),
        ("How do I use list.sort() in Python?", "How do I use list.sort() in Python"),
        ('What does "serendipity" mean?', "What does serendipity mean?"),
        ('What is the meaning of "Ayodhya"?', "What is the meaning of Ayodhya"),
        ("How was this scene shot in 'The Matrix'?", "How was this scene shot in The Matrix?"),
    ],
)
def test_same_words_sets_aside_case_spacing_and_sentence_punctuation(a: str, b: str) -> None:
    assert same_words(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 10 + 3?", "What is 10 - 3?"),
        ("Is 7 > 5?", "Is 7 < 5?"),
        ("What is 2^10?", "What is 2*10?"),
        ("What is (2 + 3) * 4?", "What is 2 + 3 * 4?"),
        ("What is -3 squared?", "What is 3 squared?"),
        ("Convert Python to C++", "Convert Python to C#"),
        ("What does the symbol @ mean?", "What does the symbol ~ mean?"),
        ("What is 0/0?", "What is 0%0?"),
        ("What is #?", "What is"),
        ("Is x = y in Python?", "Is x == y in Python?"),
        ("Is 1,000 greater than 999?", "Is 1.000 greater than 999?"),  # a thousand, or one
        ("Convert 5' to cm", 'Convert 5" to cm'),  # feet, or inches
        ("What is 1.5 squared?", "What is 15 squared?"),
        # . , ! ? ; : that are code, not a sentence's punctuation
        ("What does my_list[:3] return?", "What does my_list[3:] return?"),
        ("What does s[::-1] do?", "What does s[:-1] do?"),
        ("What is the type of {1: 2}?", "What is the type of {1, 2}?"),
        ("What is the type of (1,)?", "What is the type of (1)?"),
        ("What does x != 5 mean?", "What does x = 5 mean?"),
        ("What does cd .. do?", "What does cd . do?"),
        ("What does the regex .*? match?", "What does the regex .* match?"),
        ("What does user?.name return?", "What does user.name return?"),
        ("What does print('a' 'b') print?", "What does print('a', 'b') print?"),
        ("How is 0! = 1?", "How is 0 = 1?"),  # a factorial
        # quotes that make a literal where the prompt reads as code
        ("What does SELECT 'name' FROM users return?", "What does SELECT name FROM users return?"),
        ("What does echo '$HOME' print?", "What does echo $HOME print?"),
        ("What does echo '$HOME' print?", 'What does echo "$HOME" print?'),
        ("What is x after x = 'abc'?", "What is x after x = abc?"),
        ('What does print("a") print?', "What does print(a) print?"),
        ("In Python, what is 'self'?", "In Python, what is self?"),
        # only the other side reads as code (SQL in capitals): its quotes still count
        ("what does select 'name' from users return?", "What does SELECT name FROM users return?"),
        ("", ""),  # no words: nothing to call the same
    ],
)
def test_same_words_keeps_every_symbol_a_prompt_can_be_about(a: str, b: str) -> None:
    assert not same_words(a, b)
