"""JSON shapes of the staff and invite endpoints, and their translation from protobuf.

Same conventions as :mod:`gateway.schemas`: proto field names, enum values as their
proto names (``"ROLE_ADMIN"``, ``"INTERVIEW_STATUS_FINISHED"``), unset messages as null.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from gateway.schemas import Question, Session, timestamp_or_none
from xlinterview.v1 import admin_pb2

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


class Report(BaseModel):
    """Everything staff need to judge an interview.

    The ability estimate with its confidence interval arrives with the adaptive
    engine; until then ``overall_score`` and the per-skill means are the summary.
    """

    interview: Interview
    session: Session | None = Field(description="null until the candidate uses the invite.")
    skills: list[SkillScore]
    item_skills: dict[str, str] = Field(description="The skill area of each item answered, by item_id.")
