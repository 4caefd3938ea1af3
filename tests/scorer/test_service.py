"""The Scorer gRPC service against a real tritonserver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from scorer_helpers import start_scorer
from stack.backing import TritonServer, free_port
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc


@pytest.fixture
async def scorer(triton: TritonServer) -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    server, address, model = await start_scorer(triton.url)
    async with grpc.aio.insecure_channel(address) as channel:
        yield scorer_pb2_grpc.ScorerStub(channel)
    await server.stop(None)
    await model.close()


def answer(text: str, answer_id: str = "a1") -> scorer_pb2.AnswerInput:
    return scorer_pb2.AnswerInput(answer_id=answer_id, text=text)


async def test_correct_formula_scores_high_through_triton(
    scorer: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem
) -> None:
    right = await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer('=SUMIFS(C2:C5,A2:A5,"East")')))
    wrong = await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer("=SUM(C2:C5)")))
    constant = await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer("=15")))
    assert right.score.value > 0.9
    assert wrong.score.value < 0.3 and constant.score.value < 0.3
    assert right.score.provenance.backend == "triton"
    assert right.score.provenance.model_name == "answer_scorer" and right.score.provenance.model_version == "1"
    assert "triton.answer_scorer" in right.score.signals


async def test_free_text_coverage_orders_the_scores(
    scorer: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    good = await scorer.Score(
        scorer_pb2.ScoreRequest(
            item=text_item,
            answer=answer(
                "A relative reference changes when you copy the formula; an absolute reference such as $A$1 "
                "stays fixed because the dollar sign locks the row and the column."
            ),
        )
    )
    poor = await scorer.Score(scorer_pb2.ScoreRequest(item=text_item, answer=answer("Spreadsheets are useful.")))
    # The trained model (the default) is a regressor: a vague answer no guard stops lands
    # near its lowest grades rather than exactly 0.
    assert good.score.value > 0.8 > 0.25 > poor.score.value
    assert "model:answer_scorer_text@3" in good.score.signals
    assert all(c.met for c in good.score.criteria) and not any(c.met for c in poor.score.criteria)


async def test_stream_answers_each_batch_in_order(
    scorer: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem, choice_item: common_pb2.ScoringItem
) -> None:
    async def batches() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        yield scorer_pb2.ScoreBatchRequest(
            batch_id="b1",
            item=formula_item,
            answers=[answer('=SUMIFS(C2:C5,A2:A5,"East")', "x1"), answer("=SUM(C2:C5)", "x2"), answer("=C2+C4", "x3")],
        )
        yield scorer_pb2.ScoreBatchRequest(batch_id="b2", item=choice_item, answers=[answer("1", "y1")])

    replies = [reply async for reply in scorer.ScoreStream(batches())]
    assert [r.batch_id for r in replies] == ["b1", "b2"]
    assert [r.answer_id for r in replies[0].results] == ["x1", "x2", "x3"]
    values = [r.score.value for r in replies[0].results]
    assert values[0] > 0.9 and values[1] < 0.3 and values[2] > 0.9
    assert replies[1].results[0].score.provenance.backend == "rule"


async def test_a_stream_message_scores_each_answer_as_unary_score_does(
    scorer: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem
) -> None:
    # A large message is written straight into its response; unary calls are merged with
    # others and written one by one. The scores must not differ in any field.
    texts = ['=SUMIFS(C2:C5,A2:A5,"East")', "=SUM(C2:C5)", "=15", "=SUM(C2:C5", '=COUNTIF(A2:A5,"East")']
    many = [answer(texts[i % len(texts)] + "+0" * (i // len(texts)), f"s{i}") for i in range(80)]

    async def batches() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        yield scorer_pb2.ScoreBatchRequest(batch_id="big", item=formula_item, answers=many)

    (reply,) = [r async for r in scorer.ScoreStream(batches())]
    assert [r.answer_id for r in reply.results] == [a.answer_id for a in many]
    for index in (0, 1, 2, 3, 4, 79):
        single = await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=many[index]))
        assert single == reply.results[index]


async def test_a_repeated_formula_is_graded_once_and_scores_the_same(
    scorer: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem
) -> None:
    def hits() -> float:
        return REGISTRY.get_sample_value("xli_scorer_cache_lookups_total", {"cache": "formula", "result": "hit"}) or 0.0

    formula_item.item_id = "repeated-formula"  # an item no other test grades
    before = hits()
    first, again = [
        await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer("=C2+C4", answer_id)))
        for answer_id in ("first", "again")
    ]
    assert hits() == before + 1
    assert (first.answer_id, again.answer_id) == ("first", "again")
    assert first.score == again.score


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   ", "empty"), ("x" * 1001, "limit is 1000")],
)
async def test_bad_answers_are_invalid_argument(
    scorer: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem, text: str, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scorer.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer(text)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")


async def test_missing_item_is_invalid_argument(scorer: scorer_pb2_grpc.ScorerStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scorer.Score(scorer_pb2.ScoreRequest(answer=answer("=1")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_malformed_protobuf_is_rejected(triton: TritonServer) -> None:
    server, address, model = await start_scorer(triton.url)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            raw = channel.unary_unary("/xlinterview.v1.Scorer/Score")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await raw(b"\xff\xff\xff\xff garbage", timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed" in (caught.value.details() or "")
            # The server stays healthy for the next caller.
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)
        await model.close()


async def test_triton_unreachable_is_unavailable_not_a_fallback(formula_item: common_pb2.ScoringItem) -> None:
    server, address, model = await start_scorer(f"127.0.0.1:{free_port()}", triton_deadline_s=1.0)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scorer_pb2_grpc.ScorerStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Score(scorer_pb2.ScoreRequest(item=formula_item, answer=answer("=1")), timeout=10)
            assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert "Triton" in (caught.value.details() or "")
    finally:
        await server.stop(None)
        await model.close()


async def test_describe_models_and_reflection(scorer: scorer_pb2_grpc.ScorerStub, triton: TritonServer) -> None:
    described = await scorer.DescribeModels(scorer_pb2.DescribeModelsRequest())
    assert [(m.name, m.version, m.backend, m.ready) for m in described.models] == [
        ("answer_scorer", "1", "triton", True),
        ("sentence_encoder", "2", "triton", True),
        ("answer_scorer_text", "3", "triton", True),
        ("text_features", "2", "triton", True),
    ]
    server, address, model = await start_scorer(triton.url)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            names = set()
            async for reply in stub.ServerReflectionInfo(ask()):
                names |= {s.name for s in reply.list_services_response.service}
            assert "xlinterview.v1.Scorer" in names
    finally:
        await server.stop(None)
        await model.close()
