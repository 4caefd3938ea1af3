"""Feature extraction and Score assembly, without a server."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from scorer import grading
from xlinterview.v1 import common_pb2, scorer_pb2


def answers(*texts: str) -> list[scorer_pb2.AnswerInput]:
    return [scorer_pb2.AnswerInput(answer_id=f"a{i}", text=t) for i, t in enumerate(texts)]


def test_formula_features_separate_right_wrong_and_hardcoded(formula_item: common_pb2.ScoringItem) -> None:
    right, wrong, constant, broken = grading.prepare(
        formula_item, answers('=SUMIFS(C2:C5,A2:A5,"East")', "=SUM(C2:C5)", "=15", "=SUM(C2:C5")
    )
    assert [c.met for c in right.criteria] == [True, True, True]
    assert "returns 15" in right.evidence[0]
    assert [c.met for c in wrong.criteria] == [True, False, True]
    assert "expected result is 15" in " ".join(wrong.feedback)
    # A constant is right on the sample only: the hidden variants expose it.
    assert [c.met for c in constant.criteria] == [True, False, False]
    assert "0 of 4 hidden variants" in " ".join(constant.evidence)
    assert broken.criteria[0].met is False and "could not be read" in broken.feedback[0]
    assert all(p.features is not None and p.rule_score is None for p in (right, wrong, constant, broken))


def test_text_criteria_report_the_matched_terms(text_item: common_pb2.ScoringItem) -> None:
    (prepared,) = grading.prepare(
        text_item, answers("A relative reference shifts when copied, but $A$1 with the dollar sign is absolute.")
    )
    assert [c.met for c in prepared.criteria] == [True, True, True]
    assert "relative" in prepared.criteria[0].detail
    (empty,) = grading.prepare(text_item, answers("I like spreadsheets."))
    assert [c.met for c in empty.criteria] == [False, False, False]
    assert "Not covered" in " ".join(empty.feedback)


def test_choice_is_a_rule_and_says_so(choice_item: common_pb2.ScoringItem) -> None:
    right, wrong = grading.prepare(choice_item, answers("1", "0"))
    assert (right.rule_score, wrong.rule_score) == (1.0, 0.0)
    score = grading.ScoreWriter(choice_item, "answer_scorer", "1").write(wrong, None)
    assert score.provenance.backend == "rule" and score.provenance.model_name == ""
    assert score.signals == [grading.SIGNAL_CHOICE]
    assert "PivotTable" in score.feedback


@pytest.mark.parametrize("text", ["7", "x", "-1"])
def test_choice_rejects_options_that_do_not_exist(choice_item: common_pb2.ScoringItem, text: str) -> None:
    with pytest.raises(InvalidArgument):
        grading.prepare(choice_item, answers(text))


def test_model_score_carries_its_provenance(formula_item: common_pb2.ScoringItem) -> None:
    (prepared,) = grading.prepare(formula_item, answers('=SUMIFS(C2:C5,A2:A5,"East")'))
    writer = grading.ScoreWriter(formula_item, "answer_scorer", "1")
    score = writer.write(prepared, 0.97)
    assert score.value == pytest.approx(0.97)
    assert score.provenance.backend == "triton"
    assert (score.provenance.model_name, score.provenance.model_version) == ("answer_scorer", "1")
    assert score.provenance.rubric_version == "sumifs-east@v1"
    assert "triton.answer_scorer" in score.signals and grading.SIGNAL_FORMULA in score.signals
    with pytest.raises(ValueError):
        writer.write(prepared, None)


def test_one_writer_writes_each_answer_as_a_fresh_writer_would(
    formula_item: common_pb2.ScoringItem, choice_item: common_pb2.ScoringItem
) -> None:
    # One writer serves a whole model run and keeps templates of what its scores share; answers
    # with other signals, rule-decided answers and calibrated confidences must not inherit another's.
    formulas = grading.prepare(formula_item, answers('=SUMIFS(C2:C5,A2:A5,"East")', "=SUM(C2:C5)", "=SUM(C2:C5"))
    formulas[1].signals.insert(0, "guard:extra")
    (rule,) = grading.prepare(choice_item, answers("0"))
    args = ("answer_scorer", "3", ["sentence_encoder:1"], "trained", 0.5)
    writer = grading.ScoreWriter(formula_item, *args)
    batch = scorer_pb2.ScoreBatchResponse()
    cases = [
        (formulas[0], 0.97, None), (formulas[1], 0.6, None), (formulas[2], 0.1, 0.8), (rule, None, None), (formulas[0], 0.4, None)
    ]
    for prepared, value, calibrated in cases:
        written = writer.write(prepared, value, calibrated, into=batch.results.add().score)
        assert written == grading.ScoreWriter(formula_item, *args).write(prepared, value, calibrated)  # a fresh writer
    first, extra, calibrated_score, rule_score, unsure = (r.score for r in batch.results)
    assert list(first.signals) == [
        grading.SIGNAL_FORMULA, "triton.answer_scorer", "model:answer_scorer@3", grading.SIGNAL_CONFIDENCE
    ]
    assert list(first.provenance.models) == ["answer_scorer:3", "sentence_encoder:1"]
    assert extra.signals[0] == "guard:extra" and "guard:extra" not in first.signals
    assert calibrated_score.signals[-1] == grading.SIGNAL_CALIBRATED
    assert calibrated_score.confidence == pytest.approx(0.8)
    assert rule_score.provenance.backend == "rule" and not rule_score.provenance.model_name
    assert list(rule_score.signals) == [grading.SIGNAL_CHOICE]
    assert [c.name for c in first.criteria] == ["valid formula", "correct result", "computed from the sheet"]
    assert not first.needs_review and unsure.needs_review and "below the review threshold" in unsure.review_reason


def test_writing_into_a_used_score_replaces_it(formula_item: common_pb2.ScoringItem) -> None:
    (prepared,) = grading.prepare(formula_item, answers("=SUM(C2:C5)"))
    used = common_pb2.Score(value=1.0, feedback="old", evidence=["old"], needs_review=True, review_reason="old")
    writer = grading.ScoreWriter(formula_item, "answer_scorer", "1")
    assert writer.write(prepared, 0.2, into=used) == writer.write(prepared, 0.2)


def test_validate_rejects_bad_items_and_answers(formula_item: common_pb2.ScoringItem) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        grading.validate(formula_item, ["   "], 100)
    with pytest.raises(InvalidArgument, match="limit is 10"):
        grading.validate(formula_item, ["=SUM(" + "A1," * 10 + "A1)"], 10)
    mismatched = common_pb2.ScoringItem()
    mismatched.CopyFrom(formula_item)
    mismatched.kind = common_pb2.QUESTION_KIND_FREE_TEXT
    with pytest.raises(InvalidArgument, match="spec.rubric"):
        grading.validate(mismatched, ["x"], 100)


def test_bad_reference_formula_is_the_callers_error(formula_item: common_pb2.ScoringItem) -> None:
    formula_item.formula.reference_formula = "=SUM(C2:C5"
    with pytest.raises(InvalidArgument, match="sumifs-east"):
        grading.prepare(formula_item, answers("=1"))


def test_format_value_writes_arrays_like_excel() -> None:
    assert grading.format_value([[1.0]]) == "1"
    assert grading.format_value([["East"], ["West"]]) == "{East;West}"
    assert grading.format_value([[True, None]]) == "{TRUE,(empty)}"


def test_grades_from_a_kept_sheet_equal_grading_from_scratch(formula_item: common_pb2.ScoringItem) -> None:
    batch = answers('=SUMIFS(C2:C5,A2:A5,"East")', "=SUM(C2:C5)", "=15", "=SUM(C2:")
    sheet = grading.formula_sheet(formula_item)
    kept = grading.prepare(formula_item, batch, sheet.grade_many([a.text for a in batch]))
    fresh = grading.prepare(formula_item, batch)
    assert [(p.answer_id, list(p.features), p.criteria, p.evidence, p.feedback) for p in kept] == [
        (p.answer_id, list(p.features), p.criteria, p.evidence, p.feedback) for p in fresh  # type: ignore[arg-type]
    ]


def test_a_sheet_with_a_broken_reference_is_the_callers_error(formula_item: common_pb2.ScoringItem) -> None:
    formula_item.formula.reference_formula = "=SUM(C2:C5"
    with pytest.raises(InvalidArgument, match="sumifs-east"):
        grading.formula_sheet(formula_item)
