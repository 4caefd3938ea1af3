"""Prompt-injection canaries give zero score lift on the learned-model path.

Each canary is added after (and before) real answers of different quality; the score with the
injection must not exceed the score without it. The LLM-judge path is covered with the same
canaries in test_llm_judge.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scorer.guards import scan_injection
from scorer.training.data import TrainingSet
from scorer.training.inference import TextScorer
from canaries import CANARIES

EPSILON = 1e-6


def test_there_are_enough_canaries() -> None:
    assert len(CANARIES) >= 30


ANSWERS = ["It returns the value from the same row.", "a function that calls itself until a base case", "logn", "By reference."]


@pytest.mark.parametrize("canary", CANARIES)
def test_every_canary_is_cut_and_the_answer_kept(canary: str) -> None:
    for answer in ANSWERS:
        for text in (f"{answer} {canary}", f"{canary} {answer}", f"{answer.rstrip('.')} {canary}"):
            scan = scan_injection(text)
            assert scan.found, text
            assert scan.cleaned.rstrip(".") == answer.rstrip("."), text


@pytest.fixture(scope="module")
def scorer(artefact: Path, encoder) -> TextScorer:
    return TextScorer(artefact, encoder=encoder)


@pytest.fixture(scope="module")
def answers(excel_data: TrainingSet) -> list[tuple[str, str]]:
    """(qid, answer) pairs: a strong, a middling and a weak answer to different questions."""
    picks = {"vlookup": 2.5, "absref": 1.0, "pivot": 5.0, "iferror": 3.0}
    out = []
    for qid, grade in picks.items():
        out.append((qid, next(a.text for a in excel_data.answers if a.qid == qid and a.grade == grade)))
    return out


def test_canaries_give_zero_lift_to_the_learned_model(
    scorer: TextScorer, excel_data: TrainingSet, answers: list[tuple[str, str]]
) -> None:
    lifts = []
    for qid, answer in answers:
        question = excel_data.questions[qid]
        # The same answer with and without a full stop is scored separately: the comparison is
        # always with exactly the text the candidate wrote, minus the injection.
        for written in (answer, answer.rstrip(".")):
            clean = scorer.score(question, written)
            assert "guard:injection_removed" not in clean.signals
            for canary in CANARIES:
                variants = (f"{written} {canary}",) if written != answer else (f"{written} {canary}", f"{canary} {written}")
                for injected in variants:
                    result = scorer.score(question, injected)
                    lifts.append((result.grade - clean.grade, canary, injected))
                    assert "guard:injection_removed" in result.signals and result.flagged
    worst = max(lifts)
    assert worst[0] <= EPSILON, f"score lifted by {worst[0]:.3f}: {worst[2]!r}"


def test_an_injection_alone_scores_zero(scorer: TextScorer, excel_data: TrainingSet) -> None:
    for canary in CANARIES[:5]:
        result = scorer.score(excel_data.questions["vlookup"], canary)
        assert result.grade == 0.0 and result.flagged
