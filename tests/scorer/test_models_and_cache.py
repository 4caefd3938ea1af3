"""The sentence-encoder signal, the Redis score cache and the circuit breaker, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from scorer.cache import SIGNAL_CACHE, LruCache
from scorer.service import ScorerService
from scorer_helpers import start_scorer
from stack.backing import EmbeddedRedis, TritonServer, free_port
from stack.runner import MODEL_REPOSITORY
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

PARAPHRASE = (
    "When you copy a formula, a plain address such as A1 moves along with it, whereas writing $A$1 with "
    "dollar signs pins the row and column so it never moves."
)
UNRELATED = "My favourite lunch is a cheese sandwich with a cup of tea."


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def cached(triton: TritonServer, redis_server: EmbeddedRedis) -> AsyncIterator[tuple[scorer_pb2_grpc.ScorerStub, ScorerService]]:
    server, address, service = await start_scorer(triton.url, redis_url=redis_server.url)
    async with grpc.aio.insecure_channel(address) as channel:
        yield scorer_pb2_grpc.ScorerStub(channel), service
    await server.stop(None)
    await service.close()


def ask(item: common_pb2.ScoringItem, text: str) -> scorer_pb2.ScoreRequest:
    return scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id="a", text=text))


async def test_encoder_similarity_orders_paraphrase_above_unrelated(
    cached: tuple[scorer_pb2_grpc.ScorerStub, ScorerService], text_item: common_pb2.ScoringItem
) -> None:
    stub, _ = cached
    text_item.item_id = "similarity-order"  # not shared with the cache test
    para = (await stub.Score(ask(text_item, PARAPHRASE), timeout=10)).score
    other = (await stub.Score(ask(text_item, UNRELATED), timeout=10)).score
    cosine = {
        name: float(next(e for e in s.evidence if "cosine" in e).split("cosine ")[1].split()[0])
        for name, s in (("para", para), ("other", other))
    }
    assert cosine["para"] > 0.6 > 0.3 > cosine["other"]
    # So far from the question and the reference that the off-topic guard zeroes it by rule.
    assert para.value > other.value == 0.0 and "guard:off_topic" in other.signals
    # Free text is scored by the trained model on text_features (the product default).
    assert "triton.text_features" in para.signals
    assert list(para.provenance.models) == ["answer_scorer_text:3", "text_features:2"]


async def test_identical_answers_are_served_from_redis_with_their_provenance(
    cached: tuple[scorer_pb2_grpc.ScorerStub, ScorerService],
    text_item: common_pb2.ScoringItem,
    formula_item: common_pb2.ScoringItem,
) -> None:
    stub, service = cached
    first = (await stub.Score(ask(text_item, PARAPHRASE), timeout=10)).score
    assert service._cache is not None
    await service._cache.flush()
    # Same answer with different spacing: same normalised answer, same key.
    again = (await stub.Score(ask(text_item, "  " + PARAPHRASE.replace(" ", "   ")), timeout=10)).score
    assert SIGNAL_CACHE not in first.signals and SIGNAL_CACHE in again.signals
    assert again.value == first.value and again.provenance == first.provenance
    assert list(again.signals) == [*first.signals, SIGNAL_CACHE]
    # A new item version is a different key.
    text_item.item_version += 1
    bumped = (await stub.Score(ask(text_item, PARAPHRASE), timeout=10)).score
    assert SIGNAL_CACHE not in bumped.signals
    # Formula answers too; rules (multiple choice) are never cached.
    await stub.Score(ask(formula_item, "=SUM(C2:C5)"), timeout=10)
    await service._cache.flush()
    formula_again = (await stub.Score(ask(formula_item, "=SUM(C2:C5)"), timeout=10)).score
    assert SIGNAL_CACHE in formula_again.signals and formula_again.provenance.backend == "triton"


async def test_redis_down_scores_without_the_cache(
    triton: TritonServer, formula_item: common_pb2.ScoringItem
) -> None:
    server, address, service = await start_scorer(triton.url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            score = (await scorer_pb2_grpc.ScorerStub(channel).Score(ask(formula_item, "=C2+C4"), timeout=10)).score
        assert score.value > 0.9 and SIGNAL_CACHE not in score.signals
    finally:
        await server.stop(None)
        await service.close()


async def test_breaker_opens_when_triton_stops_and_closes_when_it_returns(
    tmp_path: Path, formula_item: common_pb2.ScoringItem
) -> None:
    # Its own Triton (with fixed ports so it comes back at the same address) to stop and restart.
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    triton = TritonServer(MODEL_REPOSITORY, tmp_path / "triton", **ports, stop_timeout=4.0).start()
    server, address, service = await start_scorer(
        triton.url, breaker_failures=2, breaker_reset_s=0.5, triton_retries=0, triton_deadline_s=1.0
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scorer_pb2_grpc.ScorerStub(channel)
            assert (await stub.Score(ask(formula_item, "=C2+C4"), timeout=10)).score.value > 0.9
            triton.stop()
            details = []
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Score(ask(formula_item, "=C2+C4"), timeout=10)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                details.append(caught.value.details() or "")
            assert "Triton unavailable" in details[0]
            assert "circuit open" in details[-1]
            triton.start()
            # Closed again once a probe after the reset timeout gets through.
            for _ in range(50):
                try:
                    reply = await stub.Score(ask(formula_item, "=C2+C4"), timeout=10)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    await asyncio.sleep(0.2)
            assert reply.score.value > 0.9
    finally:
        await server.stop(None)
        await service.close()
        triton.stop()


def test_lru_batch_lookups_count_and_evict_like_single_ones() -> None:
    def count(name: str, result: str) -> float:
        return REGISTRY.get_sample_value("xli_scorer_cache_lookups_total", {"cache": name, "result": result}) or 0.0

    cache: LruCache[str, int] = LruCache("lru-batch-test", 3)
    cache.put_many([("a", 1), ("b", 2), ("c", 3)])
    assert cache.get_many(["a", "x", "c"]) == [1, None, 3]  # a and c are now the most recent
    assert (count("lru-batch-test", "hit"), count("lru-batch-test", "miss")) == (2.0, 1.0)
    cache.put_many([("d", 4), ("a", 10)])  # b, the least recently used, goes
    assert len(cache) == 3 and cache.get_many(["b", "a", "c", "d"]) == [None, 10, 3, 4]
