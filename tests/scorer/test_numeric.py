"""Numeric answers through the real Scorer gRPC service: tolerance, lenient reading, refusals.

The scorer runs with Triton unreachable: a numeric answer is graded by a rule, so it
must score without any model (a model call would fail these tests with UNAVAILABLE).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import grpc
import pytest

from scorer_helpers import start_scorer
from stack.backing import free_port
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc


@pytest.fixture
async def scorer() -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    server, address, service = await start_scorer(f"127.0.0.1:{free_port()}", triton_deadline_s=1.0)
    async with grpc.aio.insecure_channel(address) as channel:
        yield scorer_pb2_grpc.ScorerStub(channel)
    await server.stop(None)
    await service.close()


def numeric_item(expected: float, unit: str = "", item_id: str = "num", **tolerance: float) -> common_pb2.ScoringItem:
    return common_pb2.ScoringItem(
        item_id=item_id,
        item_version=3,
        kind=common_pb2.QUESTION_KIND_NUMERIC,
        prompt="What does the formula return?",
        numeric=common_pb2.NumericSpec(expected=expected, unit=unit, **tolerance),
    )


async def score(scorer: scorer_pb2_grpc.ScorerStub, item: common_pb2.ScoringItem, text: str) -> common_pb2.Score:
    reply = await scorer.Score(
        scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id="a1", text=text)), timeout=10
    )
    assert reply.answer_id == "a1"
    return reply.score


async def test_right_and_wrong_numbers_are_a_rule_not_a_model(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    item = numeric_item(29, unit="days")
    right, wrong = await score(scorer, item, "29"), await score(scorer, item, "28")
    assert (right.value, wrong.value) == (1.0, 0.0)
    for graded in (right, wrong):
        assert list(graded.signals) == ["rule.numeric_tolerance"]
        assert graded.confidence == 1.0 and not graded.needs_review
        assert graded.provenance.backend == "rule"
        assert graded.provenance.model_name == "" and list(graded.provenance.models) == []
        assert graded.provenance.rubric_version == "num@v3"
    assert right.feedback == "Correct: 29 days."
    assert wrong.feedback == "Not quite: you gave 28 days; the answer is 29 days."
    assert [(c.name, c.met) for c in wrong.criteria] == [("correct value", False)]
    assert "expected 29 days, accepted exactly; yours is off by 1" in wrong.evidence


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.68", 1.0),
        ("2.685", 1.0),  # the upper edge counts (2.685 - 2.68 is exactly the tolerance)
        ("2.675", 1.0),  # and the lower edge
        ("2.6851", 0.0),
        ("2.6749", 0.0),
        ("2.67", 0.0),
        ("-2.68", 0.0),
    ],
)
async def test_absolute_tolerance_edges_are_inclusive(
    scorer: scorer_pb2_grpc.ScorerStub, text: str, value: float
) -> None:
    # In binary floating point 2.68 - 2.675 is 0.00500000000000034 > 0.005; the decimal
    # digits typed decide instead.
    graded = await score(scorer, numeric_item(2.68, absolute_tolerance=0.005), text)
    assert graded.value == value, (text, list(graded.evidence))


@pytest.mark.parametrize(
    ("text", "value"),
    [("1010", 1.0), ("990", 1.0), ("1010.01", 0.0), ("989.99", 0.0), ("1,000", 1.0)],
)
async def test_relative_tolerance_is_a_share_of_the_expected_value(
    scorer: scorer_pb2_grpc.ScorerStub, text: str, value: float
) -> None:
    graded = await score(scorer, numeric_item(1000, relative_tolerance=0.01), text)
    assert graded.value == value, text


async def test_the_larger_of_the_two_tolerances_applies(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    # 1% of 50 is 0.5; the absolute 2 is larger, so 52 is accepted and 52.5 is not.
    item = numeric_item(50, absolute_tolerance=2, relative_tolerance=0.01)
    assert (await score(scorer, item, "52")).value == 1.0
    assert (await score(scorer, item, "52.5")).value == 0.0
    # ... and the other way round: 1% of 5000 is 50 > 2.
    item = numeric_item(5000, absolute_tolerance=2, relative_tolerance=0.01)
    assert (await score(scorer, item, "5050")).value == 1.0
    assert (await score(scorer, item, "5050.5")).value == 0.0


async def test_without_a_tolerance_only_the_exact_value_counts(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    item = numeric_item(0.3)
    assert (await score(scorer, item, "0.3")).value == 1.0
    assert (await score(scorer, item, "0.30")).value == 1.0
    assert (await score(scorer, item, "0.30000000000000004")).value == 0.0


@pytest.mark.parametrize(
    ("text", "unit", "understood"),
    [
        ("$1,234.50", "", 'read your answer "$1,234.50" as 1234.5 (the currency sign "$" set aside; thousands separators set aside)'),
        ("  1 234.5  ", "", 'read your answer "1 234.5" as 1234.5 (thousands separators set aside)'),
        ("€1234.5", "", 'read your answer "€1234.5" as 1234.5 (the currency sign "€" set aside)'),
        ("1234.5 USD", "USD", 'read your answer "1234.5 USD" as 1234.5 (the unit "USD" set aside)'),
        ("123450%", "", 'read your answer "123450%" as 1234.5 (% read as hundredths, as in Excel)'),
        ("+1234.50", "", 'read your answer "+1234.50" as 1234.5'),
    ],
)
async def test_lenient_reading_is_explained_in_the_evidence(
    scorer: scorer_pb2_grpc.ScorerStub, text: str, unit: str, understood: str
) -> None:
    graded = await score(scorer, numeric_item(1234.5, unit=unit), text)
    assert graded.value == 1.0, list(graded.evidence)
    assert graded.evidence[0] == understood


async def test_negative_amounts_and_percent_units(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    payment = numeric_item(-599.42, absolute_tolerance=0.005)
    for text in ("-599.42", "-$599.42", "$-599.42", "(599.42)", "\u2212599.42"):
        assert (await score(scorer, payment, text)).value == 1.0, text
    assert (await score(scorer, payment, "599.42")).value == 0.0  # the sign matters
    # Without a % unit a trailing % means hundredths, as in Excel; with it, percent points.
    assert (await score(scorer, numeric_item(0.03), "3%")).value == 1.0
    in_percent = numeric_item(3, unit="%")
    assert (await score(scorer, in_percent, "3%")).value == 1.0
    assert (await score(scorer, in_percent, "3")).value == 1.0
    assert (await score(scorer, in_percent, "0.03")).value == 0.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("3,5", "decimal comma"),
        ("1.234,5", "decimal comma"),
        ("12,34,567", "comma may only separate thousands"),
        ("=ROUND(2.675,2)", "is a formula"),
        ("about 3", "not a number"),
        ("3 apples", "not a number"),
        ("1e99", "outside the range"),
        ("4 5", "not a number"),
    ],
)
async def test_text_that_is_not_a_number_is_invalid_argument(
    scorer: scorer_pb2_grpc.ScorerStub, text: str, needle: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await score(scorer, numeric_item(3.5), text)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (caught.value.details() or ""), caught.value.details()


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        (numeric_item(1, absolute_tolerance=-0.1), "numeric.absolute_tolerance must not be negative"),
        (numeric_item(1, relative_tolerance=-0.1), "numeric.relative_tolerance must not be negative"),
        (numeric_item(math.nan), "numeric.expected must be a finite number"),
        (numeric_item(1, absolute_tolerance=math.inf), "numeric.absolute_tolerance must be a finite number"),
        (
            common_pb2.ScoringItem(
                item_id="num", kind=common_pb2.QUESTION_KIND_NUMERIC, choice=common_pb2.ChoiceSpec(options=["1", "2"])
            ),
            "needs spec.numeric",
        ),
    ],
)
async def test_broken_numeric_items_are_invalid_argument(
    scorer: scorer_pb2_grpc.ScorerStub, item: common_pb2.ScoringItem, needle: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await score(scorer, item, "1")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (caught.value.details() or ""), caught.value.details()


async def test_stream_grades_numeric_batches_in_order(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    npv = numeric_item(4815.93, item_id="npv", absolute_tolerance=0.005)
    count = numeric_item(10, item_id="count")
    texts = ["4815.93", "4,815.93", "$4815.925", "4815.94", "4816"]

    async def batches() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        yield scorer_pb2.ScoreBatchRequest(
            batch_id="b1",
            item=npv,
            answers=[scorer_pb2.AnswerInput(answer_id=f"n{i}", text=t) for i, t in enumerate(texts)],
        )
        # Many answers in one message, as a bulk re-score sends them.
        yield scorer_pb2.ScoreBatchRequest(
            batch_id="b2",
            item=count,
            answers=[scorer_pb2.AnswerInput(answer_id=f"c{i}", text=str(i)) for i in range(200)],
        )

    replies = [reply async for reply in scorer.ScoreStream(batches(), timeout=30)]
    assert [r.batch_id for r in replies] == ["b1", "b2"]
    assert [r.answer_id for r in replies[0].results] == [f"n{i}" for i in range(len(texts))]
    assert [r.score.value for r in replies[0].results] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert [r.answer_id for r in replies[1].results] == [f"c{i}" for i in range(200)]
    assert [i for i, r in enumerate(replies[1].results) if r.score.value == 1.0] == [10]
    assert all(list(r.score.signals) == ["rule.numeric_tolerance"] for reply in replies for r in reply.results)


async def test_one_bad_number_in_a_stream_fails_the_stream_with_its_reason(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    async def batches() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        yield scorer_pb2.ScoreBatchRequest(
            batch_id="bad",
            item=numeric_item(1),
            answers=[scorer_pb2.AnswerInput(answer_id="ok", text="1"), scorer_pb2.AnswerInput(answer_id="x", text="one")],
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [reply async for reply in scorer.ScoreStream(batches(), timeout=30)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "answer 'x'" in (caught.value.details() or "")
