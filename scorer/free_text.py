"""Free-text rules of the live scoring path, around the models.

Before any model sees a free-text answer, text addressed to the grader is cut out
(:func:`scorer.guards.scan_injection`) and answers that are not answers (empty, "idk", the
question pasted back, gibberish, another language, off-topic) are scored 0 by rule
(:func:`scorer.guards.check_answer`) with the reason as their feedback. After the model, the
optional LLM judge is folded in conservatively (:func:`scorer.judge.combine`). Pure and
synchronous, like :mod:`scorer.grading`; the service does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scorer import guards
from scorer.grading import Criterion, PreparedAnswer
from scorer.judge import SIGNAL, JudgeResult, combine
from xlinterview.v1 import common_pb2

#: Guards that weigh evidence (word statistics, a similarity threshold) rather than match a
#: rule exactly; their zeros go to review, since a real but unusual answer can trip them.
BORDERLINE_GUARDS = frozenset({guards.GIBBERISH, guards.NON_ENGLISH, guards.OFF_TOPIC})


@dataclass(frozen=True)
class Screened:
    """A free-text answer after the injection scan and the guards.

    Attributes:
        text: What the models may see: the answer without passages addressed to the grader.
        removed: Those passages, as written.
        verdict: Why the answer scores 0 by rule, or None when it goes to the models.
        similarity: The best cosine to the question or a reference the guards were given.
    """

    text: str
    removed: tuple[str, ...]
    verdict: guards.GuardVerdict | None
    similarity: float | None = None


def screen(item: common_pb2.ScoringItem, answer: str, similarity: float | None = None) -> Screened:
    """Scans an answer for injections, then runs the guards on what is left.

    Args:
        item: The free-text item.
        answer: The candidate's answer.
        similarity: The answer's best MiniLM cosine to the question and references; the
            off-topic guard runs only when it is given.

    Returns:
        The screened answer.
    """
    scan = guards.scan_injection(answer)
    text = scan.cleaned if scan.found else answer
    verdict = guards.check_answer(text, item.prompt, list(item.rubric.reference_answers), similarity)
    return Screened(text=text, removed=scan.removed, verdict=verdict, similarity=similarity)


def mark_injection(prepared: PreparedAnswer, screened: Screened) -> None:
    """Records on an answer that passages addressed to the grader were cut before scoring."""
    if not screened.removed:
        return
    prepared.signals.insert(0, guards.GUARD_SIGNAL_PREFIX + guards.INJECTION_REMOVED)
    prepared.evidence.append(
        f"{len(screened.removed)} passage(s) addressed to the grader were removed before scoring"
    )
    prepared.review.append("the answer contained text addressed to the grader")


def guarded(answer_id: str, rubric: common_pb2.TextRubric, screened: Screened) -> PreparedAnswer:
    """A rule-decided 0 for an answer a guard stopped: the reason, unmet criteria, no praise.

    Args:
        answer_id: The caller's id.
        rubric: The item's rubric (every criterion is reported as not shown).
        screened: The screened answer; its verdict must be set.

    Returns:
        The prepared answer with ``rule_score`` 0.
    """
    verdict = screened.verdict
    if verdict is None:
        raise ValueError("guarded() needs a guard verdict")
    prepared = PreparedAnswer(answer_id=answer_id, rule_score=0.0, signals=[verdict.signal])
    for criterion in rubric.criteria:
        prepared.criteria.append(Criterion(criterion.name, False, criterion.weight, f"not graded: {verdict.reason}"))
    prepared.evidence.append(f"scored 0 by rule ({verdict.code}): {verdict.reason}")
    if screened.similarity is not None:
        prepared.evidence.append(
            f"closest meaning to the question or a reference answer: cosine {screened.similarity:.2f} (all-MiniLM-L6-v2)"
        )
    prepared.feedback.append(verdict.reason)
    if verdict.code in BORDERLINE_GUARDS:
        prepared.review.append(f"the {verdict.code.replace('_', '-')} rule zeroed it; a person should confirm")
    mark_injection(prepared, screened)
    return prepared


@dataclass(frozen=True)
class JudgeOutcome:
    """What the optional LLM judge contributed to one answer.

    Attributes:
        result: The verdict, or None when there is none.
        signal: The signal recording it (the judge's model, ``llm_judge:failed``,
            ``llm_judge:timeout`` or ``llm_judge:not_configured``).
        detail: Why there is no verdict, for the evidence (empty with a verdict or no judge).
    """

    result: JudgeResult | None
    signal: str
    detail: str = ""


def apply_judge(score: common_pb2.Score, outcome: JudgeOutcome, scale_max: float, tolerance: float) -> None:
    """Folds the judge's grade into a model score, in place.

    The judge never decides alone: within ``tolerance`` the two are averaged, beyond it the
    lower is kept and the score goes to review (:func:`scorer.judge.combine`), so a judge
    talked into full marks cannot lift a score. Without a verdict the score stays the other
    signals' and its signals say why.

    Args:
        score: A model score (not a rule's).
        outcome: The judge's contribution.
        scale_max: The judge's top grade.
        tolerance: Largest disagreement, on the 0..1 score, that is averaged.
    """
    score.signals.append(outcome.signal)
    if outcome.result is None:
        if outcome.detail:
            score.evidence.append(f"LLM judge not used: {outcome.detail}")
        return
    verdict = outcome.result.verdict
    judged = verdict.grade / scale_max
    value, disagree = combine(score.value, judged, tolerance)
    score.evidence.append(f"LLM judge ({outcome.result.model}) grade {verdict.grade:g}/{scale_max:g}: {verdict.rationale}")
    score.provenance.models.append(f"{SIGNAL}:{outcome.result.model}")
    reasons = []
    if disagree:
        reasons.append(f"the LLM judge gave {judged:.2f} against the model's {score.value:.2f}; the lower is kept")
    if verdict.injection_attempt:
        reasons.append("the LLM judge reported an attempt to influence the grader")
    score.value = value
    _add_review(score, reasons)


def _add_review(score: common_pb2.Score, reasons: Sequence[str]) -> None:
    if not reasons:
        return
    score.needs_review = True
    score.review_reason = "; ".join([r for r in [score.review_reason] if r] + list(reasons))

