"""Feature rows: question demoting, derived criteria, peer and graded features without leaks."""

from __future__ import annotations

import numpy as np
import pytest

from scorer.training.data import Question, TrainingSet
from scorer.training.embed import Encoder
from scorer.training.features import (
    BASE_FEATURES,
    GRADED_FEATURES,
    PEER_FEATURES,
    FeatureConfig,
    Featurizer,
    demoted_embedding,
    derive_criteria,
)
from scorer.training.protocol import build_rows
from scorer.training.text import content_keys

QUESTION = Question(
    qid="q",
    group="q",
    prompt="What is a variable?",
    references=("A location in memory that can store a value.",),
)


def test_content_keys_singularise() -> None:
    assert content_keys("Arrays and queries, the arrays") == ["array", "query"]


def test_demoted_embedding_ignores_the_question_words(encoder: Encoder) -> None:
    asked = frozenset(content_keys(QUESTION.prompt))
    only_question, answer = encoder.encode_tokens(["A variable, a variable!", "A variable is a location in memory"])
    assert not demoted_embedding(only_question, asked).any()
    vec = demoted_embedding(answer, asked)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    same, other = (demoted_embedding(t, asked) for t in encoder.encode_tokens(["A place in memory.", "The sky is blue."]))
    assert float(vec @ same) > float(vec @ other) + 0.2


def test_criteria_come_from_the_reference_minus_the_question() -> None:
    names = [name for name, _, _ in derive_criteria(QUESTION)]
    assert names == ["location", "memory", "store", "value"]
    given = Question("q", "q", "p", ("r",), criteria=(("lock", ("lock",), 2.0),))
    assert derive_criteria(given) == given.criteria


def test_base_features_reward_the_reference_not_the_question(encoder: Encoder) -> None:
    f = Featurizer(encoder)
    enc = f.encode_question(QUESTION)
    texts = ["A named place in memory where a value is stored.", "A variable is a variable.", "Paris is in France."]
    plain, demoted = f.answer_embeddings(enc, texts)
    base = f.base(enc, texts, plain, demoted)
    col = {n: i for i, n in enumerate(BASE_FEATURES)}
    assert base.shape == (3, len(BASE_FEATURES))
    good, copy, off = base
    # memory and value; core_rs does not stem "stored" to "store" (the alignment features do match it).
    assert good[col["concept_coverage"]] == pytest.approx(0.5)
    assert copy[col["concept_coverage"]] == 0.0 and copy[col["question_overlap"]] == 1.0
    assert good[col["cos_reference_demoted"]] > copy[col["cos_reference_demoted"]]
    assert good[col["align_f1_demoted"]] > off[col["align_f1_demoted"]]


def test_peer_features_leave_the_answer_out() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    base = rng.uniform(size=(4, len(BASE_FEATURES)))
    out = Featurizer.peers(base, emb, emb, base, [0, 1, 2, 3])
    others = emb[1:].sum(axis=0)
    assert out[0, 0] == pytest.approx(float(others / np.linalg.norm(others) @ emb[0]))
    col = BASE_FEATURES.index("cos_reference_demoted")
    assert out[0, 1] == pytest.approx(base[0, col] - base[1:, col].mean())
    assert out.shape == (4, len(PEER_FEATURES))


def test_graded_features_never_see_the_answers_own_grade(encoder: Encoder) -> None:
    answers = ["A place in memory holding a value.", "Memory location storing a value.", "No idea at all.", "A box for data."]
    grades = [5.0, 5.0, 0.0, 3.0]
    from scorer.training.data import GradedAnswer

    data = TrainingSet("t", {"q": QUESTION}, [GradedAnswer("q", a, g) for a, g in zip(answers, grades, strict=True)])
    rows = build_rows(data, Featurizer(encoder), FeatureConfig(peers=True, graded=True), graded_per_question=3, seed=1)
    assert rows.X.shape == (4, len(BASE_FEATURES) + len(PEER_FEATURES) + len(GRADED_FEATURES))
    assert rows.scored.sum() == 1  # three graded answers are context, one is scored
    # Changing a graded answer's own grade must not change its own features.
    changed = TrainingSet("t", {"q": QUESTION}, [GradedAnswer("q", a, g) for a, g in zip(answers, grades, strict=True)])
    context = np.flatnonzero(~rows.scored)
    target = int(context[0])
    changed.answers[target] = GradedAnswer("q", answers[target], 1.0)
    rows2 = build_rows(changed, Featurizer(encoder), FeatureConfig(peers=True, graded=True), graded_per_question=3, seed=1)
    assert np.array_equal(rows.X[target], rows2.X[target])
    assert not np.array_equal(rows.X[int(np.flatnonzero(rows.scored)[0])], rows2.X[int(np.flatnonzero(rows.scored)[0])])
