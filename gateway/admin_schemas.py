"""JSON shapes of the staff and invite endpoints, and their translation from protobuf.

Same conventions as :mod:`gateway.schemas`: proto field names, enum values as their
proto names (``"ROLE_ADMIN"``, ``"INTERVIEW_STATUS_FINISHED"``), unset messages as null.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from gateway.schemas import (
    Question,
    QuestionKind,
    Result,
    ReviewedScore,
    Session,
    SkillEstimate,
    StaffSession,
    reviewed_score_from_proto,
    timestamp_or_none,
)
from xlinterview.v1 import admin_pb2, common_pb2

Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# 32 random bytes in URL-safe base64; anything much longer is not a token.
InviteToken = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RoleName(StrEnum):
    """A staff role (``xlinterview.v1.Role``)."""

    ADMIN = "ROLE_ADMIN"
    INTERVIEWER = "ROLE_INTERVIEWER"
    ANALYST = "ROLE_ANALYST"


class InterviewStatus(StrEnum):
    """Where an interview is (``xlinterview.v1.InterviewStatus``)."""

    UNSPECIFIED = "INTERVIEW_STATUS_UNSPECIFIED"
    INVITED = "INTERVIEW_STATUS_INVITED"
    IN_PROGRESS = "INTERVIEW_STATUS_IN_PROGRESS"
    FINISHED = "INTERVIEW_STATUS_FINISHED"
    CANCELLED = "INTERVIEW_STATUS_CANCELLED"
    EXPIRED = "INTERVIEW_STATUS_EXPIRED"


def role_name(role: int) -> RoleName:
    """The JSON name of a proto role (``ROLE_ANALYST`` for anything unknown: least power)."""
    try:
        return RoleName(admin_pb2.Role.Name(role))  # type: ignore[arg-type]
    except ValueError:
        return RoleName.ANALYST


def role_value(name: RoleName) -> admin_pb2.Role:
    """The proto value of a JSON role name."""
    return admin_pb2.Role.Value(name.value)


# ---------------------------------------------------------------- auth and users


class LoginBody(BaseModel):
    """A staff sign-in."""

    email: Email = Field(examples=["admin@xlinterview.local"])
    password: Password


class RefreshBody(BaseModel):
    """Trades a refresh token for a new pair."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class User(BaseModel):
    """A staff account."""

    user_id: str
    email: str
    display_name: str
    role: RoleName
    disabled: bool
    created_at: datetime | None


class TokenPair(BaseModel):
    """Tokens of a signed-in staff member; send ``access_token`` as ``Authorization: Bearer``."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    user: User


class CreateUserBody(BaseModel):
    """A new staff account."""

    email: Email
    password: Annotated[str, StringConstraints(min_length=12, max_length=1024)]
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    role: RoleName


def user_from_proto(u: admin_pb2.User) -> User:
    """Translates a ``User`` message."""
    return User(
        user_id=u.user_id,
        email=u.email,
        display_name=u.display_name,
        role=role_name(u.role),
        disabled=u.disabled,
        created_at=timestamp_or_none(u, "created_at"),
    )


# ---------------------------------------------------------------- API keys


class CreateApiKeyBody(BaseModel):
    """A new API key for an internal caller."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        examples=["ATS sync"]
    )
    role: RoleName


class ApiKey(BaseModel):
    """An API key, without its secret."""

    key_id: str
    name: str
    role: RoleName
    owner_user_id: str
    revoked: bool
    created_at: datetime | None
    rotated_at: datetime | None
    revoked_at: datetime | None


class IssuedApiKey(BaseModel):
    """A key with its secret, shown only this once; send it as ``X-API-Key``."""

    key: ApiKey
    secret: str


def api_key_from_proto(k: admin_pb2.ApiKey) -> ApiKey:
    """Translates an ``ApiKey`` message."""
    return ApiKey(
        key_id=k.key_id,
        name=k.name,
        role=role_name(k.role),
        owner_user_id=k.owner_user_id,
        revoked=k.revoked,
        created_at=timestamp_or_none(k, "created_at"),
        rotated_at=timestamp_or_none(k, "rotated_at"),
        revoked_at=timestamp_or_none(k, "revoked_at"),
    )


# ---------------------------------------------------------------- interviews and invites


class CreateInterviewBody(BaseModel):
    """An interview for one candidate."""

    candidate_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        examples=["Ada Lovelace"]
    )
    candidate_email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)] = ""
    invite_ttl_hours: int | None = Field(default=None, ge=1, le=2160, description="Defaults to 7 days.")
    extra_time_percent: int = Field(
        default=0,
        ge=0,
        # A sanity bound only: the orchestrator's XLI_MAX_EXTRA_TIME_PERCENT is the real
        # limit, and a value over it comes back as 400.
        le=1000,
        description="Accommodation: extra time as a percentage of the standard limit (50 = 1.5x).",
        examples=[25],
    )


class Interview(BaseModel):
    """An interview as staff see it."""

    interview_id: str
    candidate_name: str
    candidate_email: str
    owner_user_id: str
    status: InterviewStatus
    session_id: str | None = Field(description="null until the candidate uses the invite.")
    created_at: datetime | None
    invite_expires_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    overall_score: float = Field(description="Mean score of the scored answers, 0 to 1.")
    answered: int
    answers_needing_review: int = Field(
        default=0, description="Scored answers the scorer flagged for a human check (see the report)."
    )
    extra_time_percent: int = Field(description="Accommodation: extra time, percent of the standard limit.")
    time_limit_seconds: int = Field(description="The candidate's time for the interview, extra time included.")


class InvitedInterview(BaseModel):
    """An interview with its invite link, shown only this once."""

    interview: Interview
    invite_url: str = Field(description="Send this to the candidate; it works once.")


class InviteBody(BaseModel):
    """The token from an invite link (the part after ``#invite=``)."""

    invite_token: InviteToken


class InvitePreview(BaseModel):
    """What an invite leads to, shown on the landing page before it is used."""

    candidate_name: str
    invite_expires_at: datetime | None
    time_limit_seconds: int = Field(description="How long the interview may take once started, extra time included.")


class CandidateStart(BaseModel):
    """A started interview and the candidate's token for it."""

    access_token: str = Field(description="Send as Authorization: Bearer on the /sessions endpoints.")
    token_type: str = "bearer"
    expires_in: int
    interview_id: str
    session: Session
    question: Question | None


def interview_from_proto(i: admin_pb2.Interview) -> Interview:
    """Translates an ``Interview`` message."""
    try:
        status = InterviewStatus(admin_pb2.InterviewStatus.Name(i.status))
    except ValueError:
        status = InterviewStatus.UNSPECIFIED
    return Interview(
        interview_id=i.interview_id,
        candidate_name=i.candidate_name,
        candidate_email=i.candidate_email,
        owner_user_id=i.owner_user_id,
        status=status,
        session_id=i.session_id or None,
        created_at=timestamp_or_none(i, "created_at"),
        invite_expires_at=timestamp_or_none(i, "invite_expires_at"),
        started_at=timestamp_or_none(i, "started_at"),
        finished_at=timestamp_or_none(i, "finished_at"),
        overall_score=i.overall_score,
        answered=i.answered,
        answers_needing_review=i.answers_needing_review,
        extra_time_percent=i.extra_time_percent,
        time_limit_seconds=i.time_limit_seconds,
    )


# ---------------------------------------------------------------- bank and reports


class BankItem(BaseModel):
    """The current version of a question, without its solution."""

    item_id: str
    version: int
    kind: str
    skill_area: str
    prompt: str


class SkillScore(BaseModel):
    """How the candidate did in one skill area."""

    skill_area: str
    mean_score: float
    answered: int


class AbilitySummary(BaseModel):
    """An ability estimate in words a hiring manager reads without knowing IRT.

    The ability scale is a normal distribution over the reference population, so an
    estimate maps to the share of that population it is above.
    """

    percentile: float = Field(description="Share of the reference population below this ability, 0 to 100.")
    percentile_low: float = Field(description="The same for the 95% interval's lower end.")
    percentile_high: float = Field(description="The same for the 95% interval's upper end.")
    level: str = Field(description='E.g. "above average": where the estimate falls.')
    precision: str = Field(description='"precise", "fair" or "rough": how wide the interval is.')
    summary: str = Field(description="One sentence for the report.")


class SkillAbility(SkillEstimate):
    """Ability on one skill area, with its 95% interval and where it falls, in words."""

    ci_low: float = Field(description="95% interval, lower end: ability - 1.96 standard errors.")
    ci_high: float = Field(description="95% interval, upper end.")
    percentile: float = Field(description="Share of the reference population below this ability, 0 to 100.")
    level: str = Field(description='E.g. "below average".')


class Report(BaseModel):
    """Everything staff need to judge an interview.

    ``result`` (the adaptive engine's ability estimate with its 95% interval) and its
    plain-words reading ``ability`` arrive when the interview is finished; before
    that ``overall_score`` and the per-skill means are the summary.
    """

    interview: Interview
    session: StaffSession | None = Field(
        description="null until the candidate uses the invite. Each scored turn's score carries needs_review "
        "and review_reason."
    )
    answers_needing_review: int = Field(default=0, description="How many of the session's scores need a human check.")
    skills: list[SkillScore]
    item_skills: dict[str, str] = Field(description="The skill area of each item answered, by item_id.")
    result: Result | None = Field(default=None, description="The ability estimate; null until the interview is finished.")
    ability: AbilitySummary | None = Field(default=None, description="result in plain words; null with it.")
    skill_abilities: list[SkillAbility] = Field(
        default_factory=list, description="Per-skill ability estimates with 95% intervals; empty until finished."
    )


# ---------------------------------------------------------------- reviews


class ReviewTask(BaseModel):
    """An answer for a reviewer to grade, with what they need to judge it."""

    answer_id: str
    interview_id: str = Field(description="Empty for a session started directly over gRPC.")
    session_id: str
    candidate_name: str
    item_id: str
    item_version: int
    kind: QuestionKind
    skill_area: str
    prompt: str = Field(description="The question as the candidate saw it (a follow-up's own question).")
    answer: str = Field(
        description="The answer as the scorer graded it: a follow-up's answer follows the answer it follows up; "
        "for multiple choice, the chosen option's index."
    )
    references: list[str] = Field(
        description="What a right answer looks like: reference answers, the reference formula, the correct option "
        "or the expected number."
    )
    model_score: ReviewedScore | None = Field(description="The score the reviewer checks: the newest that no reviewer gave.")
    review: ReviewedScore | None = Field(description="The newest reviewer's grade; null until reviewed.")
    reviewer_user_id: str = Field(description="Who gave that grade; empty until reviewed.")
    submitted_at: datetime | None
    reviewed_at: datetime | None
    follow_up: bool


class ReviewQueue(BaseModel):
    """The answers waiting for a human check, least confident first."""

    tasks: list[ReviewTask]
    pending: int = Field(description="All answers waiting for review that the caller may see, tasks included.")


class ReviewBody(BaseModel):
    """A reviewer's grade of one answer."""

    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="0 (wrong) to 1 (fully right).")
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = Field(
        default="",
        description="Why, in the reviewer's words; the grade's feedback, which the candidate's own views show.",
    )


def review_task_from_proto(t: admin_pb2.ReviewTask) -> ReviewTask:
    """Translates a ``ReviewTask`` message."""
    try:
        kind = QuestionKind(common_pb2.QuestionKind.Name(t.kind))
    except ValueError:  # a kind this gateway's contract does not know yet
        kind = QuestionKind.UNSPECIFIED
    return ReviewTask(
        answer_id=t.answer_id,
        interview_id=t.interview_id,
        session_id=t.session_id,
        candidate_name=t.candidate_name,
        item_id=t.item_id,
        item_version=t.item_version,
        kind=kind,
        skill_area=t.skill_area,
        prompt=t.prompt,
        answer=t.answer,
        references=list(t.references),
        model_score=reviewed_score_from_proto(t.model_score) if t.HasField("model_score") else None,
        review=reviewed_score_from_proto(t.review) if t.HasField("review") else None,
        reviewer_user_id=t.reviewer_user_id,
        submitted_at=timestamp_or_none(t, "submitted_at"),
        reviewed_at=timestamp_or_none(t, "reviewed_at"),
        follow_up=t.follow_up,
    )
