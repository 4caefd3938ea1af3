"""Interview reports for staff: ``/api/v1/interviews/{interview_id}/report``."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter

from gateway.admin_schemas import Report, SkillScore, interview_from_proto
from gateway.deps import AdminClientDep, OrchestratorDep, OwnedInterviewDep
from gateway.problems import problem_responses
from gateway.schemas import Session, session_from_proto
from xlinterview.v1 import admin_pb2

router = APIRouter(prefix="/api/v1/interviews", tags=["reports"], responses=problem_responses(401, 403, 404, 429, 503))


def skill_scores(session: Session, item_skills: dict[str, str]) -> list[SkillScore]:
    """Mean score per skill area over the scored turns, in order of first appearance."""
    values: dict[str, list[float]] = defaultdict(list)
    for turn in session.turns:
        skill = item_skills.get(turn.item_id, "other")
        bucket = values[skill]
        if turn.score is not None:
            bucket.append(turn.score.value)
    return [
        SkillScore(skill_area=skill, mean_score=sum(v) / len(v) if v else 0.0, answered=len(v))
        for skill, v in values.items()
    ]


@router.get("/{interview_id}/report", response_model=Report, summary="Interview report")
async def get_report(interview: OwnedInterviewDep, admin: AdminClientDep, orchestrator: OrchestratorDep) -> Report:
    """The interview, every answer with its score, evidence and feedback, and per-skill means."""
    if not interview.session_id:
        return Report(interview=interview_from_proto(interview), session=None, skills=[], item_skills={})
    session = session_from_proto(await orchestrator.get_session(interview.session_id))
    bank = await admin.interviews("ListBankItems", admin_pb2.ListBankItemsRequest())
    answered = {t.item_id for t in session.turns}
    item_skills = {i.item_id: i.skill_area for i in bank.items if i.item_id in answered}
    return Report(
        interview=interview_from_proto(interview),
        session=session,
        skills=skill_scores(session, item_skills),
        item_skills=item_skills,
    )
