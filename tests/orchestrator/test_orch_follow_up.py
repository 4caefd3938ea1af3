"""Follow-up questions: one per free-text item whose answer missed an important rubric
criterion, on the real orchestrator (PostgreSQL, Redis) with the fake scorer grading."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from pydantic import ValidationError

from orch_helpers import FakeScorer, count_rows, good_answer, rpc_error, running_orchestrator, start, submit
from orchestrator.adaptive import (
    GUARD_SIGNAL_PREFIX,
    AdaptiveEngine,
    CatRules,
    follow_up_credit,
    missed_criterion,
    score_category,
)
from orchestrator.bank import BankError, FreeTextItem, ItemVersion, follow_up_prompt, load_bank, parse_item
from orchestrator.db import AnswerRow, ItemRef, SessionRow, Turn
from orchestrator.settings import DEFAULT_BANK_DIR, OrchestratorSettings
from orchestrator.state import SessionStateStore
from scorer.guards import GUARD_SIGNAL_PREFIX as SCORER_GUARD_PREFIX
from xlinterview.v1 import common_pb2, orchestrator_pb2 as pb
from xlinterview.v1 import scorer_pb2

BANK = {item.id: item for item in load_bank(DEFAULT_BANK_DIR)}
FREE_TEXT = common_pb2.QUESTION_KIND_FREE_TEXT
ORIGINAL = "An absolute reference stays put when the formula is copied."
FOLLOW_UP = "It is written with dollar signs."

Grade = Callable[[scorer_pb2.ScoreRequest], common_pb2.Score | None]


def grader(original: float, combined: float, signals: tuple[str, ...] = ()) -> Grade:
    """Free-text answers miss every rubric criterion, scoring ``original`` alone and
    ``combined`` when graded with a follow-up (told apart by :data:`FOLLOW_UP`)."""

    def grade(request: scorer_pb2.ScoreRequest) -> common_pb2.Score | None:
        if request.item.kind != FREE_TEXT:
            return None
        value = combined if FOLLOW_UP in request.answer.text else original
        criteria = [
            common_pb2.CriterionResult(name=c.name, met=False, weight=c.weight) for c in request.item.rubric.criteria
        ]
        return common_pb2.Score(value=value, criteria=criteria, signals=list(signals))

    return grade


def expected_follow_up(item_id: str, min_weight: float = 0.3) -> str:
    """The prompt the documented rule picks: the heaviest criterion at or above the threshold."""
    item = BANK[item_id]
    assert isinstance(item, FreeTextItem)
    heavy = [c for c in item.rubric.criteria if c.weight >= min_weight]
    assert heavy, f"{item_id} has no criterion worth a follow-up"
    best = max(heavy, key=lambda c: c.weight)
    return follow_up_prompt(item, best.name)


def worth_a_follow_up(question: pb.Question, min_weight: float = 0.3) -> bool:
    """Free text whose rubric has a criterion heavy enough for a follow-up (not all do)."""
    item = BANK.get(question.item_id)
    return (
        question.kind == FREE_TEXT
        and isinstance(item, FreeTextItem)
        and any(c.weight >= min_weight for c in item.rubric.criteria)
    )


async def reach_free_text(stub) -> tuple[str, pb.Question]:  # type: ignore[no-untyped-def]
    """A session whose current question is free text worth a follow-up, and that question
    (the engine picks the items, so fresh sessions are answered until one asks one)."""
    for _ in range(10):
        started = await start(stub)
        sid, question = started.session.session_id, started.question
        while not worth_a_follow_up(question):
            result = await submit(stub, sid, question)
            if result.finished:
                break
            question = result.next_question
        if worth_a_follow_up(question):
            return sid, question
    pytest.fail("no session asked a free-text question worth a follow-up")


async def session_items(pg: asyncpg.Connection, sid: str) -> list[dict]:
    raw = await pg.fetchval("SELECT items FROM sessions WHERE session_id = $1", uuid.UUID(sid))
    return json.loads(raw) if isinstance(raw, str) else raw


async def test_missed_criterion_gets_one_follow_up(stub, scorer: FakeScorer, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    sid, question = await reach_free_text(stub)
    scorer.grade = grader(original=0.2, combined=0.4)
    first = await submit(stub, sid, question, answer=ORIGINAL, key="original")

    follow_up = first.next_question
    assert follow_up.follow_up and follow_up.kind == FREE_TEXT
    assert follow_up.item_id == question.item_id + "#follow-up"
    assert (follow_up.follow_up_of_item_id, follow_up.item_version) == (question.item_id, question.item_version)
    assert follow_up.prompt == expected_follow_up(question.item_id)
    assert follow_up.original_prompt == question.prompt
    # It shares the original's number and does not grow the interview.
    assert (follow_up.position, follow_up.total) == (question.position, question.total)
    assert await stub.GetCurrentQuestion(pb.GetCurrentQuestionRequest(session_id=sid)) == follow_up

    # A replay returns the same follow-up; a stale answer to the original is refused.
    assert await submit(stub, sid, question, answer=ORIGINAL, key="original") == first
    answered = await count_rows(pg, sid)
    err = await rpc_error(submit(stub, sid, question, answer=ORIGINAL))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and follow_up.item_id in err.details()
    assert await count_rows(pg, sid) == answered

    # The follow-up is its own turn, graded with the original against the same rubric.
    second = await submit(stub, sid, follow_up, answer=FOLLOW_UP)
    sent = scorer.requests[-1]
    assert sent.answer.text == f"{ORIGINAL}\n\n{FOLLOW_UP}"
    assert sent.item.item_id == question.item_id and sent.item.HasField("rubric")
    assert second.score.value == 0.4
    # Missed again: no second follow-up on the item.
    if not second.finished:
        nxt = second.next_question
        assert not nxt.follow_up and nxt.item_id != question.item_id
        assert nxt.position == question.position + 1

    answers = await pg.fetch(
        "SELECT item_id, position, answer FROM answers WHERE session_id = $1 ORDER BY position", uuid.UUID(sid)
    )
    assert [a["position"] for a in answers] == list(range(len(answers)))
    assert [(a["item_id"], a["answer"]) for a in answers[-2:]] == [(question.item_id, ORIGINAL), (question.item_id, FOLLOW_UP)]
    entries = await session_items(pg, sid)
    original_at = len(answers) - 2
    assert entries[original_at] == {"item_id": question.item_id, "version": question.item_version}
    assert entries[original_at + 1]["follow_up_of"] == original_at
    assert "criterion" in entries[original_at + 1]

    session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
    assert [t.follow_up for t in session.turns[-2:]] == [False, True]
    assert session.turns[-1].prompt == follow_up.prompt
    # One value per question: the follow-up's 0.4 is not averaged in as a question of its own.
    questions = [t.score.value for t in session.turns if not t.follow_up]
    assert session.overall_score == pytest.approx(sum(questions) / len(questions))
    finished = await stub.FinishInterview(pb.FinishInterviewRequest(session_id=sid))
    # The follow-up is part of its item's response, not an item of its own.
    assert finished.result.answers_scored == len(answers) - 1


async def test_long_answers_are_combined_within_the_answer_limit(stub, scorer: FakeScorer) -> None:  # type: ignore[no-untyped-def]
    # The fixture allows 2000 characters; each answer fits, both together would not.
    sid, question = await reach_free_text(stub)
    scorer.grade = grader(original=0.2, combined=0.5)
    follow_up = (await submit(stub, sid, question, answer="o" * 1500)).next_question
    answer = FOLLOW_UP + " " + "f" * 900
    result = await submit(stub, sid, follow_up, answer=answer)
    sent = scorer.requests[-1].answer.text
    assert len(sent) == 2000 and sent.endswith("\n\n" + answer) and sent.startswith("o")
    assert result.score.value == 0.5


async def test_guarded_answer_gets_no_follow_up(stub, scorer: FakeScorer) -> None:  # type: ignore[no-untyped-def]
    sid, question = await reach_free_text(stub)
    scorer.grade = grader(original=0.0, combined=0.0, signals=("guard:gibberish",))
    result = await submit(stub, sid, question, answer="asdf qwer zxcv")
    assert result.finished or not result.next_question.follow_up


async def test_follow_ups_can_be_turned_off(make_settings, scorer: FakeScorer) -> None:  # type: ignore[no-untyped-def]
    async with running_orchestrator(make_settings(follow_up_min_weight=0)) as (_, stub):
        sid, question = await reach_free_text(stub)
        scorer.grade = grader(original=0.2, combined=0.2)
        result = await submit(stub, sid, question, answer=ORIGINAL)
        assert result.finished or not result.next_question.follow_up


async def test_restart_resumes_at_the_follow_up(make_settings, scorer: FakeScorer, redis_client) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    async with running_orchestrator(settings) as (_, stub):
        sid, question = await reach_free_text(stub)
        scorer.grade = grader(original=0.2, combined=0.9)
        follow_up = (await submit(stub, sid, question, answer=ORIGINAL)).next_question
        assert follow_up.follow_up, (question, follow_up, scorer.requests[-1])
    async with running_orchestrator(settings) as (_, stub):
        current = pb.GetCurrentQuestionRequest(session_id=sid)
        assert await stub.GetCurrentQuestion(current) == follow_up  # from the Redis cache
        await redis_client.delete(SessionStateStore.key(uuid.UUID(sid)))
        assert await stub.GetCurrentQuestion(current) == follow_up  # rebuilt from PostgreSQL
        result = await submit(stub, sid, follow_up, answer=FOLLOW_UP)
        assert scorer.requests[-1].answer.text == f"{ORIGINAL}\n\n{FOLLOW_UP}"
        assert result.score.value == 0.9 and not result.next_question.follow_up


# -- the rules, without a server ---------------------------------------------------


def test_guard_prefix_matches_the_scorer() -> None:
    assert GUARD_SIGNAL_PREFIX == SCORER_GUARD_PREFIX


FREE_ITEM = parse_item(
    {
        "id": "why-absolute",
        "kind": "free_text",
        "skill_area": "formulas_functions",
        "difficulty": 3,
        "prompt": "Why would you use an absolute reference?",
        "rubric": {
            "reference_answers": ["It stays fixed when copied; written with $."],
            "criteria": [
                {"name": "stays_fixed", "terms": ["fixed"], "weight": 0.4},
                {"name": "dollar_sign", "terms": ["$"], "weight": 0.4, "follow_up": "How do you write one?"},
                {"name": "f4_shortcut", "terms": ["F4"], "weight": 0.2},
            ],
        },
    }
)


def scored(*unmet: str, signals: tuple[str, ...] = ()) -> common_pb2.Score:
    assert isinstance(FREE_ITEM, FreeTextItem)
    return common_pb2.Score(
        value=0.3,
        criteria=[common_pb2.CriterionResult(name=c.name, met=c.name not in unmet) for c in FREE_ITEM.rubric.criteria],
        signals=list(signals),
    )


def test_which_criterion_is_followed_up() -> None:
    def picked(score: common_pb2.Score, weight: float = 0.3) -> str | None:
        criterion = missed_criterion(FREE_ITEM, score, weight)
        return criterion.name if criterion else None

    assert picked(scored("f4_shortcut", "dollar_sign")) == "dollar_sign"
    assert picked(scored("stays_fixed", "dollar_sign")) == "stays_fixed"  # heaviest, then rubric order
    assert picked(scored("f4_shortcut")) is None  # below the threshold
    assert picked(scored("f4_shortcut"), 0.2) == "f4_shortcut"
    assert picked(scored("stays_fixed"), 0) is None  # 0 turns follow-ups off
    assert picked(scored("stays_fixed", signals=("guard:off_topic",))) is None
    assert picked(common_pb2.Score(value=0.0)) is None  # no criteria reported: nothing to ask about
    assert follow_up_prompt(FREE_ITEM, "dollar_sign") == "How do you write one?"
    assert '"stays fixed"' in follow_up_prompt(FREE_ITEM, "stays_fixed")


def test_unauthored_follow_up_keeps_the_stored_content() -> None:
    # Stored items predate the field: their content must not change (no new versions).
    assert all("follow_up" not in c for c in FREE_ITEM.content()["spec"]["criteria"][:1])
    assert FREE_ITEM.content()["spec"]["criteria"][1]["follow_up"] == "How do you write one?"


def test_follow_up_credit_counts_half_in_the_estimate() -> None:
    assert follow_up_credit(0.2, 1.0) == pytest.approx(0.6)
    assert follow_up_credit(0.8, 0.5) == 0.8  # a weaker combined answer takes nothing away
    engine = AdaptiveEngine([ItemVersion(FREE_ITEM, 1), *(ItemVersion(i, 1) for i in BANK.values())], CatRules())
    ref = ItemRef(FREE_ITEM.id, 1)
    now = datetime.now(UTC)

    def session(items: tuple[ItemRef, ...], values: list[float], max_items: int = 12) -> tuple[SessionRow, list[Turn]]:
        row = SessionRow(uuid.uuid4(), "x", "in_progress", items, len(items), now, None, cat_seed=7, max_items=max_items)
        turns = [
            Turn(AnswerRow(uuid.uuid4(), row.session_id, r.item_id, 1, p, "a", "k", now), common_pb2.Score(value=v))
            for p, (r, v) in enumerate(zip(items, values))
        ]
        return row, turns

    follow_up = ItemRef(FREE_ITEM.id, 1, follow_up_of=0, criterion="dollar_sign")
    with_follow_up = engine.result(*session((ref, follow_up), [0.2, 1.0]))
    as_documented = engine.result(*session((ref,), [0.6]))
    without = engine.result(*session((ref,), [0.2]))
    assert score_category(FREE_ITEM, 0.6) != score_category(FREE_ITEM, 0.2)  # the rule matters here
    assert with_follow_up.answers_scored == 1
    assert with_follow_up.ability == pytest.approx(as_documented.ability)
    assert with_follow_up.ability > without.ability
    # A follow-up is not an item toward max_items.
    assert engine.decide(*session((ref, follow_up), [0.2, 1.0], max_items=2))[0] is not None
    assert engine.decide(*session((ref, ItemRef(next(iter(BANK)), 1)), [0.2, 1.0], max_items=2)) == (None, "max_items")


def test_bad_authored_follow_up_is_a_clear_bank_error() -> None:
    data = FREE_ITEM.model_dump(mode="json")
    data["rubric"]["criteria"][0]["follow_up"] = "Why?"
    with pytest.raises(BankError, match=r"rubric\.criteria\[0\]\.follow_up"):
        parse_item(data, "bank/x.yaml")


def test_follow_up_threshold_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OrchestratorSettings().follow_up_min_weight == 0.3
    monkeypatch.setenv("XLI_FOLLOW_UP_MIN_WEIGHT", "0")
    assert OrchestratorSettings().follow_up_min_weight == 0
    monkeypatch.setenv("XLI_FOLLOW_UP_MIN_WEIGHT", "1.5")
    with pytest.raises(ValidationError):
        OrchestratorSettings()
