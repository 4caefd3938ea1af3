"""Turns an item and its answers into core_rs features, then model scores into Score messages.

Pure and synchronous: no I/O, so it is tested without a server. The model call sits
between :func:`prepare` and :func:`finish` in the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

import core_rs
from common import CODE_VERSION
from common.errors import InvalidArgument
from common.numeric import PERCENT_UNIT, NotANumber, format_decimal, parse_number
from xlinterview.v1 import common_pb2, scorer_pb2

SIGNAL_FORMULA = "core_rs.formula_eval"
SIGNAL_TEXT = "core_rs.text_features"
SIGNAL_CHOICE = "rule.choice_exact"
SIGNAL_NUMERIC = "rule.numeric_tolerance"
SIGNAL_CONFIDENCE = "confidence.margin_uncalibrated"
SIGNAL_CALIBRATED = "confidence.isotonic_oof"
SIGNAL_SIMILARITY = "triton.sentence_encoder"
#: ``origin`` parameter (config.pbtxt) of a model whose weights were learned from graded data;
#: any other origin (e.g. ``hand_set``) is labelled a heuristic, never a model.
ORIGIN_TRAINED = "trained"
MAX_VALUE_CHARS = 120
#: Kinds a deterministic rule grades on its own: no model, no cache.
RULE_KINDS = frozenset({common_pb2.QUESTION_KIND_MULTIPLE_CHOICE, common_pb2.QUESTION_KIND_NUMERIC})


@dataclass
class PreparedAnswer:
    """An answer after feature extraction, waiting for its model score (if it needs one).

    Attributes:
        answer_id: The caller's id, echoed back.
        features: The model's input row; ``None`` when a rule decides the score alone.
        rule_score: The score when a rule decides it.
        criteria: Per-criterion results.
        evidence: Facts behind the score.
        feedback: Sentences for the candidate.
        signals: Signals that produced the score.
        review: Why a human should check the score (empty: no reason found yet).
    """

    answer_id: str
    features: np.ndarray | None = None
    rule_score: float | None = None
    criteria: list[common_pb2.CriterionResult] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)


def sheet_rows(sheet: common_pb2.SampleSheet) -> list[list[core_rs.Cell]]:
    """Converts a protobuf sample sheet into core_rs's row-major cell lists."""
    rows: list[list[core_rs.Cell]] = []
    for row in sheet.rows:
        cells: list[core_rs.Cell] = []
        for cell in row.cells:
            kind = cell.WhichOneof("value")
            cells.append(None if kind is None else getattr(cell, kind))
        rows.append(cells)
    return rows


def format_value(value: Sequence[Sequence[core_rs.Cell]]) -> str:
    """Renders a formula result the way Excel writes array constants: ``{1,2;3,4}``."""

    def one(cell: core_rs.Cell) -> str:
        if cell is None:
            return "(empty)"
        if isinstance(cell, bool):
            return "TRUE" if cell else "FALSE"
        if isinstance(cell, float):
            return f"{cell:.15g}"
        return str(cell)

    if len(value) == 1 and len(value[0]) == 1:
        text = one(value[0][0])
    else:
        text = "{" + ";".join(",".join(one(c) for c in row) for row in value) + "}"
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


_SPEC_OF_KIND = {
    common_pb2.QUESTION_KIND_FORMULA: "formula",
    common_pb2.QUESTION_KIND_FREE_TEXT: "rubric",
    common_pb2.QUESTION_KIND_MULTIPLE_CHOICE: "choice",
    common_pb2.QUESTION_KIND_NUMERIC: "numeric",
}


def validate(item: common_pb2.ScoringItem, answers: Sequence[str], max_chars: int) -> None:
    """Rejects items and answers the scorer cannot grade.

    Raises:
        InvalidArgument: With a message naming what is wrong.
    """
    if not item.item_id:
        raise InvalidArgument("item.item_id is required")
    spec = item.WhichOneof("spec")
    expected = _SPEC_OF_KIND.get(item.kind)
    if expected is None:
        raise InvalidArgument(f"item {item.item_id}: kind must be set")
    if spec != expected:
        raise InvalidArgument(f"item {item.item_id}: a {common_pb2.QuestionKind.Name(item.kind)} item needs spec.{expected}")
    if expected == "formula" and not item.formula.reference_formula.strip():
        raise InvalidArgument(f"item {item.item_id}: formula.reference_formula is empty")
    if expected == "choice" and not 0 <= item.choice.correct_index < len(item.choice.options):
        raise InvalidArgument(f"item {item.item_id}: choice.correct_index is out of range")
    if expected == "numeric":
        _validate_numeric(item.item_id, item.numeric)
    for index, text in enumerate(answers):
        # An empty explanation is a real (zero-scoring) answer that the guards handle; an empty
        # formula or option index is a broken request.
        if not text.strip() and item.kind != common_pb2.QUESTION_KIND_FREE_TEXT:
            raise InvalidArgument(f"answer {index}: text is empty")
        if len(text) > max_chars:
            raise InvalidArgument(f"answer {index}: text has {len(text)} characters; the limit is {max_chars}")


def formula_sheet(item: common_pb2.ScoringItem) -> core_rs.PreparedSheet:
    """A formula item's sample sheet and reference, prepared once for grading many answers.

    Preparing (loading the sheet, making its hidden variants, evaluating the reference on
    each) costs about as much as grading ten answers, so callers that see the item again
    keep the result.

    Raises:
        InvalidArgument: The item's own reference formula does not parse, or its sheet is unusable.
    """
    try:
        return core_rs.PreparedSheet(sheet_rows(item.formula.sheet), item.formula.reference_formula)
    except core_rs.CoreError as exc:
        raise InvalidArgument(f"item {item.item_id}: {exc}") from None


def prepare(
    item: common_pb2.ScoringItem,
    answers: Sequence[scorer_pb2.AnswerInput],
    formula_grades: Sequence[core_rs.FormulaGrade] | None = None,
) -> list[PreparedAnswer]:
    """Extracts features (formula grading or text features) for every answer of one item.

    Args:
        item: The item.
        answers: Its answers.
        formula_grades: For a formula item, the answers' grades from its :func:`formula_sheet`
            when the caller has them already (the service grades off the event loop); None
            grades them here.

    Raises:
        InvalidArgument: The item's own reference formula does not parse.
    """
    texts = [answer.text for answer in answers]
    ids = [answer.answer_id for answer in answers]
    if item.kind == common_pb2.QUESTION_KIND_FORMULA:
        grades = formula_sheet(item).grade_many(texts) if formula_grades is None else formula_grades
        return [_prepared_formula(answer_id, grade) for answer_id, grade in zip(ids, grades, strict=True)]
    if item.kind == common_pb2.QUESTION_KIND_FREE_TEXT:
        criteria = [(c.name, list(c.terms), c.weight) for c in item.rubric.criteria]
        features = core_rs.text_features_batch(texts, list(item.rubric.reference_answers), criteria)
        return [
            _prepared_text(answer_id, item.rubric, feats) for answer_id, feats in zip(ids, features, strict=True)
        ]
    if item.kind == common_pb2.QUESTION_KIND_NUMERIC:
        return [_prepared_numeric(answer_id, item.numeric, text) for answer_id, text in zip(ids, texts, strict=True)]
    return [_prepared_choice(answer_id, item.choice, text) for answer_id, text in zip(ids, texts, strict=True)]


def _prepared_formula(answer_id: str, grade: core_rs.FormulaGrade) -> PreparedAnswer:
    prepared = PreparedAnswer(answer_id=answer_id, signals=[SIGNAL_FORMULA])
    prepared.features = np.asarray(grade.features, dtype=np.float32)
    prepared.criteria.append(
        common_pb2.CriterionResult(
            name="valid formula",
            met=grade.parses,
            weight=1.0,
            detail="parses" if grade.parses else f"{grade.error} (at character {grade.error_position})",
        )
    )
    if not grade.parses:
        prepared.feedback.append(f"Your formula could not be read: {grade.error}.")
        return prepared
    candidate, expected = format_value(grade.candidate_value), format_value(grade.reference_value)
    prepared.evidence.append(f"your formula returns {candidate} on the sample sheet; expected {expected}")
    if grade.functions_used:
        prepared.evidence.append("functions used: " + ", ".join(grade.functions_used))
    if grade.variants_checked:
        prepared.evidence.append(
            f"matches the expected result on {sum(grade.variant_matches)} of {grade.variants_checked} "
            "hidden variants of the sheet"
        )
    prepared.criteria.append(
        common_pb2.CriterionResult(
            name="correct result", met=grade.values_match, weight=1.0, detail=f"{candidate} vs {expected}"
        )
    )
    prepared.criteria.append(
        common_pb2.CriterionResult(
            name="computed from the sheet",
            met=not grade.hardcoded,
            weight=1.0,
            detail="the formula references no cells" if grade.hardcoded else "references cells of the sheet",
        )
    )
    if grade.hardcoded:
        prepared.feedback.append("The result is typed in as a constant; the formula must compute it from the sheet.")
    elif grade.values_match:
        prepared.feedback.append(f"Correct: your formula returns {candidate}.")
    elif grade.sample_match:
        prepared.feedback.append(
            f"Your formula returns {candidate} on this sheet, but not the expected result when the data changes."
        )
    else:
        prepared.feedback.append(f"Your formula returns {candidate}, but the expected result is {expected}.")
        missing = sorted(set(grade.reference_functions) - set(grade.functions_used))
        if missing:
            prepared.feedback.append("A solution could use " + ", ".join(missing) + ".")
    return prepared


def _prepared_text(answer_id: str, rubric: common_pb2.TextRubric, feats: core_rs.TextFeatures) -> PreparedAnswer:
    prepared = PreparedAnswer(answer_id=answer_id, signals=[SIGNAL_TEXT])
    prepared.features = np.asarray(feats.features, dtype=np.float32)
    covered, missed = [], []
    for criterion, hit, terms in zip(rubric.criteria, feats.criteria_hits, feats.matched_terms, strict=True):
        detail = "mentions " + ", ".join(f'"{t}"' for t in terms) if hit else "not mentioned"
        prepared.criteria.append(
            common_pb2.CriterionResult(name=criterion.name, met=hit, weight=criterion.weight, detail=detail)
        )
        (covered if hit else missed).append(criterion.name)
    prepared.evidence.append(
        f"concept coverage {feats.concept_coverage:.0%}, reference word recall {feats.reference_recall:.0%}, "
        f"{feats.token_count} words"
    )
    if covered:
        prepared.feedback.append("You covered: " + ", ".join(covered) + ".")
    if missed:
        prepared.feedback.append("Not covered: " + ", ".join(missed) + ".")
    return prepared


def reference_similarity(answers: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Each answer's highest cosine similarity to any reference answer, clipped to [0, 1].

    Args:
        answers: ``(n, d)`` unit-length answer embeddings.
        references: ``(m, d)`` unit-length reference embeddings, ``m >= 1``.

    Returns:
        ``(n,)`` ``float32`` similarities. Negative cosines (opposed meaning is rare
        for sentence embeddings) count as no similarity.
    """
    return np.clip((answers @ references.T).max(axis=1), 0.0, 1.0).astype(np.float32)


def add_similarity(prepared: PreparedAnswer, similarity: float, signal: str = SIGNAL_SIMILARITY) -> None:
    """Records the similarity signal on a free-text answer, named after the model that computed it."""
    prepared.signals.append(signal)
    prepared.evidence.append(f"meaning matches the closest reference answer at cosine {similarity:.2f} (all-MiniLM-L6-v2)")


def _prepared_choice(answer_id: str, choice: common_pb2.ChoiceSpec, text: str) -> PreparedAnswer:
    try:
        picked = int(text.strip())
    except ValueError:
        raise InvalidArgument(f"answer {answer_id!r}: a multiple-choice answer is an option index, got {text!r}") from None
    if not 0 <= picked < len(choice.options):
        raise InvalidArgument(f"answer {answer_id!r}: option {picked} does not exist")
    correct = picked == choice.correct_index
    prepared = PreparedAnswer(answer_id=answer_id, rule_score=1.0 if correct else 0.0, signals=[SIGNAL_CHOICE])
    prepared.criteria.append(
        common_pb2.CriterionResult(name="correct option", met=correct, weight=1.0, detail=choice.options[picked])
    )
    prepared.evidence.append(f"chose option {picked + 1}: {choice.options[picked]}")
    prepared.feedback.append("Correct." if correct else f"Not quite: the answer is \"{choice.options[choice.correct_index]}\".")
    return prepared


def _validate_numeric(item_id: str, spec: common_pb2.NumericSpec) -> None:
    numbers = {
        "expected": spec.expected,
        "absolute_tolerance": spec.absolute_tolerance,
        "relative_tolerance": spec.relative_tolerance,
    }
    for name, value in numbers.items():
        if not math.isfinite(value):
            raise InvalidArgument(f"item {item_id}: numeric.{name} must be a finite number, got {value}")
    for name in ("absolute_tolerance", "relative_tolerance"):
        if numbers[name] < 0:
            raise InvalidArgument(f"item {item_id}: numeric.{name} must not be negative, got {numbers[name]}")
    if spec.HasField("decimals") and spec.decimals < 0:
        raise InvalidArgument(f"item {item_id}: numeric.decimals must not be negative, got {spec.decimals}")


def _exact(value: float) -> Decimal:
    # The shortest text that reads back as the double, i.e. what the author wrote
    # (2.68, not 2.680000000000000159872115546...), so tolerance edges are decided on it.
    return Decimal(repr(value))


def _prepared_numeric(answer_id: str, spec: common_pb2.NumericSpec, text: str) -> PreparedAnswer:
    try:
        parsed = parse_number(text, spec.unit)
    except NotANumber as exc:
        raise InvalidArgument(f"answer {answer_id!r}: {exc}") from None
    expected = _exact(spec.expected)
    allowed = max(_exact(spec.absolute_tolerance), _exact(spec.relative_tolerance) * abs(expected))
    distance = abs(parsed.value - expected)
    correct = distance <= allowed
    # "12%" reads better than "12 %"; "45 days" needs the space.
    unit = "" if not spec.unit else spec.unit if spec.unit == PERCENT_UNIT else f" {spec.unit}"
    given, wanted = format_decimal(parsed.value) + unit, format_decimal(expected) + unit
    margin = f"within ±{format_decimal(allowed)}{unit}" if allowed else "exactly"
    prepared = PreparedAnswer(answer_id=answer_id, rule_score=1.0 if correct else 0.0, signals=[SIGNAL_NUMERIC])
    prepared.criteria.append(
        common_pb2.CriterionResult(
            name="correct value",
            met=correct,
            weight=1.0,
            detail=f"{given} is {format_decimal(distance)} from {wanted}; accepted {margin}",
        )
    )
    prepared.evidence.append(parsed.understood())
    prepared.evidence.append(f"expected {wanted}, accepted {margin}; yours is off by {format_decimal(distance)}")
    prepared.feedback.append(f"Correct: {given}." if correct else f"Not quite: you gave {given}; the answer is {wanted}.")
    return prepared


def model_label(model_name: str, model_version: str, origin: str) -> str:
    """The signal naming what computed a score: ``model:<name>@<version>`` only for a trained model.

    Args:
        model_name: The model as served.
        model_version: Its version.
        origin: The ``origin`` parameter of its Triton config (``trained``, ``hand_set``, or
            empty when the config does not say).

    Returns:
        ``model:…`` for a trained model, ``heuristic:…`` for anything else, so a hand-set
        formula is never presented as a learned model.
    """
    kind = "model" if origin == ORIGIN_TRAINED else "heuristic"
    return f"{kind}:{model_name}@{model_version}"


def finish(
    item: common_pb2.ScoringItem,
    prepared: PreparedAnswer,
    model_score: float | None,
    model_name: str,
    model_version: str,
    other_models: Sequence[str] = (),
    origin: str = "",
    review_confidence: float = 0.0,
    calibrated: float | None = None,
) -> common_pb2.Score:
    """Builds the Score message; ``model_score`` is required unless a rule decided the score.

    Args:
        item: The item graded.
        prepared: The answer's features and findings.
        model_score: The scoring model's output, or None for a rule-decided answer.
        model_name: The scoring model's name.
        model_version: The version that produced ``model_score``.
        other_models: Further models that fed the score, as ``name:version``.
        origin: The scoring model's ``origin`` (see :func:`model_label`).
        review_confidence: A model score whose confidence is below this needs review.
        calibrated: The model's calibrated confidence, when it has one; otherwise the
            confidence is the score's margin from 0.5 and is labelled uncalibrated.
    """
    provenance = common_pb2.ScoreProvenance(
        rubric_version=f"{item.item_id}@v{item.item_version}",
        code_version=f"xlinterview {CODE_VERSION}",
    )
    signals = list(prepared.signals)
    review = list(prepared.review)
    if prepared.rule_score is not None:
        value, confidence = prepared.rule_score, 1.0
        provenance.backend = "rule"
    else:
        if model_score is None:
            raise ValueError("a model-scored answer needs its model score")
        value = float(min(1.0, max(0.0, model_score)))
        if calibrated is None:
            # A margin from the decision boundary, not a probability; signal and review reason say so.
            confidence, confidence_signal, kind = abs(2.0 * value - 1.0), SIGNAL_CONFIDENCE, "uncalibrated margin"
        else:
            confidence, confidence_signal, kind = float(min(1.0, max(0.0, calibrated))), SIGNAL_CALIBRATED, "calibrated"
        provenance.backend = "triton"
        provenance.model_name = model_name
        provenance.model_version = model_version
        provenance.models.extend([f"{model_name}:{model_version}", *other_models])
        signals += [f"triton.{model_name}", model_label(model_name, model_version, origin), confidence_signal]
        if confidence < review_confidence:
            review.append(f"confidence {confidence:.2f} ({kind}) is below the review threshold {review_confidence:.2f}")
    return common_pb2.Score(
        value=value,
        confidence=confidence,
        feedback=" ".join(prepared.feedback),
        criteria=prepared.criteria,
        evidence=prepared.evidence,
        signals=signals,
        provenance=provenance,
        needs_review=bool(review),
        review_reason="; ".join(review),
    )
