"""The coalescer that merges concurrent unary requests for one item, without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from scorer.service import _Coalescer
from xlinterview.v1 import common_pb2, scorer_pb2

ITEM = common_pb2.ScoringItem(item_id="q1", item_version=1)


class FakeGrader:
    """Scores each answer with its text as a number; records every pass it runs."""

    def __init__(self, fail: bool = False) -> None:
        self.passes: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(
        self,
        item: common_pb2.ScoringItem,
        digest: str,
        answers: Sequence[scorer_pb2.AnswerInput],
        deadline: float | None,
        model_version: str,
    ) -> tuple[list[scorer_pb2.ScoreResponse], list[str]]:
        self.passes.append([a.answer_id for a in answers])
        await self.release.wait()
        if self.fail:
            raise RuntimeError("model down")
        scores = [common_pb2.Score(value=float(a.text)) for a in answers]
        return [scorer_pb2.ScoreResponse(answer_id=a.answer_id, score=s) for a, s in zip(answers, scores)], ["answer_scorer:1"]


def answer(number: int) -> list[scorer_pb2.AnswerInput]:
    return [scorer_pb2.AnswerInput(answer_id=f"a{number}", text=str(number / 10))]


async def test_concurrent_requests_share_one_pass_and_get_their_own_scores() -> None:
    grader = FakeGrader()
    coalescer = _Coalescer(grader, window_s=0.01)
    calls = [asyncio.create_task(coalescer.submit(ITEM, "d", answer(n), None, "")) for n in range(5)]
    await asyncio.sleep(0.05)
    grader.release.set()
    results = await asyncio.gather(*calls)
    assert grader.passes == [["a0", "a1", "a2", "a3", "a4"]]
    assert [[(r.answer_id, round(r.score.value, 3)) for r in scores] for scores, _ in results] == [
        [("a0", 0.0)], [("a1", 0.1)], [("a2", 0.2)], [("a3", 0.3)], [("a4", 0.4)]
    ]
    assert all(versions == ["answer_scorer:1"] for _, versions in results)


async def test_a_caller_giving_up_leaves_the_others_their_scores() -> None:
    grader = FakeGrader()
    coalescer = _Coalescer(grader, window_s=0.01)
    calls = [asyncio.create_task(coalescer.submit(ITEM, "d", answer(n), None, "")) for n in range(3)]
    await asyncio.sleep(0.05)  # the pass is running
    calls[1].cancel()
    grader.release.set()
    first, third = await calls[0], await calls[2]
    assert calls[1].cancelled()
    assert [r.score.value for r in first[0]] == [0.0] and [round(r.score.value, 3) for r in third[0]] == [0.2]


async def test_a_failed_pass_fails_every_caller_in_it() -> None:
    grader = FakeGrader(fail=True)
    grader.release.set()
    coalescer = _Coalescer(grader, window_s=0.01)
    calls = [coalescer.submit(ITEM, "d", answer(n), None, "") for n in range(2)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["model down", "model down"]


async def test_requests_arriving_during_running_passes_wait_for_a_free_one() -> None:
    grader = FakeGrader()
    coalescer = _Coalescer(grader, window_s=0.001, max_passes=1)
    first = asyncio.create_task(coalescer.submit(ITEM, "d", answer(1), None, ""))
    await asyncio.sleep(0.02)  # its pass is running (and held)
    later = [asyncio.create_task(coalescer.submit(ITEM, "d", answer(n), None, "")) for n in (2, 3)]
    await asyncio.sleep(0.02)
    assert grader.passes == [["a1"]]
    grader.release.set()
    await asyncio.gather(first, *later)
    assert grader.passes == [["a1"], ["a2", "a3"]]


@pytest.mark.parametrize("version", ["", "7"])
async def test_items_and_versions_are_never_mixed(version: str) -> None:
    grader = FakeGrader()
    grader.release.set()
    coalescer = _Coalescer(grader, window_s=0.01)
    await asyncio.gather(
        coalescer.submit(ITEM, "d1", answer(1), None, version),
        coalescer.submit(ITEM, "d2", answer(2), None, version),
        coalescer.submit(ITEM, "d1", answer(3), None, "other"),
    )
    assert sorted(grader.passes) == [["a1"], ["a2"], ["a3"]]
