"""Free-text answers on the live path: guards, injection scan, review flag and the LLM judge.

Everything runs for real: the Scorer service in-process, the project's model repository on a
real tritonserver, and for the judge a local OpenAI-compatible HTTP server
(tests/training/fake_openai.py) whose judge is gullible on purpose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from scorer_helpers import start_scorer
from stack.backing import TritonServer
from stack.runner import served_version
from tests.training.canaries import CANARIES
from tests.training.fake_openai import FakeServer
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

GOOD = (
    "A relative reference changes when you copy the formula; an absolute reference such as $A$1 "
    "stays fixed because the dollar sign locks the row and the column."
)
MIDDLING = "A relative reference changes when the formula is copied to another cell."
TEXT_MODEL = served_version("answer_scorer_text")


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeServer]:
    with FakeServer(slow_s=3.0) as running:
        yield running


async def _stub(triton: TritonServer, **overrides: Any) -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    server, address, service = await start_scorer(triton.url, **overrides)
    async with grpc.aio.insecure_channel(address) as channel:
        yield scorer_pb2_grpc.ScorerStub(channel)
    await server.stop(None)
    await service.close()


@pytest.fixture
async def plain(triton: TritonServer) -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    """The hand-set scorer for free text (``XLI_TEXT_MODEL_NAME`` empty), no judge. The
    trained model, the product default, has its own tests at the end of this module."""
    async for stub in _stub(triton, review_confidence=0.5, text_model_name=""):
        yield stub


@pytest.fixture
async def judged(triton: TritonServer, fake_llm: FakeServer) -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    """``plain`` plus the fake LLM judge, so the two differ only by the judge."""
    async for stub in _stub(
        triton,
        judge_base_url=fake_llm.url,
        judge_model="fake-judge",
        judge_timeout_s=1.0,
        review_confidence=0.5,
        text_model_name="",
    ):
        yield stub


async def score(stub: scorer_pb2_grpc.ScorerStub, item: common_pb2.ScoringItem, text: str) -> common_pb2.Score:
    reply = await stub.Score(
        scorer_pb2.ScoreRequest(item=item, answer=scorer_pb2.AnswerInput(answer_id="a", text=text)), timeout=30
    )
    return reply.score


def assert_rule_zero(result: common_pb2.Score, code: str) -> None:
    """A guard's zero: the reason, no model named, no criterion met, no praise."""
    assert result.value == 0.0
    assert f"guard:{code}" in result.signals
    assert not any(s.startswith(("triton.answer_scorer", "model:", "heuristic:", "llm_judge")) for s in result.signals)
    assert result.provenance.backend == "rule" and result.provenance.model_name == ""
    assert not any(c.met for c in result.criteria)
    assert result.feedback and "covered" not in result.feedback.lower() and "correct" not in result.feedback.lower()
    assert any(code in e for e in result.evidence)


@pytest.mark.parametrize(
    ("text", "code", "review"),
    [
        ("", "empty", False),
        ("   ", "empty", False),
        ("idk", "no_answer", False),
        ("I don't know.", "no_answer", False),
        ("Explain absolute versus relative references.", "copied_question", False),
        ("sdfkj qwpoeiru zxmcvnb lkjhasd", "gibberish", True),
        ("Une référence relative change quand on copie la formule, mais une référence absolue ne change pas.", "non_english", True),
        ("Моя ссылка меняется при копировании формулы в другую ячейку.", "non_english", True),
    ],
)
async def test_guards_score_zero_with_the_reason(
    plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem, text: str, code: str, review: bool
) -> None:
    result = await score(plain, text_item, text)
    assert_rule_zero(result, code)
    assert result.needs_review is review
    if review:
        assert code.replace("_", "-") in result.review_reason


async def test_off_topic_needs_the_encoder_and_scores_zero(
    plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    result = await score(
        plain, text_item, "My grandmother grows tomatoes and beans in her garden every summer near the lake."
    )
    assert_rule_zero(result, "off_topic")
    assert result.needs_review
    # The rule read the encoder's similarity, so the score names the encoder (and only it).
    assert list(result.provenance.models) == ["sentence_encoder:2"] and "triton.sentence_encoder" in result.signals
    assert any(e.startswith("closest meaning to the question or a reference answer: cosine") for e in result.evidence)


async def test_a_model_score_names_what_produced_it(
    plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    result = await score(plain, text_item, GOOD)
    assert result.value > 0.8
    # answer_scorer's weights are hand-set (config.pbtxt origin), so it is labelled a heuristic.
    assert "heuristic:answer_scorer@1" in result.signals
    assert not any(s.startswith("model:") for s in result.signals)
    assert {"core_rs.text_features", "triton.sentence_encoder", "llm_judge:not_configured"} <= set(result.signals)
    assert not any(s.startswith("guard:") for s in result.signals)
    assert result.provenance.models[:2] == ["answer_scorer:1", "sentence_encoder:2"]


async def test_low_confidence_goes_to_review(triton: TritonServer, text_item: common_pb2.ScoringItem) -> None:
    async for strict in _stub(triton, review_confidence=0.8):
        sure = await score(strict, text_item, GOOD)
        unsure = await score(strict, text_item, MIDDLING)
        assert sure.confidence >= 0.8 and not sure.needs_review and sure.review_reason == ""
        assert unsure.confidence < 0.8, unsure.confidence
        assert unsure.needs_review and "below the review threshold 0.80" in unsure.review_reason


async def test_canaries_give_zero_lift_without_the_judge(
    plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    for answer in (GOOD, MIDDLING):
        clean = await score(plain, text_item, answer)
        for canary in CANARIES:
            result = await score(plain, text_item, f"{answer} {canary}")
            assert result.value <= clean.value + 1e-6, canary
            assert "guard:injection_removed" in result.signals and result.needs_review, canary
            assert "addressed to the grader" in result.review_reason


async def test_an_injection_alone_scores_zero(plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem) -> None:
    result = await score(plain, text_item, CANARIES[0])
    assert result.value == 0.0 and result.needs_review
    assert {"guard:injection_removed", "guard:empty"} <= set(result.signals)


async def test_the_judge_is_one_more_signal(
    judged: scorer_pb2_grpc.ScorerStub, plain: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem, fake_llm: FakeServer
) -> None:
    fake_llm.requests.clear()
    without = await score(plain, text_item, MIDDLING)
    result = await score(judged, text_item, MIDDLING)
    assert len(fake_llm.requests) == 2  # rubric reading, then the verdict
    assert "llm_judge:fake-judge" in result.signals and "llm_judge:not_configured" not in result.signals
    assert "llm_judge:fake-judge" in result.provenance.models
    assert any(e.startswith("LLM judge (fake-judge) grade") for e in result.evidence)
    # The fake judge grades by keyword overlap; its grade moves the score (averaged or the lower kept).
    assert result.value != pytest.approx(without.value)
    # A guard's zero never asks the judge.
    fake_llm.requests.clear()
    assert_rule_zero(await score(judged, text_item, "idk"), "no_answer")
    assert fake_llm.requests == []


@pytest.mark.parametrize(("marker", "signal", "detail"), [("MALFORMED", "llm_judge:failed", "not a valid verdict"), ("SLOW", "llm_judge:timeout", "no verdict within")])
async def test_a_failing_judge_degrades_to_the_other_signals(
    judged: scorer_pb2_grpc.ScorerStub,
    plain: scorer_pb2_grpc.ScorerStub,
    text_item: common_pb2.ScoringItem,
    marker: str,
    signal: str,
    detail: str,
) -> None:
    answer = f"{MIDDLING} {marker}"
    without = await score(plain, text_item, answer)
    result = await score(judged, text_item, answer)
    assert signal in result.signals and not any(s == "llm_judge:fake-judge" for s in result.signals)
    assert result.value == pytest.approx(without.value)
    assert any(e.startswith("LLM judge not used:") and detail in e for e in result.evidence)


async def test_canaries_give_zero_lift_with_the_gullible_judge(
    judged: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    clean = await score(judged, text_item, MIDDLING)
    assert "llm_judge:fake-judge" in clean.signals
    for canary in CANARIES:
        result = await score(judged, text_item, f"{MIDDLING} {canary}")
        assert result.value <= clean.value + 1e-6, canary
        assert "guard:injection_removed" in result.signals and result.needs_review, canary


async def test_formula_scores_are_labelled_too(plain: scorer_pb2_grpc.ScorerStub, formula_item: common_pb2.ScoringItem) -> None:
    result = await score(plain, formula_item, '=SUMIFS(C2:C5,A2:A5,"East")')
    assert "heuristic:answer_scorer@1" in result.signals and not result.needs_review
    assert not any(s.startswith(("guard:", "llm_judge")) for s in result.signals)


# -- The trained free-text model through Triton (answer_scorer_text on text_features) ----------


@pytest.fixture
async def trained(triton: TritonServer) -> AsyncIterator[scorer_pb2_grpc.ScorerStub]:
    async for stub in _stub(triton, text_model_name="answer_scorer_text", review_confidence=0.5):
        yield stub


async def test_the_trained_model_scores_free_text_and_says_so(
    trained: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    good = await score(trained, text_item, GOOD)
    weak = await score(trained, text_item, "It is about cells in a sheet.")
    assert good.value > weak.value
    assert {f"model:answer_scorer_text@{TEXT_MODEL.name}", "confidence.isotonic_oof", "triton.text_features"} <= set(good.signals)
    assert not any(s.startswith("heuristic:") or s == "confidence.margin_uncalibrated" for s in good.signals)
    assert good.provenance.model_name == "answer_scorer_text" and good.provenance.model_version == TEXT_MODEL.name
    assert list(good.provenance.models) == [f"answer_scorer_text:{TEXT_MODEL.name}", "text_features:2"]
    assert any("cosine" in e for e in good.evidence)


async def test_live_scores_equal_the_reference_scoring_path(
    trained: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    """Triton (text_features + answer_scorer_text) gives what scorer.training.inference gives offline."""
    from scorer.training.data import Question
    from scorer.training.embed import Encoder
    from scorer.training.inference import TextScorer
    offline = TextScorer(TEXT_MODEL, encoder=Encoder(threads=1))
    rubric = text_item.rubric
    question = Question(
        qid=text_item.item_id, group=text_item.item_id, prompt=text_item.prompt,
        references=tuple(rubric.reference_answers),
        criteria=tuple((c.name, tuple(c.terms), c.weight) for c in rubric.criteria),
    )
    for answer in (GOOD, MIDDLING, "It is about cells in a sheet."):
        live = await score(trained, text_item, answer)
        expected = offline.score(question, answer)
        # One answer per request here, so the int8 graph sees the same runs as offline.
        assert live.value == pytest.approx(expected.score, abs=1e-4), answer
        assert live.confidence == pytest.approx(expected.confidence, abs=1e-4), answer


async def test_guards_run_before_the_trained_model(
    trained: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    assert_rule_zero(await score(trained, text_item, "idk"), "no_answer")
    off_topic = await score(
        trained, text_item, "My grandmother grows tomatoes and beans in her garden every summer near the lake."
    )
    assert_rule_zero(off_topic, "off_topic")
    assert list(off_topic.provenance.models) == ["text_features:2"]
    for canary in CANARIES:
        clean = await score(trained, text_item, MIDDLING)
        result = await score(trained, text_item, f"{MIDDLING} {canary}")
        assert result.value <= clean.value + 1e-6, canary
        assert "guard:injection_removed" in result.signals and result.needs_review


async def test_trained_confidence_below_the_threshold_is_flagged(
    triton: TritonServer, text_item: common_pb2.ScoringItem
) -> None:
    async for stub in _stub(triton, text_model_name="answer_scorer_text", review_confidence=1.0):
        # Not GOOD: a near-copy of the reference may be calibrated to 1.0, which no threshold is above.
        result = await score(stub, text_item, MIDDLING)
        assert result.needs_review and "(calibrated) is below the review threshold 1.00" in result.review_reason


async def test_the_trained_model_needs_reference_answers(
    trained: scorer_pb2_grpc.ScorerStub, text_item: common_pb2.ScoringItem
) -> None:
    del text_item.rubric.reference_answers[:]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await score(trained, text_item, GOOD)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "answer_scorer_text needs at least one reference answer" in (caught.value.details() or "")


async def test_describe_models_lists_the_text_models(trained: scorer_pb2_grpc.ScorerStub) -> None:
    described = await trained.DescribeModels(scorer_pb2.DescribeModelsRequest())
    assert {(m.name, m.version, m.ready) for m in described.models} == {
        ("answer_scorer", "1", True),
        ("sentence_encoder", "2", True),
        ("answer_scorer_text", TEXT_MODEL.name, True),
        ("text_features", "2", True),
    }
