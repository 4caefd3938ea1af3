"""Numeric questions through the real orchestrator: shown with their unit, non-numbers
refused before anything is stored, numbers stored and sent to the scorer with the spec."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest

from orch_helpers import FakeScorer, running_orchestrator
from xlinterview.v1 import common_pb2, orchestrator_pb2 as pb

NUMERIC_BANK = """\
items:
  - id: pmt-car-loan-test
    kind: numeric
    skill_area: dates_financial
    difficulty: 3
    prompt: What does =PMT(5%/12,36,20000) return? Give two decimal places.
    numeric:
      expected: -599.42
      absolute_tolerance: 0.005
      unit: USD
      decimals: 2
  - id: leap-days-test
    kind: numeric
    skill_area: dates_financial
    difficulty: 3
    prompt: What does =DATE(2024,3,1)-DATE(2024,2,1) return?
    numeric:
      expected: 29
      unit: days
"""


async def stored_answers(database_url: str, session_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT answer FROM answers WHERE session_id = $1", uuid.UUID(session_id))
    finally:
        await conn.close()
    return [r["answer"] for r in rows]


async def test_non_numbers_are_refused_before_they_are_stored(  # type: ignore[no-untyped-def]
    tmp_path: Path, fresh_database: str, make_settings, scorer: FakeScorer
) -> None:
    (tmp_path / "numeric.yaml").write_text(textwrap.dedent(NUMERIC_BANK), encoding="utf-8")
    settings = make_settings(database_url=fresh_database, bank_dir=tmp_path, cat_max_items=2, cat_min_items=1)
    async with running_orchestrator(settings) as (_, stub):
        started = await stub.StartInterview(pb.StartInterviewRequest(candidate_name="Grace Hopper"))
        sid, question = started.session.session_id, started.question
        assert question.kind == common_pb2.QUESTION_KIND_NUMERIC
        assert question.unit in ("USD", "days")

        def submit(answer: str, key: str):  # type: ignore[no-untyped-def]
            return stub.SubmitAnswer(
                pb.SubmitAnswerRequest(session_id=sid, item_id=question.item_id, answer=answer, idempotency_key=key)
            )

        for bad, needle in [("about 600", "not a number"), ("3,5", "decimal comma"), ("=PMT(1,2,3)", "formula")]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await submit(bad, f"bad-{bad}")
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "a numeric answer must be a number" in caught.value.details() and needle in caught.value.details()
        assert await stored_answers(fresh_database, sid) == []
        assert scorer.requests == []

        # Typed the lenient way; stored exactly as typed, graded by the scorer from the spec.
        answer = f"-$599.42 {question.unit}" if question.unit == "USD" else "29 days"
        result = await submit(answer, "good")
        assert result.score.value == pytest.approx(0.75)  # the fake scorer's value
        assert await stored_answers(fresh_database, sid) == [answer]
        (request,) = scorer.requests
        assert request.item.kind == common_pb2.QUESTION_KIND_NUMERIC
        assert request.item.numeric.expected in (-599.42, 29.0)
        assert result.next_question.kind == common_pb2.QUESTION_KIND_NUMERIC
        assert result.next_question.item_id != question.item_id
        if result.next_question.unit == "USD":
            assert result.next_question.decimals == 2
        else:
            assert not result.next_question.HasField("decimals")
