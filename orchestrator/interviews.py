"""The Interviews service: interviews created by staff, entered through one-time invites.

An interview is the staff's record of a candidate: who, who owns it, and its invite.
Using the invite starts the interview's session through the Orchestrator service (in
process), so there is one way sessions start. The invite row is locked while that
happens, so two clicks on one link can never start two sessions.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from typing import Any

import asyncpg
import grpc

from common.errors import FailedPrecondition, InvalidArgument, NotFound
from orchestrator.admin_db import AdminDb, timestamp
from orchestrator.identity import digest, parse_uuid
from xlinterview.v1 import admin_pb2, admin_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 320
MAX_INVITE_TTL_S = 90 * 24 * 3600
MAX_LIST = 500
# An invite token is 32 random bytes, URL-safe base64: 43 characters.
MAX_TOKEN_CHARS = 100

# The interview with its session's progress. The session tables belong to the
# Orchestrator service; only their stable columns are read here.
_INTERVIEW_SELECT = """
SELECT i.interview_id, i.candidate_name, i.candidate_email, i.owner_user_id, i.session_id,
       i.extra_time_percent, i.created_at, i.invite_expires_at, i.invite_used_at, i.cancelled_at,
       s.status AS session_status, s.started_at, s.finished_at,
       COALESCE(p.answered, 0) AS answered, COALESCE(p.mean_score, 0) AS mean_score,
       COALESCE(p.needing_review, 0) AS needing_review
FROM interviews i
LEFT JOIN sessions s ON s.session_id = i.session_id
LEFT JOIN LATERAL (
    -- answered and mean_score count questions: a follow-up's answer
    -- (orchestrator.db.ItemRef.follow_up_of) is not a question of its own, and its
    -- credit shows in the ability estimate; a flagged follow-up still needs review.
    SELECT count(*) FILTER (WHERE NOT a.follow_up) AS answered,
           avg(latest.value) FILTER (WHERE NOT a.follow_up) AS mean_score,
           count(*) FILTER (WHERE latest.needs_review) AS needing_review
    FROM (
        SELECT a.answer_id, COALESCE((fs.items -> a.position) ? 'follow_up_of', false) AS follow_up
        FROM answers a JOIN sessions fs ON fs.session_id = a.session_id
        WHERE a.session_id = i.session_id
    ) a
    LEFT JOIN LATERAL (
        -- The stored Score JSON (orchestrator.db.score_to_json); scores stored before
        -- the scorer had review flags lack the key and count as not flagged.
        SELECT value, COALESCE((score->>'needs_review')::boolean, false) AS needs_review
        FROM scores WHERE answer_id = a.answer_id ORDER BY score_id DESC LIMIT 1
    ) latest ON true
) p ON i.session_id IS NOT NULL
"""


def _status(row: Any, now: dt.datetime) -> int:
    if row["cancelled_at"] is not None:
        return admin_pb2.INTERVIEW_STATUS_CANCELLED
    if row["session_status"] == "finished":
        return admin_pb2.INTERVIEW_STATUS_FINISHED
    if row["session_id"] is not None:
        return admin_pb2.INTERVIEW_STATUS_IN_PROGRESS
    if row["invite_expires_at"] <= now:
        return admin_pb2.INTERVIEW_STATUS_EXPIRED
    return admin_pb2.INTERVIEW_STATUS_INVITED


def _interview_message(row: Any, time_limit_s: float) -> admin_pb2.Interview:
    extra = int(row["extra_time_percent"])
    return admin_pb2.Interview(
        interview_id=str(row["interview_id"]),
        candidate_name=row["candidate_name"],
        candidate_email=row["candidate_email"],
        owner_user_id=str(row["owner_user_id"]),
        status=_status(row, dt.datetime.now(dt.UTC)),  # type: ignore[arg-type]
        session_id=str(row["session_id"]) if row["session_id"] is not None else "",
        created_at=timestamp(row["created_at"]),
        invite_expires_at=timestamp(row["invite_expires_at"]),
        started_at=timestamp(row["started_at"]),
        finished_at=timestamp(row["finished_at"]),
        overall_score=float(row["mean_score"]),
        answered=int(row["answered"]),
        answers_needing_review=int(row["needing_review"]),
        extra_time_percent=extra,
        # The same rule the session's deadline is set by (orchestrator.db.create_session).
        time_limit_seconds=round(time_limit_s * (1 + extra / 100)),
    )


def _check_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidArgument("candidate_name is required")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"candidate_name is longer than {MAX_NAME_CHARS} characters")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidArgument("candidate_name must not contain control characters")
    return name


def _check_token(raw: str) -> bytes:
    if not raw or len(raw) > MAX_TOKEN_CHARS:
        # Same message as an unknown token: the shape of a guess says nothing.
        raise NotFound("this invite link is not valid")
    return digest(raw)


def _refuse_unusable(row: Any) -> None:
    """Raises when an invite cannot be used; says why in words for the candidate."""
    if row["cancelled_at"] is not None:
        raise FailedPrecondition("this interview was cancelled")
    if row["invite_used_at"] is not None:
        raise FailedPrecondition("this invite link has already been used")
    if row["invite_expires_at"] <= dt.datetime.now(dt.UTC):
        raise FailedPrecondition("this invite link has expired; ask for a new one")


class InterviewsService(admin_pb2_grpc.InterviewsServicer):
    """Implements ``xlinterview.v1.Interviews``.

    Args:
        db: The staff pool.
        sessions: The Orchestrator servicer, called in process to start and finish
            sessions.
        invite_ttl_s: Default lifetime of an invite.
        time_limit_s: Standard time of one interview, shown with each interview.
        max_extra_time_percent: Largest accommodation an interview may grant; the
            Orchestrator service enforces the same bound when the session starts.
    """

    def __init__(
        self,
        db: AdminDb,
        sessions: orchestrator_pb2_grpc.OrchestratorServicer,
        invite_ttl_s: int,
        time_limit_s: float = 3600.0,
        max_extra_time_percent: int = 200,
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._invite_ttl_s = invite_ttl_s
        self._time_limit_s = time_limit_s
        self._max_extra_time_percent = max_extra_time_percent

    def _interview(self, row: Any) -> admin_pb2.Interview:
        return _interview_message(row, self._time_limit_s)

    def _extra_time(self, requested: int) -> int:
        # Checked here, not only when the invite is used: a bad value must fail while
        # the interviewer is still at the form, not in front of the candidate.
        if not 0 <= requested <= self._max_extra_time_percent:
            raise InvalidArgument(f"extra_time_percent must be between 0 and {self._max_extra_time_percent}")
        return requested

    def _ttl(self, requested: int) -> dt.timedelta:
        if requested < 0 or requested > MAX_INVITE_TTL_S:
            raise InvalidArgument(f"invite_ttl_seconds must be between 0 and {MAX_INVITE_TTL_S}")
        return dt.timedelta(seconds=requested or self._invite_ttl_s)

    async def _fetch(self, conn: asyncpg.Connection, interview_id: uuid.UUID) -> admin_pb2.Interview:
        row = await conn.fetchrow(_INTERVIEW_SELECT + " WHERE i.interview_id = $1", interview_id)
        if row is None:
            raise NotFound(f"no interview {interview_id}")
        return self._interview(row)

    async def CreateInterview(
        self, request: admin_pb2.CreateInterviewRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.InvitedInterview:
        name = _check_name(request.candidate_name)
        email = request.candidate_email.strip()
        if len(email) > MAX_EMAIL_CHARS or any(ord(ch) < 32 for ch in email):
            raise InvalidArgument(f"candidate_email must be at most {MAX_EMAIL_CHARS} printable characters")
        owner = parse_uuid(request.owner_user_id, "owner_user_id")
        ttl = self._ttl(request.invite_ttl_seconds)
        extra = self._extra_time(request.extra_time_percent)
        token = secrets.token_urlsafe(32)
        interview_id = uuid.uuid4()
        async with self._db.connection("create an interview") as conn:
            try:
                await conn.execute(
                    "INSERT INTO interviews (interview_id, candidate_name, candidate_email, owner_user_id,"
                    " invite_sha256, invite_expires_at, extra_time_percent) VALUES ($1, $2, $3, $4, $5, now() + $6, $7)",
                    interview_id,
                    name,
                    email,
                    owner,
                    digest(token),
                    ttl,
                    extra,
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(f"no user {owner}") from None
            interview = await self._fetch(conn, interview_id)
        log.info("interview %s created by %s", interview_id, owner)
        return admin_pb2.InvitedInterview(interview=interview, invite_token=token)

    async def ReissueInvite(
        self, request: admin_pb2.InterviewRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.InvitedInterview:
        interview_id = parse_uuid(request.interview_id, "interview_id")
        token = secrets.token_urlsafe(32)
        async with self._db.connection("re-issue an invite") as conn:
            updated = await conn.fetchval(
                "UPDATE interviews SET invite_sha256 = $2, invite_expires_at = now() + $3"
                " WHERE interview_id = $1 AND invite_used_at IS NULL AND cancelled_at IS NULL"
                " RETURNING interview_id",
                interview_id,
                digest(token),
                self._ttl(0),
            )
            interview = await self._fetch(conn, interview_id)
        if updated is None:
            raise FailedPrecondition("the interview has started or was cancelled; its invite cannot be re-issued")
        return admin_pb2.InvitedInterview(interview=interview, invite_token=token)

    async def ListInterviews(
        self, request: admin_pb2.ListInterviewsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListInterviewsResponse:
        limit = request.limit or 100
        if not 0 < limit <= MAX_LIST:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST}")
        async with self._db.connection("list interviews") as conn:
            if request.owner_user_id:
                owner = parse_uuid(request.owner_user_id, "owner_user_id")
                rows = await conn.fetch(
                    _INTERVIEW_SELECT + " WHERE i.owner_user_id = $1 ORDER BY i.created_at DESC LIMIT $2",
                    owner,
                    limit,
                )
            else:
                rows = await conn.fetch(_INTERVIEW_SELECT + " ORDER BY i.created_at DESC LIMIT $1", limit)
        return admin_pb2.ListInterviewsResponse(interviews=[self._interview(r) for r in rows])

    async def GetInterview(
        self, request: admin_pb2.InterviewRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Interview:
        interview_id = parse_uuid(request.interview_id, "interview_id")
        async with self._db.connection("read an interview") as conn:
            return await self._fetch(conn, interview_id)

    async def CancelInterview(
        self, request: admin_pb2.InterviewRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Interview:
        interview_id = parse_uuid(request.interview_id, "interview_id")
        async with self._db.connection("cancel an interview") as conn:
            interview = await self._fetch(conn, interview_id)
            if interview.status == admin_pb2.INTERVIEW_STATUS_FINISHED:
                raise FailedPrecondition("the interview is finished; a finished interview cannot be cancelled")
            await conn.execute(
                "UPDATE interviews SET cancelled_at = COALESCE(cancelled_at, now()) WHERE interview_id = $1",
                interview_id,
            )
        if interview.session_id and interview.status == admin_pb2.INTERVIEW_STATUS_IN_PROGRESS:
            # Finishing the session is what stops further answers being accepted.
            finished = await self._sessions.FinishInterview(
                orchestrator_pb2.FinishInterviewRequest(session_id=interview.session_id), context
            )
            await self._sessions.announce_cancelled(finished)
        log.info("interview %s cancelled", interview_id)
        async with self._db.connection("read an interview") as conn:
            return await self._fetch(conn, interview_id)

    async def PreviewInvite(
        self, request: admin_pb2.InviteRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Interview:
        token_digest = _check_token(request.invite_token)
        async with self._db.connection("read an invite") as conn:
            row = await conn.fetchrow(_INTERVIEW_SELECT + " WHERE i.invite_sha256 = $1", token_digest)
        if row is None:
            raise NotFound("this invite link is not valid")
        _refuse_unusable(row)
        return self._interview(row)

    async def AcceptInvite(
        self, request: admin_pb2.InviteRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.AcceptInviteResponse:
        token_digest = _check_token(request.invite_token)
        async with self._db.connection("use an invite") as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT interview_id, candidate_name, extra_time_percent, invite_expires_at, invite_used_at, cancelled_at"
                " FROM interviews WHERE invite_sha256 = $1 FOR UPDATE",
                token_digest,
            )
            if row is None:
                raise NotFound("this invite link is not valid")
            _refuse_unusable(row)
            # If anything below fails the transaction rolls back and the invite stays
            # unused; at worst an orphan session is left, never a second session.
            started = await self._sessions.StartInterview(
                orchestrator_pb2.StartInterviewRequest(
                    candidate_name=row["candidate_name"], extra_time_percent=row["extra_time_percent"]
                ),
                context,
            )
            await conn.execute(
                "UPDATE interviews SET session_id = $2, invite_used_at = now() WHERE interview_id = $1",
                row["interview_id"],
                uuid.UUID(started.session.session_id),
            )
            interview = await self._fetch(conn, row["interview_id"])
        log.info("invite of interview %s used; session %s", row["interview_id"], started.session.session_id)
        return admin_pb2.AcceptInviteResponse(interview=interview, started=started)

    async def ListBankItems(
        self, request: admin_pb2.ListBankItemsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListBankItemsResponse:
        async with self._db.connection("list the question bank") as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (item_id) item_id, version, kind, skill_area, prompt"
                " FROM items ORDER BY item_id, version DESC"
            )
        return admin_pb2.ListBankItemsResponse(
            items=[
                admin_pb2.BankItem(
                    item_id=r["item_id"], version=r["version"], kind=r["kind"], skill_area=r["skill_area"], prompt=r["prompt"]
                )
                for r in rows
            ]
        )
