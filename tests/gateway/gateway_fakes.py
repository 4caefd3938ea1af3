"""A fake orchestrator for the gateway tests.

It speaks the real v1 contract over a real ``grpc.aio`` server (with the shared
error interceptor and the standard health service), so the gateway is exercised
end to end except for the orchestrator's own logic. A uniquely named module rather
than conftest, so other test folders' conftest files cannot shadow it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health

from common.errors import REASON_SCORING_UNAVAILABLE, Unavailable
from gateway.__main__ import server_options
from gateway.app import create_app
from gateway.settings import GatewaySettings
from xlinterview.v1 import admin_pb2, admin_pb2_grpc, common_pb2, orchestrator_pb2, orchestrator_pb2_grpc


def _sheet() -> common_pb2.SampleSheet:
    def row(*cells: Any) -> common_pb2.SheetRow:
        out = common_pb2.SheetRow()
        for cell in cells:
            value = out.cells.add()
            if cell is None:
                continue
            if isinstance(cell, bool):
                value.boolean = cell
            elif isinstance(cell, (int, float)):
                value.number = float(cell)
            else:
                value.text = cell
        return out

    return common_pb2.SampleSheet(
        name="Sales",
        rows=[
            row("Region", "Amount", "Paid"),
            row("East", 1250, True),
            row("West", 980.5, False),
            row(None, 40),
        ],
    )


QUESTIONS = [
    orchestrator_pb2.Question(
        item_id="sum-east",
        item_version=3,
        kind=common_pb2.QUESTION_KIND_FORMULA,
        prompt="Total the East amounts.",
        skill_area="aggregation",
        sheet=_sheet(),
    ),
    orchestrator_pb2.Question(
        item_id="lookup-choice",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_MULTIPLE_CHOICE,
        prompt="Which function looks up a value by key?",
        skill_area="lookup",
        options=["SUM", "XLOOKUP", "LEN"],
    ),
]


STAFF = {
    # email: (user_id, role, password)
    "admin@example.com": ("00000000-0000-0000-0000-00000000000a", admin_pb2.ROLE_ADMIN, "admin-password-1"),
    "iv@example.com": ("00000000-0000-0000-0000-00000000000b", admin_pb2.ROLE_INTERVIEWER, "interviewer-pass-1"),
    "iv2@example.com": ("00000000-0000-0000-0000-00000000000c", admin_pb2.ROLE_INTERVIEWER, "interviewer-pass-2"),
    "an@example.com": ("00000000-0000-0000-0000-00000000000d", admin_pb2.ROLE_ANALYST, "analyst-password-1"),
}


class FakeOrchestrator(
    orchestrator_pb2_grpc.OrchestratorServicer,
    admin_pb2_grpc.IdentityServicer,
    admin_pb2_grpc.InterviewsServicer,
    admin_pb2_grpc.ReviewsServicer,
):
    """An in-memory orchestrator (with the staff services) with knobs to fail, stall, and record calls.

    Attributes:
        fail: When set, every call aborts with this (code, message) or (code, message,
            trailing metadata).
        crash: When set, every call raises it, as a bug in the orchestrator would.
        delay: Seconds every call sleeps before answering.
        scoring_down: When set, SubmitAnswer stores the answer without a score, moves the
            session on and fails UNAVAILABLE with reason SCORING_UNAVAILABLE, as the
            orchestrator does when its scorer fails (a resend of the key fails alike).
        calls: (method, request, metadata, time_remaining) of each call received.
        review_tasks: The review queue, by answer id, with the owner of each task's
            interview; SubmitReview grades a task, NOT_FOUND outside the owner filter.
        time_limit_s: Standard interview time. Deadlines run on the real clock (unlike
            the fixed start times), so timers and time warnings can be tested.
        max_extra_time_percent: Largest accommodation CreateInterview accepts.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.fail: tuple[grpc.StatusCode, str] | tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]] | None = None
        self.crash: Exception | None = None
        self.delay = 0.0
        self.scoring_down = False
        self.unscored: dict[str, str] = {}
        self.calls: list[tuple[str, Any, dict[str, str], float | None]] = []
        self.sessions: dict[str, orchestrator_pb2.Session] = {}
        self.positions: dict[str, int] = {}
        self.by_key: dict[str, orchestrator_pb2.SubmitAnswerResponse] = {}
        self.users = {
            uid: admin_pb2.User(user_id=uid, email=email, role=role) for email, (uid, role, _) in STAFF.items()
        }
        self.api_keys: dict[str, admin_pb2.ApiKey] = {}
        self.interviews: dict[str, admin_pb2.Interview] = {}
        self.invites: dict[str, str] = {}
        self.review_tasks: dict[str, tuple[str, admin_pb2.ReviewTask]] = {}
        self.time_limit_s = 3600.0
        self.max_extra_time_percent = 200

    def invite(self, name: str = "Ada Lovelace", owner: str = STAFF["iv@example.com"][0], extra_time_percent: int = 0) -> str:
        """Creates an interview directly in the fake; returns its invite token."""
        interview_id = f"00000000-0000-0000-0000-{len(self.interviews) + 1:012d}"
        self.interviews[interview_id] = admin_pb2.Interview(
            interview_id=interview_id,
            candidate_name=name,
            owner_user_id=owner,
            status=admin_pb2.INTERVIEW_STATUS_INVITED,
            extra_time_percent=extra_time_percent,
            time_limit_seconds=round(self.time_limit_s * (1 + extra_time_percent / 100)),
        )
        token = f"tok-{interview_id[-4:]}"
        self.invites[token] = interview_id
        return token

    async def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.calls.append((method, request, metadata, context.time_remaining()))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            await context.abort(*self.fail)
        if self.crash is not None:
            raise self.crash

    def _question(self, session_id: str) -> orchestrator_pb2.Question:
        q = orchestrator_pb2.Question()
        q.CopyFrom(QUESTIONS[self.positions[session_id]])
        q.position = self.positions[session_id] + 1
        q.total = len(QUESTIONS)
        return q

    async def _session(self, session_id: str, context: grpc.aio.ServicerContext) -> orchestrator_pb2.Session:
        if session_id not in self.sessions:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"session {session_id} does not exist")
        return self.sessions[session_id]

    async def StartInterview(self, request, context):  # noqa: N802 - gRPC method name
        await self._enter("StartInterview", request, context)
        if not request.candidate_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "candidate_name is required")
        session_id = f"s{len(self.sessions) + 1}"
        started = Timestamp()
        started.FromSeconds(1_700_000_000)
        deadline = Timestamp()
        deadline.FromNanoseconds(int((time.time() + self.time_limit_s * (1 + request.extra_time_percent / 100)) * 1e9))
        session = orchestrator_pb2.Session(
            session_id=session_id,
            candidate_name=request.candidate_name,
            status=orchestrator_pb2.SESSION_STATUS_IN_PROGRESS,
            started_at=started,
            deadline=deadline,
        )
        self.sessions[session_id] = session
        self.positions[session_id] = 0
        return orchestrator_pb2.StartInterviewResponse(session=session, question=self._question(session_id))

    async def GetCurrentQuestion(self, request, context):  # noqa: N802
        await self._enter("GetCurrentQuestion", request, context)
        session = await self._session(request.session_id, context)
        if session.status == orchestrator_pb2.SESSION_STATUS_FINISHED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the interview is finished")
        return self._question(request.session_id)

    async def SubmitAnswer(self, request, context):  # noqa: N802
        await self._enter("SubmitAnswer", request, context)
        if request.idempotency_key in self.by_key:
            return self.by_key[request.idempotency_key]
        if request.idempotency_key in self.unscored:
            raise self._scoring_unavailable(request.idempotency_key)
        session = await self._session(request.session_id, context)
        if session.status == orchestrator_pb2.SESSION_STATUS_FINISHED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the interview is finished")
        current = self._question(request.session_id)
        if request.item_id != current.item_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.item_id} is not the current question")
        if self.scoring_down:
            turn = session.turns.add(
                answer_id=f"a{len(session.turns) + 1}", item_id=current.item_id, prompt=current.prompt,
                answer=request.answer, skill_area=current.skill_area,
            )
            self.positions[request.session_id] += 1
            self.unscored[request.idempotency_key] = turn.answer_id
            raise self._scoring_unavailable(request.idempotency_key)
        right = request.answer.replace(" ", "").upper() in ('=SUMIF(A2:A4,"EAST",B2:B4)', "1")
        score = common_pb2.Score(
            value=1.0 if right else 0.25,
            confidence=0.9,
            feedback="Correct." if right else "Not quite.",
            criteria=[common_pb2.CriterionResult(name="value", met=right, weight=1.0, detail="B2")],
            evidence=["candidate value 1250 = expected 1250"],
            signals=["core_rs.formula_eval", "triton.answer_scorer"],
            provenance=common_pb2.ScoreProvenance(
                model_name="answer_scorer", model_version="1", backend="triton", code_version="0.1.0"
            ),
        )
        answer_id = f"a{len(session.turns) + 1}"
        submitted = Timestamp()
        submitted.FromSeconds(1_700_000_100)
        session.turns.add(
            answer_id=answer_id,
            item_id=current.item_id,
            item_version=current.item_version,
            prompt=current.prompt,
            answer=request.answer,
            score=score,
            submitted_at=submitted,
            skill_area=current.skill_area,
        )
        session.overall_score = sum(t.score.value for t in session.turns) / len(session.turns)
        self.positions[request.session_id] += 1
        response = orchestrator_pb2.SubmitAnswerResponse(answer_id=answer_id, score=score)
        if self.positions[request.session_id] < len(QUESTIONS):
            response.next_question.CopyFrom(self._question(request.session_id))
        else:
            response.finished = True
        self.by_key[request.idempotency_key] = response
        return response

    def _scoring_unavailable(self, key: str) -> Unavailable:
        return Unavailable(
            "answer saved; scoring is unavailable right now",
            reason=REASON_SCORING_UNAVAILABLE,
            metadata={"answer_id": self.unscored[key]},
        )

    async def GetSession(self, request, context):  # noqa: N802
        await self._enter("GetSession", request, context)
        return await self._session(request.session_id, context)

    async def FinishInterview(self, request, context):  # noqa: N802
        await self._enter("FinishInterview", request, context)
        session = await self._session(request.session_id, context)
        if session.status != orchestrator_pb2.SESSION_STATUS_FINISHED:
            session.status = orchestrator_pb2.SESSION_STATUS_FINISHED
            session.finished_at.FromSeconds(1_700_000_200)
            session.result.CopyFrom(self._result(session))
        return session

    @staticmethod
    def _result(session: orchestrator_pb2.Session) -> orchestrator_pb2.Result:
        """A stand-in estimate that follows the answers: each one's score moves the
        ability, and every answer narrows the interval."""
        by_skill: dict[str, list[float]] = {}
        for turn in session.turns:
            skill = next(q.skill_area for q in QUESTIONS if q.item_id == turn.item_id)
            by_skill.setdefault(skill, []).append(turn.score.value)

        def estimate(values: list[float]) -> tuple[float, float]:
            ability = sum(2 * v - 1 for v in values) / max(len(values), 1) * 1.5
            return ability, 1.0 / (1 + len(values)) ** 0.5

        ability, se = estimate([t.score.value for t in session.turns])
        return orchestrator_pb2.Result(
            ability=ability,
            standard_error=se,
            ci_low=ability - 1.96 * se,
            ci_high=ability + 1.96 * se,
            skills=[
                orchestrator_pb2.SkillEstimate(skill_area=k, ability=estimate(v)[0], standard_error=estimate(v)[1], answers=len(v))
                for k, v in by_skill.items()
            ],
            stop_reason="finish_requested",
            answers_scored=len(session.turns),
        )


    # -- Identity ---------------------------------------------------------------------

    async def Authenticate(self, request, context):  # noqa: N802
        await self._enter("Authenticate", request, context)
        entry = STAFF.get(request.email.lower())
        if entry is None or entry[2] != request.password:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong email or password")
        return self.users[entry[0]]

    async def GetUser(self, request, context):  # noqa: N802
        await self._enter("GetUser", request, context)
        if request.user_id not in self.users:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no user {request.user_id}")
        return self.users[request.user_id]

    async def CreateUser(self, request, context):  # noqa: N802
        await self._enter("CreateUser", request, context)
        user = admin_pb2.User(user_id=f"u{len(self.users)}", email=request.email, role=request.role)
        self.users[user.user_id] = user
        return user

    async def ListUsers(self, request, context):  # noqa: N802
        await self._enter("ListUsers", request, context)
        return admin_pb2.ListUsersResponse(users=list(self.users.values()))

    async def CreateApiKey(self, request, context):  # noqa: N802
        await self._enter("CreateApiKey", request, context)
        key = admin_pb2.ApiKey(
            key_id=f"{len(self.api_keys) + 1:04x}", name=request.name, role=request.role, owner_user_id=request.owner_user_id
        )
        return self._issue(key)

    def _issue(self, key: admin_pb2.ApiKey) -> admin_pb2.IssuedApiKey:
        for secret, known in list(self.api_keys.items()):
            if known.key_id == key.key_id:
                del self.api_keys[secret]
        secret = f"xli_{key.key_id}_{len(self.calls)}"
        self.api_keys[secret] = key
        return admin_pb2.IssuedApiKey(key=key, secret=secret)

    async def RotateApiKey(self, request, context):  # noqa: N802
        await self._enter("RotateApiKey", request, context)
        key = next((k for k in self.api_keys.values() if k.key_id == request.key_id), None)
        if key is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no API key {request.key_id!r}")
        return self._issue(key)

    async def RevokeApiKey(self, request, context):  # noqa: N802
        await self._enter("RevokeApiKey", request, context)
        for secret, key in list(self.api_keys.items()):
            if key.key_id == request.key_id:
                del self.api_keys[secret]
                key.revoked = True
                return key
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no API key {request.key_id!r}")

    async def ListApiKeys(self, request, context):  # noqa: N802
        await self._enter("ListApiKeys", request, context)
        return admin_pb2.ListApiKeysResponse(keys=list(self.api_keys.values()))

    async def VerifyApiKey(self, request, context):  # noqa: N802
        await self._enter("VerifyApiKey", request, context)
        if request.secret not in self.api_keys:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked API key")
        return self.api_keys[request.secret]

    # -- Interviews -------------------------------------------------------------------

    async def CreateInterview(self, request, context):  # noqa: N802
        await self._enter("CreateInterview", request, context)
        if not 0 <= request.extra_time_percent <= self.max_extra_time_percent:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"extra_time_percent must be between 0 and {self.max_extra_time_percent}"
            )
        token = self.invite(request.candidate_name, request.owner_user_id, request.extra_time_percent)
        return admin_pb2.InvitedInterview(interview=self.interviews[self.invites[token]], invite_token=token)

    async def _interview(self, interview_id: str, context) -> admin_pb2.Interview:  # type: ignore[no-untyped-def]
        if interview_id not in self.interviews:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no interview {interview_id}")
        return self.interviews[interview_id]

    async def GetInterview(self, request, context):  # noqa: N802
        await self._enter("GetInterview", request, context)
        return await self._interview(request.interview_id, context)

    async def ListInterviews(self, request, context):  # noqa: N802
        await self._enter("ListInterviews", request, context)
        found = [i for i in self.interviews.values() if not request.owner_user_id or i.owner_user_id == request.owner_user_id]
        return admin_pb2.ListInterviewsResponse(interviews=found)

    async def ReissueInvite(self, request, context):  # noqa: N802
        await self._enter("ReissueInvite", request, context)
        interview = await self._interview(request.interview_id, context)
        self.invites = {t: i for t, i in self.invites.items() if i != interview.interview_id}
        token = f"tok2-{interview.interview_id[-4:]}"
        self.invites[token] = interview.interview_id
        return admin_pb2.InvitedInterview(interview=interview, invite_token=token)

    async def CancelInterview(self, request, context):  # noqa: N802
        await self._enter("CancelInterview", request, context)
        interview = await self._interview(request.interview_id, context)
        interview.status = admin_pb2.INTERVIEW_STATUS_CANCELLED
        return interview

    async def _invited(self, token: str, context) -> admin_pb2.Interview:  # type: ignore[no-untyped-def]
        if token not in self.invites:
            await context.abort(grpc.StatusCode.NOT_FOUND, "this invite link is not valid")
        interview = self.interviews[self.invites[token]]
        if interview.session_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this invite link has already been used")
        return interview

    async def PreviewInvite(self, request, context):  # noqa: N802
        await self._enter("PreviewInvite", request, context)
        return await self._invited(request.invite_token, context)

    async def AcceptInvite(self, request, context):  # noqa: N802
        interview = await self._invited(request.invite_token, context)
        started = await self.StartInterview(
            orchestrator_pb2.StartInterviewRequest(
                candidate_name=interview.candidate_name, extra_time_percent=interview.extra_time_percent
            ),
            context,
        )
        interview.session_id = started.session.session_id
        interview.status = admin_pb2.INTERVIEW_STATUS_IN_PROGRESS
        return admin_pb2.AcceptInviteResponse(interview=interview, started=started)

    async def ListBankItems(self, request, context):  # noqa: N802
        await self._enter("ListBankItems", request, context)
        return admin_pb2.ListBankItemsResponse(
            items=[
                admin_pb2.BankItem(item_id=q.item_id, version=q.item_version, skill_area=q.skill_area, prompt=q.prompt)
                for q in QUESTIONS
            ]
        )

    def queue_review(self, answer_id: str, owner: str, confidence: float, kind: int = common_pb2.QUESTION_KIND_FREE_TEXT) -> None:
        """Puts an answer of an interview owned by ``owner`` in the review queue."""
        self.review_tasks[answer_id] = (
            owner,
            admin_pb2.ReviewTask(
                answer_id=answer_id,
                interview_id=f"interview-of-{answer_id}",
                candidate_name="Ada Lovelace",
                item_id="explain-lookup",
                item_version=1,
                kind=kind,
                skill_area="lookups",
                prompt="Why does VLOOKUP return #N/A here?",
                answer="weil es nicht passt",
                references=["The lookup value is not in the first column."],
                model_score=common_pb2.Score(
                    value=0.0, confidence=confidence, needs_review=True, review_reason="not English", signals=["guard:language"]
                ),
            ),
        )

    async def ListReviewQueue(self, request, context):  # noqa: N802
        await self._enter("ListReviewQueue", request, context)
        tasks = sorted(
            (t for owner, t in self.review_tasks.values() if not t.HasField("review") and request.owner_user_id in ("", owner)),
            key=lambda t: t.model_score.confidence,
        )
        return admin_pb2.ListReviewQueueResponse(tasks=tasks[: request.limit or 50], pending=len(tasks))

    async def SubmitReview(self, request, context):  # noqa: N802
        await self._enter("SubmitReview", request, context)
        owner, task = self.review_tasks.get(request.answer_id, ("", None))
        if task is None or request.owner_user_id not in ("", owner):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no answer {request.answer_id}")
        task.review.CopyFrom(
            common_pb2.Score(value=request.value, confidence=1.0, feedback=request.comment, signals=["human.review"])
        )
        task.reviewer_user_id = request.reviewer_user_id
        return task


class FakeServer:
    """The running fake: its servicer, address and health servicer."""

    def __init__(self, servicer: FakeOrchestrator, address: str, health: health.aio.HealthServicer) -> None:
        self.servicer = servicer
        self.address = address
        self.health = health


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(settings: GatewaySettings, app: Any = None) -> AsyncIterator[str]:
    """Serves the gateway (``app``, or one built from ``settings``) with uvicorn on a free
    local port (real HTTP, real streaming); yields its base URL."""
    options = server_options(settings.model_copy(update={"host": "127.0.0.1", "port": free_port()}))
    config = uvicorn.Config(app or create_app(settings), lifespan="on", **options)
    server = uvicorn.Server(config)
    # Signals stay with pytest; the server is stopped through should_exit.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{options['port']}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def start_as_candidate(client: httpx.AsyncClient, orchestrator: FakeServer, name: str = "Ada Lovelace") -> dict:
    """Accepts a fresh invite through the API and makes ``client`` send the candidate token.

    Returns:
        The accept response: ``session``, ``question`` and ``access_token``.
    """
    token = orchestrator.servicer.invite(name)
    response = await client.post("/api/v1/invites/accept", json={"invite_token": token})
    assert response.status_code == 200, response.text
    started: dict = response.json()
    client.headers["authorization"] = f"Bearer {started['access_token']}"
    return started


async def sign_in(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Signs in a staff member of the fake; returns the Authorization header to send."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": STAFF[email][2]})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}
