"""The Scorer gRPC service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np

import core_rs
from common import CODE_VERSION
from common.errors import InvalidArgument
from scorer import grading
from scorer.triton import TritonScoringModel
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

MAX_ANSWERS_PER_BATCH = 10_000


class ScorerService(scorer_pb2_grpc.ScorerServicer):
    """Grades answers: core_rs features, then the answer-scoring model on Triton.

    Args:
        model: The Triton-served scoring model.
        max_answer_chars: Longest answer accepted.
    """

    def __init__(self, model: TritonScoringModel, max_answer_chars: int) -> None:
        self._model = model
        self._max_answer_chars = max_answer_chars

    async def grade(
        self, item: common_pb2.ScoringItem, answers: Sequence[scorer_pb2.AnswerInput]
    ) -> list[scorer_pb2.ScoreResponse]:
        """Scores answers to one item; the model is called once for all that need it."""
        grading.validate(item, [a.text for a in answers], self._max_answer_chars)
        prepared = grading.prepare(item, answers)
        needs_model = [p for p in prepared if p.rule_score is None]
        model_scores: dict[int, float] = {}
        if needs_model:
            if not self._model.model_version:
                await self._model.describe()
            rows = np.stack([p.features for p in needs_model if p.features is not None])
            scores = await self._model.score(rows)
            model_scores = {id(p): float(s) for p, s in zip(needs_model, scores, strict=True)}
        return [
            scorer_pb2.ScoreResponse(
                answer_id=p.answer_id,
                score=grading.finish(
                    item, p, model_scores.get(id(p)), self._model.model_name, self._model.model_version
                ),
            )
            for p in prepared
        ]

    async def Score(self, request: scorer_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> scorer_pb2.ScoreResponse:
        if not request.HasField("item") or not request.HasField("answer"):
            raise InvalidArgument("item and answer are required")
        (response,) = await self.grade(request.item, [request.answer])
        return response

    async def ScoreStream(
        self, request_iterator: AsyncIterator[scorer_pb2.ScoreBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[scorer_pb2.ScoreBatchResponse]:
        # One batch at a time: the next request is read only after this one is answered,
        # so gRPC flow control holds back a client that sends faster than it reads.
        async for batch in request_iterator:
            if len(batch.answers) > MAX_ANSWERS_PER_BATCH:
                raise InvalidArgument(
                    f"batch {batch.batch_id!r} has {len(batch.answers)} answers; the limit is {MAX_ANSWERS_PER_BATCH}"
                )
            results = await self.grade(batch.item, batch.answers) if batch.answers else []
            yield scorer_pb2.ScoreBatchResponse(batch_id=batch.batch_id, results=results)

    async def DescribeModels(
        self, request: scorer_pb2.DescribeModelsRequest, context: grpc.aio.ServicerContext
    ) -> scorer_pb2.DescribeModelsResponse:
        info = await self._model.describe()
        return scorer_pb2.DescribeModelsResponse(
            models=[scorer_pb2.ModelInfo(name=info.name, version=info.version, backend="triton", ready=info.ready)],
            code_version=f"xlinterview {CODE_VERSION}",
        )


def feature_count() -> int:
    """Width of the model's feature row, as core_rs defines it."""
    return len(core_rs.FEATURE_NAMES)
