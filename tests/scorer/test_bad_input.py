"""Bad input gets a clean status with details, and the server stays healthy for others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scorer.service import ScorerService
from scorer_helpers import start_scorer
from stack.backing import TritonServer
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

SUMIFS = '=SUMIFS(C2:C5,A2:A5,"East")'


@pytest.fixture
async def served(triton: TritonServer) -> AsyncIterator[tuple[grpc.aio.Channel, ScorerService]]:
    server, address, service = await start_scorer(triton.url, max_message_bytes=256 * 1024)
    async with grpc.aio.insecure_channel(address) as channel:
        yield channel, service
    await server.stop(None)
    await service.close()


async def assert_serving(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_invalid_utf8_in_a_string_field_is_invalid_argument(
    served: tuple[grpc.aio.Channel, ScorerService], formula_item: common_pb2.ScoringItem
) -> None:
    channel, _ = served
    valid = scorer_pb2.ScoreRequest(item=formula_item, answer=scorer_pb2.AnswerInput(answer_id="a", text="=ZZ")).SerializeToString()
    # Same length, so every length prefix stays right; only the text's bytes turn invalid.
    raw = valid.replace(b"=ZZ", b"=\xff\xfe")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/xlinterview.v1.Scorer/Score")(raw, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in (caught.value.details() or "")
    await assert_serving(channel)


async def test_oversized_stream_message_is_resource_exhausted(
    served: tuple[grpc.aio.Channel, ScorerService], formula_item: common_pb2.ScoringItem
) -> None:
    channel, _ = served
    stub = scorer_pb2_grpc.ScorerStub(channel)
    answers = [scorer_pb2.AnswerInput(answer_id=str(i), text="=" + "1+" * 200 + "1") for i in range(1000)]

    async def one_huge() -> AsyncIterator[scorer_pb2.ScoreBatchRequest]:
        yield scorer_pb2.ScoreBatchRequest(batch_id="huge", item=formula_item, answers=answers)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.ScoreStream(one_huge(), timeout=10):
            pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (caught.value.details() or "")
    await assert_serving(channel)


async def test_unknown_model_version_is_not_found(
    served: tuple[grpc.aio.Channel, ScorerService], formula_item: common_pb2.ScoringItem
) -> None:
    channel, _ = served
    stub = scorer_pb2_grpc.ScorerStub(channel)
    request = scorer_pb2.ScoreRequest(item=formula_item, answer=scorer_pb2.AnswerInput(text=SUMIFS), model_version="7")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Score(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "answer_scorer" in (caught.value.details() or "")
    request.model_version = "1"
    reply = await stub.Score(request, timeout=5)
    assert reply.score.provenance.model_version == "1" and reply.score.value > 0.9


async def test_item_without_id_or_kind_is_invalid_argument(
    served: tuple[grpc.aio.Channel, ScorerService], formula_item: common_pb2.ScoringItem
) -> None:
    channel, _ = served
    stub = scorer_pb2_grpc.ScorerStub(channel)
    for broken in (common_pb2.ScoringItem(kind=common_pb2.QUESTION_KIND_FORMULA), common_pb2.ScoringItem(item_id="q")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Score(scorer_pb2.ScoreRequest(item=broken, answer=scorer_pb2.AnswerInput(text="=1")), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_stream_that_sends_without_reading_is_held_back(
    served: tuple[grpc.aio.Channel, ScorerService], formula_item: common_pb2.ScoringItem
) -> None:
    channel, _ = served
    stub = scorer_pb2_grpc.ScorerStub(channel)
    padded = SUMIFS + "+0" * 100
    batch = scorer_pb2.ScoreBatchRequest(
        item=formula_item, answers=[scorer_pb2.AnswerInput(answer_id=str(i), text=padded) for i in range(300)]
    )
    assert 60_000 < batch.ByteSize() < 256 * 1024
    call = stub.ScoreStream(timeout=30)
    sent = 0
    try:
        # A server that read everything would take all 300 messages (~20 MB); this one
        # stops reading once its unread replies fill the flow-control windows.
        for sent in range(300):
            await asyncio.wait_for(call.write(batch), timeout=0.5)
    except TimeoutError:
        pass
    print(f"accepted {sent} messages before flow control held the client back")
    assert sent < 150, f"the server accepted {sent} messages without the client reading any reply"
    # Other callers are still served meanwhile.
    await assert_serving(channel)
    reply = await scorer_pb2_grpc.ScorerStub(channel).Score(
        scorer_pb2.ScoreRequest(item=formula_item, answer=scorer_pb2.AnswerInput(text=SUMIFS)), timeout=10
    )
    assert reply.score.value > 0.9
    call.cancel()
