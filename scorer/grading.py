"""Turns an item and its answers into core_rs features, then model scores into Score messages.

Pure and synchronous: no I/O, so it is tested without a server. The model call sits
between :func:`prepare` and :class:`ScoreWriter` in the service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

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


class Criterion(NamedTuple):
    """One criterion's result, as the score's ``CriterionResult`` will carry it.

    A plain tuple until the score is written: building the protobuf message once, in
    place inside the score, is several times cheaper than building it and copying it in.
    """

    name: str
    met: bool
    weight: float
    detail: str


@dataclass(slots=True)
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
    features: Sequence[float] | None = None
    rule_score: float | None = None
    criteria: list[Criterion] = field(default_factory=list)
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


def _format_cell(cell: core_rs.Cell) -> str:
    if cell is None:
        return "(empty)"
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        return f"{cell:.15g}"
    return str(cell)


def format_value(value: Sequence[Sequence[core_rs.Cell]]) -> str:
    """Renders a formula result the way Excel writes array constants: ``{1,2;3,4}``."""
    if len(value) == 1 and len(value[0]) == 1:
        text = _format_cell(value[0][0])
    else:
        text = "{" + ";".join(",".join(map(_format_cell, row)) for row in value) + "}"
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
    # Runs once per formula answer of every bulk stream: each attribute of the grade is read
    # once (core_rs builds a fresh Python object per read) and each list is built whole.
    if not grade.parses:
        error = grade.error
        return PreparedAnswer(
            answer_id,
            grade.features,
            criteria=[Criterion("valid formula", False, 1.0, f"{error} (at character {grade.error_position})")],
            feedback=[f"Your formula could not be read: {error}."],
            signals=[SIGNAL_FORMULA],
        )
    candidate, expected = format_value(grade.candidate_value), format_value(grade.reference_value)
    values_match, hardcoded = grade.values_match, grade.hardcoded
    functions_used, variants_checked = grade.functions_used, grade.variants_checked
    evidence = [f"your formula returns {candidate} on the sample sheet; expected {expected}"]
    if functions_used:
        evidence.append("functions used: " + ", ".join(functions_used))
    if variants_checked:
        evidence.append(
            f"matches the expected result on {sum(grade.variant_matches)} of {variants_checked} "
            "hidden variants of the sheet"
        )
    criteria = [
        _PARSES,
        Criterion("correct result", values_match, 1.0, f"{candidate} vs {expected}"),
        _HARDCODED if hardcoded else _FROM_SHEET,
    ]
    if hardcoded:
        feedback = [_CONSTANT_FEEDBACK]
    elif values_match:
        feedback = [f"Correct: your formula returns {candidate}."]
    elif grade.sample_match:
        feedback = [
            f"Your formula returns {candidate} on this sheet, but not the expected result when the data changes."
        ]
    else:
        feedback = [f"Your formula returns {candidate}, but the expected result is {expected}."]
        missing = sorted(set(grade.reference_functions).difference(functions_used))
        if missing:
            feedback.append("A solution could use " + ", ".join(missing) + ".")
    return PreparedAnswer(answer_id, grade.features, None, criteria, evidence, feedback, [SIGNAL_FORMULA])


# The criteria every parsing formula shares, built once (a Criterion is immutable).
_PARSES = Criterion("valid formula", True, 1.0, "parses")
_HARDCODED = Criterion("computed from the sheet", False, 1.0, "the formula references no cells")
_FROM_SHEET = Criterion("computed from the sheet", True, 1.0, "references cells of the sheet")
_CONSTANT_FEEDBACK = "The result is typed in as a constant; the formula must compute it from the sheet."


def _prepared_text(answer_id: str, rubric: common_pb2.TextRubric, feats: core_rs.TextFeatures) -> PreparedAnswer:
    prepared = PreparedAnswer(answer_id=answer_id, features=feats.features, signals=[SIGNAL_TEXT])
    covered, missed = [], []
    for criterion, hit, terms in zip(rubric.criteria, feats.criteria_hits, feats.matched_terms, strict=True):
        detail = "mentions " + ", ".join(f'"{t}"' for t in terms) if hit else "not mentioned"
        prepared.criteria.append(Criterion(criterion.name, hit, criterion.weight, detail))
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
    prepared.criteria.append(Criterion("correct option", correct, 1.0, choice.options[picked]))
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
        Criterion(
            "correct value", correct, 1.0, f"{given} is {format_decimal(distance)} from {wanted}; accepted {margin}"
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


class ScoreWriter:
    """Writes the scores of answers to one item that one model run (or a rule) scored.

    What all those scores share (provenance and signals) is built once per run, as a template
    copied into each score in one call, and each score is written in place into a message the
    caller owns (e.g. the ``score`` of a response), so a batch of answers is not copied again.

    Args:
        item: The item graded.
        model_name: The scoring model's name ("" when only rules score).
        model_version: The version that produced the model scores.
        other_models: Further models that fed the scores, as ``name:version``.
        origin: The scoring model's ``origin`` (see :func:`model_label`).
        review_confidence: A model score whose confidence is below this needs review.
    """

    __slots__ = ("_rule_provenance", "_model_provenance", "_model_signals", "_review_confidence", "_templates")

    def __init__(
        self,
        item: common_pb2.ScoringItem,
        model_name: str = "",
        model_version: str = "",
        other_models: Sequence[str] = (),
        origin: str = "",
        review_confidence: float = 0.0,
    ) -> None:
        rubric_version, code_version = f"{item.item_id}@v{item.item_version}", f"xlinterview {CODE_VERSION}"
        self._rule_provenance = common_pb2.ScoreProvenance(
            rubric_version=rubric_version, code_version=code_version, backend="rule"
        )
        self._model_provenance = common_pb2.ScoreProvenance(
            rubric_version=rubric_version,
            code_version=code_version,
            backend="triton",
            model_name=model_name,
            model_version=model_version,
            models=[f"{model_name}:{model_version}", *other_models],
        )
        self._model_signals = (f"triton.{model_name}", model_label(model_name, model_version, origin))
        self._review_confidence = review_confidence
        # (the answer's own signals, the confidence signal or None for a rule) -> a Score holding
        # only the provenance and the full signal list; answers of one run share a few such keys.
        self._templates: dict[tuple[tuple[str, ...], str | None], common_pb2.Score] = {}

    def _template(self, signals: Sequence[str], confidence_signal: str | None) -> common_pb2.Score:
        key = (tuple(signals), confidence_signal)
        template = self._templates.get(key)
        if template is None:
            if confidence_signal is None:
                template = common_pb2.Score(signals=key[0], provenance=self._rule_provenance)
            else:
                template = common_pb2.Score(
                    signals=[*key[0], *self._model_signals, confidence_signal], provenance=self._model_provenance
                )
            self._templates[key] = template
        return template

    def write(
        self,
        prepared: PreparedAnswer,
        model_score: float | None,
        calibrated: float | None = None,
        into: common_pb2.Score | None = None,
    ) -> common_pb2.Score:
        """Writes one answer's score; ``model_score`` is required unless a rule decided it.

        Args:
            prepared: The answer's features and findings.
            model_score: The scoring model's output, or None for a rule-decided answer.
            calibrated: The model's calibrated confidence, when it has one; otherwise the
                confidence is the score's margin from 0.5 and is labelled uncalibrated.
            into: A Score to write into (whatever it held is replaced); None writes a new one.

        Returns:
            The score written (``into`` when given).
        """
        review = prepared.review
        score = common_pb2.Score() if into is None else into
        if prepared.rule_score is not None:
            value, confidence = prepared.rule_score, 1.0
            score.CopyFrom(self._template(prepared.signals, None))
        elif model_score is None:
            raise ValueError("a model-scored answer needs its model score")
        else:
            value = float(min(1.0, max(0.0, model_score)))
            if calibrated is None:
                # A margin from the decision boundary, not a probability; signal and review reason say so.
                confidence, confidence_signal, kind = abs(2.0 * value - 1.0), SIGNAL_CONFIDENCE, "uncalibrated margin"
            else:
                confidence, confidence_signal, kind = float(min(1.0, max(0.0, calibrated))), SIGNAL_CALIBRATED, "calibrated"
            score.CopyFrom(self._template(prepared.signals, confidence_signal))
            if confidence < self._review_confidence:
                review = [
                    *review,
                    f"confidence {confidence:.2f} ({kind}) is below the review threshold {self._review_confidence:.2f}",
                ]
        score.value = value
        score.confidence = confidence
        score.feedback = " ".join(prepared.feedback)
        add = score.criteria.add
        for name, met, weight, detail in prepared.criteria:
            add(name=name, met=met, weight=weight, detail=detail)
        score.evidence.extend(prepared.evidence)
        if review:
            score.needs_review = True
            score.review_reason = "; ".join(review)
        return score
