"""Interview reports for staff: ``/api/v1/interviews/{interview_id}/report``."""

from __future__ import annotations

from collections import defaultdict
from statistics import NormalDist

from fastapi import APIRouter

from gateway.admin_schemas import AbilitySummary, Report, SkillAbility, SkillScore, interview_from_proto
from gateway.deps import OrchestratorDep, OwnedInterviewDep
from gateway.problems import problem_responses
from gateway.schemas import Result, Session, staff_session_from_proto

router = APIRouter(prefix="/api/v1/interviews", tags=["reports"], responses=problem_responses(401, 403, 404, 429, 503))


def skill_scores(session: Session, item_skills: dict[str, str]) -> list[SkillScore]:
    """Mean score per skill area over the scored questions, in order of first appearance.

    A follow-up's answer is not a question of its own (it grades the original answer
    and itself together, and its credit shows in the ability estimate), so, as in the
    session's ``overall_score``, it adds no value here.
    """
    values: dict[str, list[float]] = defaultdict(list)
    for turn in session.turns:
        if turn.follow_up:
            continue
        skill = item_skills.get(turn.item_id, "other")
        bucket = values[skill]
        if turn.score is not None:
            bucket.append(turn.score.value)
    return [
        SkillScore(skill_area=skill, mean_score=sum(v) / len(v) if v else 0.0, answered=len(v))
        for skill, v in values.items()
    ]


# The 95% interval the orchestrator reports is ability -/+ 1.96 standard errors; the
# per-skill intervals are built the same way so they read alike.
Z_95 = 1.959963984540054
_STANDARD_NORMAL = NormalDist()

# Percentile bands and their words, upper bound exclusive. Bands rather than z-score
# cut-offs because the report states percentiles, so the words must agree with them.
_LEVELS = ((10.0, "well below average"), (35.0, "below average"), (65.0, "about average"), (90.0, "above average"))
# Standard errors up to these are "precise" / "fair"; the first is the adaptive
# engine's default stopping target (XLI_CAT_SE_TARGET).
_PRECISE_SE, _FAIR_SE = 0.3, 0.5


def percentile(ability: float) -> float:
    """Share (0-100) of the reference population below ``ability`` on the IRT scale."""
    return 100.0 * _STANDARD_NORMAL.cdf(ability)


def level(pct: float) -> str:
    """Where a percentile falls, in words."""
    return next((words for upper, words in _LEVELS if pct < upper), "well above average")


def _share(pct: float) -> str:
    # Rounding would print "0%" or "100%", which no estimate can honestly claim.
    return "under 1%" if pct < 1 else "over 99%" if pct > 99 else f"{pct:.0f}%"


def ability_summary(result: Result) -> AbilitySummary:
    """Reads an ability estimate in plain words.

    Args:
        result: The finished interview's estimate.

    Returns:
        Percentiles of the estimate and its 95% interval, and a sentence for the report.
    """
    pct, low, high = percentile(result.ability), percentile(result.ci_low), percentile(result.ci_high)
    words = level(pct)
    precision = "precise" if result.standard_error <= _PRECISE_SE else "fair" if result.standard_error <= _FAIR_SE else "rough"
    if pct < 1:
        standing = "weaker than over 99% of the reference group"
    elif pct > 99:
        standing = "stronger than over 99% of the reference group"
    else:
        standing = f"stronger than about {pct:.0f}% of the reference group"
    summary = f"{words.capitalize()}: {standing} (95% confidence: between {_share(low)} and {_share(high)})."
    if precision == "rough":
        answers = f"{result.answers_scored} scored answer" + ("" if result.answers_scored == 1 else "s")
        summary += f" Based on only {answers}, so the estimate is rough."
    return AbilitySummary(
        percentile=pct, percentile_low=low, percentile_high=high, level=words, precision=precision, summary=summary
    )


def skill_abilities(result: Result) -> list[SkillAbility]:
    """Each skill area's ability with its 95% interval, in the orchestrator's order."""
    return [
        SkillAbility(
            skill_area=k.skill_area,
            ability=k.ability,
            standard_error=k.standard_error,
            ci_low=k.ability - Z_95 * k.standard_error,
            ci_high=k.ability + Z_95 * k.standard_error,
            answers=k.answers,
            percentile=percentile(k.ability),
            level=level(percentile(k.ability)),
        )
        for k in result.skills
    ]


@router.get("/{interview_id}/report", response_model=Report, summary="Interview report")
async def get_report(interview: OwnedInterviewDep, orchestrator: OrchestratorDep) -> Report:
    """The interview, every answer with its score, evidence and feedback, and per-skill means.

    Each score says whether it needs a human check (``needs_review``) and why
    (``review_reason``); ``answers_needing_review`` counts them.

    Once the interview is finished, also the ability estimate with its 95% confidence
    interval (``result``), the same in plain words (``ability``) and per skill
    (``skill_abilities``).
    """
    if not interview.session_id:
        return Report(interview=interview_from_proto(interview), session=None, skills=[], item_skills={})
    stored = await orchestrator.get_session(interview.session_id)
    session = staff_session_from_proto(stored)
    # Each turn names its item version's skill area, so a report needs no look at the bank.
    item_skills = {t.item_id: t.skill_area for t in stored.turns}
    result = session.result
    return Report(
        interview=interview_from_proto(interview),
        session=session,
        answers_needing_review=sum(1 for t in session.turns if t.score is not None and t.score.needs_review),
        skills=skill_scores(session, item_skills),
        item_skills=item_skills,
        result=result,
        ability=ability_summary(result) if result else None,
        skill_abilities=skill_abilities(result) if result else [],
    )
