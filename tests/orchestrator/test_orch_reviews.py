"""The Reviews service and the learning loop's export, through gRPC on the real
orchestrator (PostgreSQL, Redis) with the fake scorer flagging chosen answers."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio

from orch_helpers import FakeScorer, good_answer, orchestrator_settings, rpc_error, serving_orchestrator, submit
from orchestrator import export_reviews
from orchestrator.bank import ChoiceItem, FormulaItem, FreeTextItem, NumericItem, load_bank
from orchestrator.identity import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, IdentitySettings
from orchestrator.reviews import reviewer_grade
from orchestrator.settings import DEFAULT_BANK_DIR
from scorer.training.data import load_jsonl_files
from xlinterview.v1 import admin_pb2 as apb
from xlinterview.v1 import admin_pb2_grpc, common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc

BANK = {item.id: item for item in load_bank(DEFAULT_BANK_DIR)}
FREE_TEXT = common_pb2.QUESTION_KIND_FREE_TEXT
FORMULA = common_pb2.QUESTION_KIND_FORMULA
MODEL_VALUE = 0.4


@dataclass
class Svc:
    identity: admin_pb2_grpc.IdentityStub
    interviews: admin_pb2_grpc.InterviewsStub
    reviews: admin_pb2_grpc.ReviewsStub
    sessions: orchestrator_pb2_grpc.OrchestratorStub
    admin: apb.User
    database_url: str


@pytest_asyncio.fixture(scope="module")
async def svc(postgres, redis_server, fake_scorer) -> AsyncIterator[Svc]:  # type: ignore[no-untyped-def]
    settings = orchestrator_settings(postgres.url, redis_server.url, fake_scorer[1])
    async with serving_orchestrator(settings, IdentitySettings()) as (_, channel):
        identity = admin_pb2_grpc.IdentityStub(channel)
        admin = await identity.Authenticate(apb.AuthenticateRequest(email=DEV_ADMIN_EMAIL, password=DEV_ADMIN_PASSWORD))
        yield Svc(
            identity,
            admin_pb2_grpc.InterviewsStub(channel),
            admin_pb2_grpc.ReviewsStub(channel),
            orchestrator_pb2_grpc.OrchestratorStub(channel),
            admin,
            postgres.url,
        )


def flag_next(scorer: FakeScorer, *confidences: float | None, value: float = MODEL_VALUE) -> None:
    """Scores the next answers in order: a number flags the answer for review with that
    confidence, None scores it unflagged (the fake's default 0.75 with confidence 0.9)."""
    plan = list(confidences)

    def grade(request):  # type: ignore[no-untyped-def]
        confidence = plan.pop(0) if plan else None
        if confidence is None:
            return None
        return common_pb2.Score(value=value, confidence=confidence, needs_review=True, review_reason="model unsure")

    scorer.grade = grade


async def new_user(svc: Svc, name: str) -> apb.User:
    return await svc.identity.CreateUser(
        apb.CreateUserRequest(
            email=f"{name.lower().replace(' ', '.')}-{uuid.uuid4().hex[:8]}@example.com",
            password="a long enough password",
            display_name=name,
            role=apb.ROLE_INTERVIEWER,
        )
    )


async def interview(svc: Svc, owner: apb.User, candidate: str = "Grace Hopper") -> tuple[str, str, pb.Question]:
    """A started interview of ``owner``'s: (interview_id, session_id, first question)."""
    invited = await svc.interviews.CreateInterview(
        apb.CreateInterviewRequest(candidate_name=candidate, owner_user_id=owner.user_id)
    )
    accepted = await svc.interviews.AcceptInvite(apb.InviteRequest(invite_token=invited.invite_token))
    return accepted.interview.interview_id, accepted.started.session.session_id, accepted.started.question


async def answer(svc: Svc, session_id: str, questions: list[pb.Question], count: int, text=None):  # type: ignore[no-untyped-def]
    """Answers ``count`` questions from ``questions[-1]`` on; appends each next question.

    Returns:
        The answer ids, in order.
    """
    ids = []
    for _ in range(count):
        question = questions[-1]
        response = await submit(svc.sessions, session_id, question, None if text is None else text(question))
        ids.append(response.answer_id)
        questions.append(response.next_question)
    return ids


async def queue(svc: Svc, owner: str = "", limit: int = 0) -> apb.ListReviewQueueResponse:
    return await svc.reviews.ListReviewQueue(apb.ListReviewQueueRequest(owner_user_id=owner, limit=limit))


async def review(svc: Svc, answer_id: str, reviewer: apb.User, value: float, comment: str = "", owner: str = ""):  # type: ignore[no-untyped-def]
    return await svc.reviews.SubmitReview(
        apb.SubmitReviewRequest(
            answer_id=answer_id, reviewer_user_id=reviewer.user_id, owner_user_id=owner, value=value, comment=comment
        )
    )


async def stored_counts(pg: asyncpg.Connection) -> tuple[int, int, int]:
    """(scores, reviews, answer_reviewed audit events) in the whole database."""
    return (
        await pg.fetchval("SELECT count(*) FROM scores"),
        await pg.fetchval("SELECT count(*) FROM reviews"),
        await pg.fetchval("SELECT count(*) FROM audit_log WHERE event = 'answer_reviewed'"),
    )


def expected_references(item_id: str) -> list[str] | None:
    """The references the bank authored, for the kinds whose text is taken verbatim."""
    item = BANK[item_id]
    if isinstance(item, FreeTextItem):
        return list(item.rubric.reference_answers)
    if isinstance(item, FormulaItem):
        return [item.formula.reference_formula]
    if isinstance(item, ChoiceItem):
        return [item.choice.options[item.choice.correct_index]]
    return None


async def test_queue_lists_flagged_answers_least_confident_first_with_what_a_reviewer_needs(
    svc: Svc, scorer: FakeScorer
) -> None:
    owner = await new_user(svc, "Owner")
    interview_id, sid, first = await interview(svc, owner, "Katherine Johnson")
    questions = [first]
    flag_next(scorer, 0.45, None, 0.12)
    ids = await answer(svc, sid, questions, 3)

    listed = await queue(svc, owner.user_id)
    assert [t.answer_id for t in listed.tasks] == [ids[2], ids[0]]  # 0.12 before 0.45; the unflagged one left out
    assert listed.pending == 2
    for task, question, confidence in ((listed.tasks[0], questions[2], 0.12), (listed.tasks[1], questions[0], 0.45)):
        assert (task.interview_id, task.session_id, task.candidate_name) == (interview_id, sid, "Katherine Johnson")
        assert (task.item_id, task.item_version, task.kind) == (question.item_id, question.item_version, question.kind)
        assert (task.prompt, task.skill_area) == (question.prompt, question.skill_area)
        assert task.answer == good_answer(question)
        expected = expected_references(question.item_id)
        if expected is not None:
            assert list(task.references) == expected
        else:
            numeric = BANK[question.item_id]
            assert isinstance(numeric, NumericItem)
            assert len(task.references) == 1 and task.references[0].startswith(f"{numeric.numeric.expected:g}")
        assert task.model_score.needs_review and task.model_score.review_reason == "model unsure"
        assert math.isclose(task.model_score.confidence, confidence)
        assert task.model_score.value == pytest.approx(MODEL_VALUE)
        assert not task.HasField("review") and task.reviewer_user_id == ""
        assert task.submitted_at.seconds > 0 and not task.follow_up

    page = await queue(svc, owner.user_id, limit=1)
    assert [t.answer_id for t in page.tasks] == [ids[2]] and page.pending == 2


async def test_owner_filter_and_sessions_without_an_interview(svc: Svc, scorer: FakeScorer, pg: asyncpg.Connection) -> None:
    mine, theirs = await new_user(svc, "Mine"), await new_user(svc, "Theirs")
    _, my_sid, my_first = await interview(svc, mine)
    _, their_sid, their_first = await interview(svc, theirs)
    flag_next(scorer, 0.3, 0.3, 0.3)
    [my_answer] = await answer(svc, my_sid, [my_first], 1)
    [their_answer] = await answer(svc, their_sid, [their_first], 1)
    direct = await svc.sessions.StartInterview(pb.StartInterviewRequest(candidate_name="Direct Caller"))
    [direct_answer] = await answer(svc, direct.session.session_id, [direct.question], 1)

    assert [t.answer_id for t in (await queue(svc, mine.user_id)).tasks] == [my_answer]
    assert [t.answer_id for t in (await queue(svc, theirs.user_id)).tasks] == [their_answer]
    everyone = {t.answer_id: t for t in (await queue(svc, limit=500)).tasks}
    assert {my_answer, their_answer, direct_answer} <= everyone.keys()
    assert everyone[direct_answer].interview_id == "" and everyone[direct_answer].candidate_name == "Direct Caller"

    before = await stored_counts(pg)
    refused = await rpc_error(review(svc, their_answer, mine, 1.0, owner=mine.user_id))
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    # A session without an interview belongs to no owner either.
    refused = await rpc_error(review(svc, direct_answer, mine, 1.0, owner=mine.user_id))
    assert refused.code() == grpc.StatusCode.NOT_FOUND
    assert await stored_counts(pg) == before
    assert [t.answer_id for t in (await queue(svc, theirs.user_id)).tasks] == [their_answer]


async def test_a_review_becomes_the_current_score(svc: Svc, scorer: FakeScorer, pg: asyncpg.Connection) -> None:
    owner, reviewer = await new_user(svc, "Owner"), await new_user(svc, "Rita Reviewer")
    interview_id, sid, first = await interview(svc, owner)
    flag_next(scorer, 0.31)
    submitted = await submit(svc.sessions, sid, first, key="the-first-answer")
    answer_id = submitted.answer_id
    model_score_id = await pg.fetchval("SELECT max(score_id) FROM scores WHERE answer_id = $1", uuid.UUID(answer_id))
    assert (await svc.interviews.GetInterview(apb.InterviewRequest(interview_id=interview_id))).answers_needing_review == 1

    task = await review(svc, answer_id, reviewer, 0.9, comment="  Right idea, explained well.  ", owner=owner.user_id)

    grade = task.review
    assert grade.value == pytest.approx(0.9) and grade.confidence == 1.0 and not grade.needs_review
    assert list(grade.signals) == ["human.review"] and len(grade.criteria) == 0
    assert grade.feedback == "Right idea, explained well."
    assert (grade.provenance.backend, grade.provenance.model_name) == ("human", "")
    assert grade.provenance.code_version.startswith("xlinterview ")
    # The candidate's views show the current score: nothing in it is for staff only.
    assert list(grade.evidence) == ["graded by a reviewer", "the scorer gave 0.40 with confidence 0.31 (fake:1)"]
    assert not any("Rita" in line or "unsure" in line for line in [*grade.evidence, grade.feedback])
    assert task.model_score.value == pytest.approx(MODEL_VALUE) and list(task.model_score.signals) == ["test.fake_scorer"]
    assert task.reviewer_user_id == reviewer.user_id and task.reviewed_at.seconds > 0

    session = await svc.sessions.GetSession(pb.GetSessionRequest(session_id=sid))
    [turn] = [t for t in session.turns if t.answer_id == answer_id]
    assert turn.score == grade
    assert all(t.answer_id != answer_id for t in (await queue(svc, owner.user_id)).tasks)
    # A retry with the submission's key still returns the first result.
    replayed = await submit(svc.sessions, sid, first, key="the-first-answer")
    assert replayed.answer_id == answer_id and replayed.score == submitted.score != grade
    assert (await svc.interviews.GetInterview(apb.InterviewRequest(interview_id=interview_id))).answers_needing_review == 0

    row = await pg.fetchrow("SELECT * FROM reviews WHERE answer_id = $1", uuid.UUID(answer_id))
    assert row["reviewed_score_id"] == model_score_id and row["score_id"] > model_score_id
    assert row["reviewer_user_id"] == uuid.UUID(reviewer.user_id) and row["comment"] == "Right idea, explained well."
    assert await pg.fetchval("SELECT backend FROM scores WHERE score_id = $1", row["score_id"]) == "human"
    # The first score stays the model's: a review is a later score, not a first one.
    assert await pg.fetchval("SELECT count(*) FROM first_scores WHERE answer_id = $1", uuid.UUID(answer_id)) == 1
    detail = json.loads(
        await pg.fetchval(
            "SELECT detail FROM audit_log WHERE event = 'answer_reviewed' AND session_id = $1", uuid.UUID(sid)
        )
    )
    assert detail == {
        "answer_id": answer_id,
        "reviewer_user_id": reviewer.user_id,
        "value": 0.9,
        "previous_value": pytest.approx(MODEL_VALUE),
        "model_value": pytest.approx(MODEL_VALUE),
    }
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await pg.execute("DELETE FROM reviews WHERE review_id = $1", row["review_id"])


async def test_a_review_changes_a_finished_interviews_result(svc: Svc, scorer: FakeScorer, pg: asyncpg.Connection) -> None:
    owner, reviewer = await new_user(svc, "Owner"), await new_user(svc, "Reviewer")
    _, sid, first = await interview(svc, owner)
    flag_next(scorer, 0.2, 0.2, 0.2, value=0.0)
    ids = await answer(svc, sid, [first], 3)
    await svc.sessions.FinishInterview(pb.FinishInterviewRequest(session_id=sid))
    before = await svc.sessions.GetSession(pb.GetSessionRequest(session_id=sid))
    results_before = await pg.fetchval("SELECT count(*) FROM results WHERE session_id = $1", uuid.UUID(sid))

    await review(svc, ids[0], reviewer, 1.0)

    after = await svc.sessions.GetSession(pb.GetSessionRequest(session_id=sid))
    assert after.result.ability > before.result.ability + 0.1
    assert after.result.answers_scored == before.result.answers_scored == 3
    assert after.overall_score == pytest.approx(1 / 3)
    assert await pg.fetchval("SELECT count(*) FROM results WHERE session_id = $1", uuid.UUID(sid)) == results_before + 1


async def test_bad_reviews_are_refused_and_nothing_is_stored(svc: Svc, scorer: FakeScorer, pg: asyncpg.Connection) -> None:
    reviewer = await new_user(svc, "Reviewer")
    _, sid, first = await interview(svc, await new_user(svc, "Owner"))
    flag_next(scorer, 0.3)
    questions = [first]
    [answer_id] = await answer(svc, sid, questions, 1)
    scorer.mode = "unavailable"
    unscored = await rpc_error(submit(svc.sessions, sid, questions[-1]))
    assert unscored.code() == grpc.StatusCode.UNAVAILABLE
    scorer.mode = "ok"
    unscored_id = await pg.fetchval(
        "SELECT a.answer_id::text FROM answers a WHERE a.session_id = $1"
        " AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.answer_id = a.answer_id)",
        uuid.UUID(sid),
    )
    before = await stored_counts(pg)

    def request(**fields: object) -> apb.SubmitReviewRequest:
        values: dict[str, object] = {"answer_id": answer_id, "reviewer_user_id": reviewer.user_id, "value": 0.5}
        values.update(fields)
        return apb.SubmitReviewRequest(**values)  # type: ignore[arg-type]

    cases = [
        (request(answer_id="not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT, "answer_id"),
        (request(answer_id=""), grpc.StatusCode.INVALID_ARGUMENT, "answer_id"),
        (request(reviewer_user_id="nobody"), grpc.StatusCode.INVALID_ARGUMENT, "reviewer_user_id"),
        (request(owner_user_id="x"), grpc.StatusCode.INVALID_ARGUMENT, "owner_user_id"),
        (request(value=1.5), grpc.StatusCode.INVALID_ARGUMENT, "value"),
        (request(value=-0.01), grpc.StatusCode.INVALID_ARGUMENT, "value"),
        (request(value=math.nan), grpc.StatusCode.INVALID_ARGUMENT, "value"),
        (request(value=math.inf), grpc.StatusCode.INVALID_ARGUMENT, "value"),
        (request(comment="x" * 2001), grpc.StatusCode.INVALID_ARGUMENT, "comment"),
        (request(answer_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, "no answer"),
        (request(reviewer_user_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND, "no user"),
        (request(answer_id=unscored_id), grpc.StatusCode.FAILED_PRECONDITION, "no score yet"),
    ]
    for bad, code, words in cases:
        error = await rpc_error(svc.reviews.SubmitReview(bad))
        assert (error.code(), words in error.details()) == (code, True), (bad, error.details())
    for limit in (-1, 501):
        error = await rpc_error(queue(svc, limit=limit))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in error.details()
    assert (await rpc_error(queue(svc, owner="x"))).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await stored_counts(pg) == before
    # The longest comment allowed is accepted.
    assert (await svc.reviews.SubmitReview(request(comment="y" * 2000))).review.feedback == "y" * 2000


async def test_a_second_review_replaces_the_first(svc: Svc, scorer: FakeScorer, pg: asyncpg.Connection) -> None:
    first_reviewer, second_reviewer = await new_user(svc, "First"), await new_user(svc, "Second")
    _, sid, first = await interview(svc, await new_user(svc, "Owner"))
    flag_next(scorer, 0.25)
    [answer_id] = await answer(svc, sid, [first], 1)
    model_score_id = await pg.fetchval("SELECT max(score_id) FROM scores WHERE answer_id = $1", uuid.UUID(answer_id))

    await review(svc, answer_id, first_reviewer, 0.9, comment="generous")
    task = await review(svc, answer_id, second_reviewer, 0.1)

    assert task.review.value == pytest.approx(0.1) and task.reviewer_user_id == second_reviewer.user_id
    # No comment: the model's feedback stays; the model's score is still the one checked.
    assert task.review.feedback == task.model_score.feedback == f"fake feedback for {task.item_id}"
    assert task.model_score.value == pytest.approx(MODEL_VALUE) and task.model_score.needs_review
    session = await svc.sessions.GetSession(pb.GetSessionRequest(session_id=sid))
    assert [t.score.value for t in session.turns if t.answer_id == answer_id] == [pytest.approx(0.1)]
    rows = await pg.fetch("SELECT * FROM reviews WHERE answer_id = $1 ORDER BY review_id", uuid.UUID(answer_id))
    assert [r["reviewed_score_id"] for r in rows] == [model_score_id, model_score_id]
    assert [r["reviewer_user_id"] for r in rows] == [uuid.UUID(first_reviewer.user_id), uuid.UUID(second_reviewer.user_id)]
    previous = await pg.fetch(
        "SELECT detail->>'previous_value' AS v FROM audit_log WHERE event = 'answer_reviewed' AND session_id = $1 ORDER BY id",
        uuid.UUID(sid),
    )
    assert [float(r["v"]) for r in previous] == [pytest.approx(MODEL_VALUE), pytest.approx(0.9)]


async def test_a_follow_up_is_reviewed_with_its_own_prompt_and_both_answers(svc: Svc, scorer: FakeScorer) -> None:
    def grade(request):  # type: ignore[no-untyped-def]
        # Free text misses every criterion (so it gets a follow-up) and is flagged.
        if request.item.kind != FREE_TEXT:
            return None
        criteria = [common_pb2.CriterionResult(name=c.name, met=False, weight=c.weight) for c in request.item.rubric.criteria]
        return common_pb2.Score(value=0.2, confidence=0.05, criteria=criteria, needs_review=True, review_reason="unsure")

    for _ in range(10):
        started = await svc.sessions.StartInterview(pb.StartInterviewRequest(candidate_name="Follow Up"))
        sid, current = started.session.session_id, started.question
        while not _worth_a_follow_up(current):
            response = await submit(svc.sessions, sid, current)
            if response.finished:
                break
            current = response.next_question
        if _worth_a_follow_up(current):
            break
    else:
        pytest.fail("no session asked a free-text question worth a follow-up")
    scorer.grade = grade
    original = f"An absolute reference stays put ({uuid.uuid4().hex})."
    response = await submit(svc.sessions, sid, current, original)
    follow_up = response.next_question
    assert follow_up.follow_up, "a missed criterion gets a follow-up"
    reply = "It is written with dollar signs."
    follow_up_id = (await submit(svc.sessions, sid, follow_up, reply)).answer_id

    tasks = {t.answer_id: t for t in (await queue(svc, limit=500)).tasks}
    task = tasks[follow_up_id]
    assert task.follow_up and task.prompt == follow_up.prompt != current.prompt
    assert task.item_id == current.item_id and task.kind == FREE_TEXT
    # What the scorer graded, and what the reviewer's grade replaces: both answers together.
    assert task.answer == f"{original}\n\n{reply}"
    assert list(task.references) == expected_references(current.item_id)


def _worth_a_follow_up(question: pb.Question) -> bool:
    """Free text with a criterion heavy enough for a follow-up (the default threshold)."""
    item = BANK.get(question.item_id)
    return isinstance(item, FreeTextItem) and any(c.weight >= 0.3 for c in item.rubric.criteria)


async def reach_questions(svc: Svc, kinds: set[int]) -> dict[int, tuple[str, pb.Question, str]]:
    """Answers questions of fresh direct sessions until one of each kind in ``kinds`` is
    answered; by kind: (answer_id, question, answer text). Free text gets a unique answer."""
    found: dict[int, tuple[str, pb.Question, str]] = {}
    for _ in range(10):
        started = await svc.sessions.StartInterview(pb.StartInterviewRequest(candidate_name="Export Candidate"))
        sid, question = started.session.session_id, started.question
        for _ in range(12):
            text = good_answer(question)
            if question.kind == FREE_TEXT:
                text = f"{text} (export {uuid.uuid4().hex})"
            response = await submit(svc.sessions, sid, question, text)
            if question.kind in kinds and question.kind not in found:
                found[question.kind] = (response.answer_id, question, text)
            if found.keys() == kinds or response.finished:
                break
            question = response.next_question
        if found.keys() == kinds:
            return found
    pytest.fail(f"no session asked questions of kinds {kinds}")


async def test_export_writes_the_newest_reviews_of_free_text_as_training_data(
    svc: Svc, scorer: FakeScorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reviewer = await new_user(svc, "Reviewer")
    found = await reach_questions(svc, {FREE_TEXT, FORMULA})
    text_id, text_question, text = found[FREE_TEXT]
    formula_id, formula_question, _ = found[FORMULA]
    await review(svc, text_id, reviewer, 0.2)
    await review(svc, text_id, reviewer, 0.7)  # the newest review counts
    await review(svc, formula_id, reviewer, 1.0)

    out = tmp_path / "reviews.jsonl"
    monkeypatch.setenv("DATABASE_URL", svc.database_url)
    status = await asyncio.to_thread(export_reviews.main, ["--out", str(out)])
    assert status == 0 and "reviewed answers" in capsys.readouterr().out

    data = load_jsonl_files([out])
    qid = f"{text_question.item_id}@v{text_question.item_version}"
    item = BANK[text_question.item_id]
    assert isinstance(item, FreeTextItem)
    question = data.questions[qid]
    assert question.group == item.id and question.prompt == " ".join(item.prompt.split())
    assert [c[0] for c in question.criteria] == [c.name for c in item.rubric.criteria]
    assert len(question.references) == len(item.rubric.reference_answers)
    mine = [a for a in data.answers if a.text == text]
    assert [(a.qid, a.grade) for a in mine] == [(qid, pytest.approx(3.5))]
    assert not any(q.startswith(f"{formula_question.item_id}@") for q in data.questions)
    assert all(q.rsplit("@v", 1)[0] in BANK and isinstance(BANK[q.rsplit("@v", 1)[0]], FreeTextItem) for q in data.questions)


def test_export_says_when_postgresql_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert export_reviews.main(["--out", str(tmp_path / "x.jsonl")]) == 1
    assert "cannot export" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_a_grade_over_a_rule_names_the_rule_that_scored() -> None:
    guarded = common_pb2.Score(
        value=0.0,
        confidence=1.0,
        feedback="This does not look like English.",
        signals=["guard:non_english"],
        provenance=common_pb2.ScoreProvenance(backend="rule"),
        needs_review=True,
        review_reason="the non-english rule zeroed it; a person should confirm",
    )
    grade = reviewer_grade(guarded, 0.6, "", "explain-lookup@v1")
    assert list(grade.evidence) == ["graded by a reviewer", "the scorer gave 0.00 with confidence 1.00 (guard:non_english)"]
    # No comment: the scorer's feedback stays; nothing about the flag goes with the grade.
    assert grade.feedback == "This does not look like English." and "non-english rule" not in str(grade)
    assert grade.provenance.rubric_version == "explain-lookup@v1" and not grade.needs_review
