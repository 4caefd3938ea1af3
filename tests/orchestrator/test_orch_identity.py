"""The Identity and Interviews services through gRPC, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
import pytest_asyncio

from common import session_events
from orch_helpers import next_message, orchestrator_settings, serving_orchestrator
from orchestrator import identity
from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, IdentitySettings
from orchestrator.settings import MissingSetting
from orchestrator.staff import StaffServices
from xlinterview.v1 import admin_pb2 as apb
from xlinterview.v1 import admin_pb2_grpc, orchestrator_pb2 as pb, orchestrator_pb2_grpc


@dataclass
class Stubs:
    identity: admin_pb2_grpc.IdentityStub
    interviews: admin_pb2_grpc.InterviewsStub
    sessions: orchestrator_pb2_grpc.OrchestratorStub
    admin: apb.User


@pytest_asyncio.fixture(scope="module")
async def stubs(postgres, redis_server, fake_scorer) -> AsyncIterator[Stubs]:  # type: ignore[no-untyped-def]
    settings = orchestrator_settings(postgres.url, redis_server.url, fake_scorer[1])
    async with serving_orchestrator(settings, IdentitySettings()) as (_, channel):
        identity = admin_pb2_grpc.IdentityStub(channel)
        admin = await identity.Authenticate(apb.AuthenticateRequest(email=DEV_ADMIN_EMAIL, password=DEV_ADMIN_PASSWORD))
        yield Stubs(identity, admin_pb2_grpc.InterviewsStub(channel), orchestrator_pb2_grpc.OrchestratorStub(channel), admin)


async def code_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


# ------------------------------------------------------------------ identities


def test_production_refuses_the_default_admin_password() -> None:
    with pytest.raises(MissingSetting, match="XLI_ADMIN_PASSWORD"):
        StaffServices(IdentitySettings(), "production")
    with pytest.raises(MissingSetting):
        StaffServices(IdentitySettings(admin_password="short"), "production")
    StaffServices(IdentitySettings(admin_password="a-long-and-real-secret"), "production")
    StaffServices(IdentitySettings(), "development")


async def test_initial_admin_signs_in_and_wrong_credentials_look_alike(stubs: Stubs) -> None:
    assert stubs.admin.role == apb.ROLE_ADMIN and stubs.admin.email == DEV_ADMIN_EMAIL
    upper = await stubs.identity.Authenticate(apb.AuthenticateRequest(email="ADMIN@xlinterview.local", password=DEV_ADMIN_PASSWORD))
    assert upper.user_id == stubs.admin.user_id
    messages = set()
    for email, password in ((DEV_ADMIN_EMAIL, "wrong-password"), ("nobody@example.com", DEV_ADMIN_PASSWORD), ("", "")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.identity.Authenticate(apb.AuthenticateRequest(email=email, password=password))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        messages.add(caught.value.details())
    assert messages == {"wrong email or password"}


async def test_a_burst_of_sign_ins_hashes_at_most_the_configured_number_at_once(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = identity._hasher
    lock = threading.Lock()
    running = peak = 0

    class CountingHasher:
        """The real hasher, counting the verifications in progress."""

        def verify(self, stored: str, password: str) -> bool:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return real.verify(stored, password)
            finally:
                with lock:
                    running -= 1

        def check_needs_rehash(self, stored: str) -> bool:
            return real.check_needs_rehash(stored)

    monkeypatch.setattr(identity, "_hasher", CountingHasher())
    request = apb.AuthenticateRequest(email=DEV_ADMIN_EMAIL, password=DEV_ADMIN_PASSWORD)
    users = await asyncio.gather(*(stubs.identity.Authenticate(request) for _ in range(8)))
    assert {user.user_id for user in users} == {stubs.admin.user_id}
    # Eight at once would have run on all of asyncio's worker threads (six on two cores).
    assert peak == IdentitySettings().password_hash_concurrency == 2


async def test_users_are_stored_with_argon2id_hashes(stubs: Stubs, pg: asyncpg.Connection) -> None:
    email = f"iv-{uuid.uuid4().hex[:8]}@example.com"
    user = await stubs.identity.CreateUser(
        apb.CreateUserRequest(email=email, password="correct horse battery", display_name="Iv", role=apb.ROLE_INTERVIEWER)
    )
    stored = await pg.fetchval("SELECT password_hash FROM users WHERE user_id = $1", uuid.UUID(user.user_id))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    again = apb.CreateUserRequest(email=email.upper(), password="another long password", role=apb.ROLE_ANALYST)
    assert await code_of(stubs.identity.CreateUser(again)) == grpc.StatusCode.ALREADY_EXISTS
    for bad in (
        apb.CreateUserRequest(email="x@example.com", password="short", role=apb.ROLE_ANALYST),
        apb.CreateUserRequest(email="not-an-email", password="long enough password", role=apb.ROLE_ANALYST),
        apb.CreateUserRequest(email="y@example.com", password="long enough password"),
    ):
        assert await code_of(stubs.identity.CreateUser(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    fetched = await stubs.identity.GetUser(apb.GetUserRequest(user_id=user.user_id))
    assert fetched.role == apb.ROLE_INTERVIEWER


async def test_api_keys_rotate_and_revoke(stubs: Stubs, pg: asyncpg.Connection) -> None:
    issued = await stubs.identity.CreateApiKey(
        apb.CreateApiKeyRequest(name="ats sync", role=apb.ROLE_ANALYST, owner_user_id=stubs.admin.user_id)
    )
    assert issued.secret.startswith(f"xli_{issued.key.key_id}_")
    stored = await pg.fetchval("SELECT secret_sha256 FROM api_keys WHERE key_id = $1", issued.key.key_id)
    assert issued.secret.encode() not in bytes(stored)
    verified = await stubs.identity.VerifyApiKey(apb.VerifyApiKeyRequest(secret=issued.secret))
    assert (verified.key_id, verified.role) == (issued.key.key_id, apb.ROLE_ANALYST)

    rotated = await stubs.identity.RotateApiKey(apb.ApiKeyRequest(key_id=issued.key.key_id))
    assert rotated.secret != issued.secret and rotated.key.HasField("rotated_at")
    old = stubs.identity.VerifyApiKey(apb.VerifyApiKeyRequest(secret=issued.secret))
    assert await code_of(old) == grpc.StatusCode.UNAUTHENTICATED
    await stubs.identity.VerifyApiKey(apb.VerifyApiKeyRequest(secret=rotated.secret))

    revoked = await stubs.identity.RevokeApiKey(apb.ApiKeyRequest(key_id=issued.key.key_id))
    assert revoked.revoked
    assert (await stubs.identity.RevokeApiKey(apb.ApiKeyRequest(key_id=issued.key.key_id))).revoked_at == revoked.revoked_at
    gone = stubs.identity.VerifyApiKey(apb.VerifyApiKeyRequest(secret=rotated.secret))
    assert await code_of(gone) == grpc.StatusCode.UNAUTHENTICATED
    rotate_revoked = stubs.identity.RotateApiKey(apb.ApiKeyRequest(key_id=issued.key.key_id))
    assert await code_of(rotate_revoked) == grpc.StatusCode.FAILED_PRECONDITION
    assert await code_of(stubs.identity.RevokeApiKey(apb.ApiKeyRequest(key_id="nope"))) == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------ interviews and invites


async def create(stubs: Stubs, name: str = "Ada Lovelace", owner: str | None = None) -> apb.InvitedInterview:
    return await stubs.interviews.CreateInterview(
        apb.CreateInterviewRequest(candidate_name=name, candidate_email="ada@example.com", owner_user_id=owner or stubs.admin.user_id)
    )


async def test_an_invite_starts_one_session_once(stubs: Stubs, pg: asyncpg.Connection) -> None:
    invited = await create(stubs)
    assert invited.interview.status == apb.INTERVIEW_STATUS_INVITED and not invited.interview.session_id
    stored = await pg.fetchval(
        "SELECT invite_sha256 FROM interviews WHERE interview_id = $1", uuid.UUID(invited.interview.interview_id)
    )
    assert invited.invite_token.encode() not in bytes(stored)

    preview = await stubs.interviews.PreviewInvite(apb.InviteRequest(invite_token=invited.invite_token))
    assert preview.candidate_name == "Ada Lovelace"

    # Two clicks at once: exactly one starts the session.
    results = await asyncio.gather(
        *(stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=invited.invite_token)) for _ in range(3)),
        return_exceptions=True,
    )
    accepted = [r for r in results if isinstance(r, apb.AcceptInviteResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 1 and len(refused) == 2
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    started = accepted[0]
    assert started.interview.status == apb.INTERVIEW_STATUS_IN_PROGRESS
    assert started.interview.session_id == started.started.session.session_id
    assert started.started.question.position == 1

    reissue = stubs.interviews.ReissueInvite(apb.InterviewRequest(interview_id=invited.interview.interview_id))
    assert await code_of(reissue) == grpc.StatusCode.FAILED_PRECONDITION
    sessions = await pg.fetchval("SELECT count(*) FROM interviews WHERE interview_id = $1 AND session_id IS NOT NULL",
                                 uuid.UUID(invited.interview.interview_id))
    assert sessions == 1


async def test_expired_unknown_and_reissued_invites_are_refused(stubs: Stubs, pg: asyncpg.Connection) -> None:
    unknown = stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token="x" * 43))
    assert await code_of(unknown) == grpc.StatusCode.NOT_FOUND

    expired = await create(stubs, "Expired Person")
    await pg.execute(
        "UPDATE interviews SET invite_expires_at = now() - interval '1 second' WHERE interview_id = $1",
        uuid.UUID(expired.interview.interview_id),
    )
    got = await stubs.interviews.GetInterview(apb.InterviewRequest(interview_id=expired.interview.interview_id))
    assert got.status == apb.INTERVIEW_STATUS_EXPIRED
    assert await code_of(stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=expired.invite_token))) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert await pg.fetchval("SELECT count(*) FROM sessions WHERE candidate_name = 'Expired Person'") == 0

    # Re-issuing replaces the link: the old token is unknown, the new one works.
    reissued = await stubs.interviews.ReissueInvite(apb.InterviewRequest(interview_id=expired.interview.interview_id))
    assert reissued.interview.status == apb.INTERVIEW_STATUS_INVITED
    old = stubs.interviews.PreviewInvite(apb.InviteRequest(invite_token=expired.invite_token))
    assert await code_of(old) == grpc.StatusCode.NOT_FOUND
    await stubs.interviews.PreviewInvite(apb.InviteRequest(invite_token=reissued.invite_token))


async def test_cancel_stops_the_invite_and_the_session(stubs: Stubs, redis_client) -> None:  # type: ignore[no-untyped-def]
    invited = await create(stubs, "Cancelled Before")
    cancelled = await stubs.interviews.CancelInterview(apb.InterviewRequest(interview_id=invited.interview.interview_id))
    assert cancelled.status == apb.INTERVIEW_STATUS_CANCELLED
    refused = stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=invited.invite_token))
    assert await code_of(refused) == grpc.StatusCode.FAILED_PRECONDITION

    running = await create(stubs, "Cancelled During")
    started = await stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=running.invite_token))
    # The candidate's open page hears of it: subscribed as the gateway's event stream is.
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(session_events.channel(started.started.session.session_id))
    try:
        await stubs.interviews.CancelInterview(apb.InterviewRequest(interview_id=running.interview.interview_id))
        message = await next_message(pubsub, timeout_s=10)
    finally:
        await pubsub.aclose()
    assert session_events.decode(message["data"]) == (
        "interview_finished",
        {"status": "SESSION_STATUS_FINISHED", "overall_score": 0.0, "cancelled": True},
    )
    answer = stubs.sessions.SubmitAnswer(
        pb.SubmitAnswerRequest(
            session_id=started.started.session.session_id,
            item_id=started.started.question.item_id,
            answer="0",
            idempotency_key="k",
        )
    )
    assert await code_of(answer) == grpc.StatusCode.FAILED_PRECONDITION
    again = await stubs.interviews.CancelInterview(apb.InterviewRequest(interview_id=running.interview.interview_id))
    assert again.status == apb.INTERVIEW_STATUS_CANCELLED


async def test_lists_are_filtered_by_owner_and_carry_scores(stubs: Stubs, scorer) -> None:  # type: ignore[no-untyped-def]
    owner = await stubs.identity.CreateUser(
        apb.CreateUserRequest(email=f"o-{uuid.uuid4().hex[:8]}@example.com", password="long enough password", role=apb.ROLE_INTERVIEWER)
    )
    mine = await create(stubs, "Owned One", owner=owner.user_id)
    await create(stubs, "Someone Else's")
    listed = await stubs.interviews.ListInterviews(apb.ListInterviewsRequest(owner_user_id=owner.user_id))
    assert [i.interview_id for i in listed.interviews] == [mine.interview.interview_id]
    everyone = await stubs.interviews.ListInterviews(apb.ListInterviewsRequest())
    assert len(everyone.interviews) >= 2

    started = await stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=mine.invite_token))
    question = started.started.question
    scorer.values[question.item_id] = 0.5
    answer = "0" if question.options else "=SUM(D2:D11)"
    await stubs.sessions.SubmitAnswer(
        pb.SubmitAnswerRequest(session_id=started.started.session.session_id, item_id=question.item_id, answer=answer, idempotency_key="k1")
    )
    got = await stubs.interviews.GetInterview(apb.InterviewRequest(interview_id=mine.interview.interview_id))
    assert (got.answered, got.overall_score) == (1, pytest.approx(0.5))
    bad = stubs.interviews.CreateInterview(apb.CreateInterviewRequest(candidate_name=" ", owner_user_id=owner.user_id))
    assert await code_of(bad) == grpc.StatusCode.INVALID_ARGUMENT
    bank = await stubs.interviews.ListBankItems(apb.ListBankItemsRequest())
    assert question.item_id in {i.item_id for i in bank.items}


async def rescore(pg: asyncpg.Connection, answer_id: str, **changes: object) -> None:
    """Appends a newer score for the answer: its latest score with ``changes`` (None drops a key)."""
    latest = await pg.fetchrow(
        "SELECT value, confidence, score::text AS score FROM scores WHERE answer_id = $1 ORDER BY score_id DESC LIMIT 1",
        uuid.UUID(answer_id),
    )
    score = {**json.loads(latest["score"]), **changes}
    await pg.execute(
        "INSERT INTO scores (answer_id, value, confidence, score) VALUES ($1, $2, $3, $4::jsonb)",
        uuid.UUID(answer_id),
        latest["value"],
        latest["confidence"],
        json.dumps({k: v for k, v in score.items() if v is not None}),
    )


async def test_lists_count_the_answers_whose_latest_score_needs_review(stubs: Stubs, scorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    invited = await create(stubs, "Review Me")
    started = (await stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=invited.invite_token))).started
    sid, question = started.session.session_id, started.question
    answer_ids = []
    for key in ("k1", "k2"):
        answer = "0" if question.options else "=SUM(D2:D11)"
        reply = await stubs.sessions.SubmitAnswer(
            pb.SubmitAnswerRequest(session_id=sid, item_id=question.item_id, answer=answer, idempotency_key=key)
        )
        answer_ids.append(reply.answer_id)
        question = reply.next_question

    async def needing_review() -> tuple[int, int]:
        got = await stubs.interviews.GetInterview(apb.InterviewRequest(interview_id=invited.interview.interview_id))
        listed = await stubs.interviews.ListInterviews(apb.ListInterviewsRequest(owner_user_id=stubs.admin.user_id))
        row = next(i for i in listed.interviews if i.interview_id == invited.interview.interview_id)
        assert (got.answered, row.answered) == (2, 2)
        return got.answers_needing_review, row.answers_needing_review

    assert await needing_review() == (0, 0)
    await rescore(pg, answer_ids[0], needs_review=True, review_reason="confidence 0.41 is below 0.6")
    assert await needing_review() == (1, 1)
    # The latest score decides; one stored before scores had the flag counts as not flagged.
    await rescore(pg, answer_ids[0], needs_review=None, review_reason=None)
    assert await needing_review() == (0, 0)


async def test_extra_time_is_stored_and_lengthens_the_session_deadline(stubs: Stubs, pg: asyncpg.Connection) -> None:
    standard = await create(stubs, "Standard Time")
    extra = await stubs.interviews.CreateInterview(
        apb.CreateInterviewRequest(candidate_name="Extra Time", owner_user_id=stubs.admin.user_id, extra_time_percent=50)
    )
    assert (standard.interview.extra_time_percent, extra.interview.extra_time_percent) == (0, 50)
    # The fixture runs with the default time limit, one hour.
    assert (standard.interview.time_limit_seconds, extra.interview.time_limit_seconds) == (3600, 5400)
    stored = await pg.fetchval(
        "SELECT extra_time_percent FROM interviews WHERE interview_id = $1", uuid.UUID(extra.interview.interview_id)
    )
    assert stored == 50

    lengths = {}
    for invited in (standard, extra):
        accepted = await stubs.interviews.AcceptInvite(apb.InviteRequest(invite_token=invited.invite_token))
        session = accepted.started.session
        lengths[invited.interview.candidate_name] = (
            session.deadline.ToDatetime() - session.started_at.ToDatetime()
        ).total_seconds()
        assert accepted.interview.extra_time_percent == invited.interview.extra_time_percent
        row = await pg.fetchrow(
            "SELECT extra_time_percent FROM sessions WHERE session_id = $1", uuid.UUID(session.session_id)
        )
        assert row["extra_time_percent"] == invited.interview.extra_time_percent
    assert lengths["Extra Time"] == pytest.approx(1.5 * lengths["Standard Time"], abs=1.0)

    # Over the orchestrator's maximum (200 by default) or negative: refused at creation, nothing stored.
    for percent in (201, -1):
        refused = stubs.interviews.CreateInterview(
            apb.CreateInterviewRequest(candidate_name="Too Much", owner_user_id=stubs.admin.user_id, extra_time_percent=percent)
        )
        assert await code_of(refused) == grpc.StatusCode.INVALID_ARGUMENT
    assert await pg.fetchval("SELECT count(*) FROM interviews WHERE candidate_name = 'Too Much'") == 0
