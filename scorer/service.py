"""The Scorer gRPC service."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import numpy as np
from prometheus_client import Counter, Histogram

import core_rs
from common import CODE_VERSION
from common.errors import InvalidArgument
from scorer import free_text, grading
from scorer.cache import SIGNAL_CACHE, LruCache, RedisScoreCache, item_digest, normalise_answer
from scorer.judge import SIGNAL_FAILED, SIGNAL_NOT_CONFIGURED, SIGNAL_TIMEOUT, JudgeError, LLMJudge, signal_used
from scorer.training.features import BASE_FEATURES
from scorer.triton import AnswerScorerModel, SentenceEncoderModel, TextFeaturesModel, TextScorerModel, _TritonModel
from xlinterview.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)

MAX_ANSWERS_PER_BATCH = 10_000
# Below this many answers core_rs runs on the event loop's thread: a thread hop costs
# more than it saves. Above it core_rs (which releases the GIL) runs in a worker thread
# so the loop keeps building and sending other responses meanwhile.
THREAD_MIN_ANSWERS = 64
# Grading one formula (about 85 µs in core_rs) already outweighs a thread hop (tens of µs of
# the loop's time), and grading a coalesced group of unary requests inline would stall every
# other call for milliseconds; so formulas leave the loop from this many answers on.
FORMULA_THREAD_MIN_ANSWERS = 2
# Requests with fewer fresh answers than this (unary Score) are merged with concurrent
# requests for the same item; larger ones (stream messages) are batches already.
COALESCE_BELOW_ANSWERS = 64
CODE = f"xlinterview {CODE_VERSION}"

# Scores travel inside their responses (answer id + score) from the moment they are
# written: a Score built on its own and then put into a response is copied, at about as much
# cost again as building it.
_Results = tuple[list[scorer_pb2.ScoreResponse], list[str]]
_Run = Callable[[list[int]], Awaitable[_Results]]
_FreshRun = Callable[
    [common_pb2.ScoringItem, str, Sequence[scorer_pb2.AnswerInput], float | None, str], Awaitable[_Results]
]

ANSWERS = Counter("xli_scorer_answers_total", "Answers scored", ["kind", "source"])
GRADE_SECONDS = Histogram(
    "xli_scorer_grade_seconds",
    "Time to score the answers of one request or stream message",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JUDGE_OUTCOMES = Counter("xli_scorer_judge_total", "LLM judge requests by outcome", ["outcome"])
_KIND_LABEL = {
    common_pb2.QUESTION_KIND_FORMULA: "formula",
    common_pb2.QUESTION_KIND_FREE_TEXT: "free_text",
    common_pb2.QUESTION_KIND_MULTIPLE_CHOICE: "choice",
    common_pb2.QUESTION_KIND_NUMERIC: "numeric",
}
# prometheus_client's labels() takes a lock and checks the labels on every call; unary Score
# would pay that several times per request, so each child is looked up once here.
_KINDS = (*_KIND_LABEL.values(), "unknown")
_ANSWERS_BY = {(kind, source): ANSWERS.labels(kind, source) for kind in _KINDS for source in ("rule", "cache", "model")}
_GRADE_SECONDS_BY = {kind: GRADE_SECONDS.labels(kind) for kind in _KINDS}


class _Coalescer:
    """Merges concurrent small requests for the same item into one grading pass.

    Each model call and each call into core_rs (a hand-over to its engine thread) has a
    fixed cost, so 64 concurrent unary requests for one question are far cheaper graded
    as one batch of 64 answers.

    A group is graded when its window has passed and fewer than ``max_passes`` passes
    for the same item are running; under load it keeps growing meanwhile, so batches
    get bigger exactly when the server is busiest. One pass at a time is the default:
    unary Score of formulas at concurrency 64 then costs the event loop 7-10% less per
    call than with two overlapping passes and serves 4-9% more calls a second (side-by-side
    runs, ``make bench-scorer-ab``, benchmarks/README.md): fewer, bigger passes, so fewer
    Triton calls and thread hand-offs. A longer window (1 or 2 ms instead of 0.5) added nothing.

    Args:
        run: Grades ``(item, digest, answers, deadline, model_version)``.
        window_s: How long the first request of a group waits for others.
        max_answers: A group this large is graded at once.
        max_passes: Grading passes running at once per item.
    """

    def __init__(
        self, run: _FreshRun, window_s: float = 0.0005, max_answers: int = 256, max_passes: int = 1
    ) -> None:
        self._run = run
        self._window_s = window_s
        self._max_answers = max_answers
        self._max_passes = max_passes
        self._groups: dict[tuple[str, str], _Group] = {}
        self._passes: dict[tuple[str, str], int] = {}

    async def submit(
        self,
        item: common_pb2.ScoringItem,
        digest: str,
        answers: Sequence[scorer_pb2.AnswerInput],
        deadline: float | None,
        model_version: str,
    ) -> _Results:
        key = (digest, model_version)
        loop = asyncio.get_running_loop()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(item)
            loop.call_later(self._window_s, self._flush, key, group)
        # Each caller waits on a future of its own: one caller giving up cancels only that
        # future, never the pass the others wait for (cheaper than shielding a shared one).
        waiter: _Waiter = loop.create_future()
        group.waiters.append((waiter, len(group.answers), len(answers)))
        group.answers.extend(answers)
        group.deadlines.append(deadline)
        if len(group.answers) >= self._max_answers:
            self._flush(key, group, force=True)
        return await waiter

    def _flush(self, key: tuple[str, str], group: _Group, force: bool = False) -> None:
        if self._groups.get(key) is not group:
            return  # already flushed (full before its window ended)
        group.window_over = True
        if not force and self._passes.get(key, 0) >= self._max_passes:
            return  # graded when a running pass ends
        del self._groups[key]
        self._passes[key] = self._passes.get(key, 0) + 1
        deadline = None if None in group.deadlines else max(d for d in group.deadlines if d is not None)
        task = asyncio.create_task(self._run(group.item, key[0], group.answers, deadline, key[1]))

        def deliver(done: asyncio.Task[_Results]) -> None:
            self._passes[key] -= 1
            if not self._passes[key]:
                del self._passes[key]
            waiting = self._groups.get(key)
            if waiting is not None and waiting.window_over:
                self._flush(key, waiting)
            failure = None if done.cancelled() else done.exception()
            for waiter, start, count in group.waiters:
                if waiter.done():
                    continue  # its caller gave up
                if done.cancelled():
                    waiter.cancel()
                elif failure is not None:
                    waiter.set_exception(failure)
                else:
                    scores, versions = done.result()
                    waiter.set_result((scores[start : start + count], versions))

        task.add_done_callback(deliver)


_Waiter = asyncio.Future[_Results]


@dataclasses.dataclass
class _Group:
    item: common_pb2.ScoringItem
    answers: list[scorer_pb2.AnswerInput] = dataclasses.field(default_factory=list)
    # (future, first answer, answer count) of each request in the group.
    waiters: list[tuple[_Waiter, int, int]] = dataclasses.field(default_factory=list)
    deadlines: list[float | None] = dataclasses.field(default_factory=list)
    window_over: bool = False


@dataclasses.dataclass(frozen=True)
class _TextBatch:
    """Free-text answers of one item that passed the first guards, on their way to a model."""

    item: common_pb2.ScoringItem
    digest: str
    prepared: list[grading.PreparedAnswer]
    texts: list[str]
    deadline: float | None
    model_version: str


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's gRPC deadline on the event loop's clock, or None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else asyncio.get_running_loop().time() + remaining


class ScorerService(scorer_pb2_grpc.ScorerServicer):
    """Grades answers: core_rs features, then the answer-scoring model on Triton.

    Free-text answers also get their similarity to the reference answers from the
    sentence encoder on Triton. Multiple choice and numeric answers are graded by rules
    and touch no model.

    Args:
        model: The answer-scoring model.
        encoder: The sentence encoder.
        max_answer_chars: Longest answer accepted.
        cache: Redis score cache, or None to run without one.
        formula_cache_size: Formula grades kept in process per (item, formula).
        stream_read_ahead: Stream messages graded concurrently (responses stay in order).
        review_confidence: Model scores less confident than this are flagged ``needs_review``.
        judge: The optional LLM judge (with an asynchronous client), or None.
        judge_timeout_s: Longest the judge may take per answer before the score goes without it.
        judge_tolerance: Judge/model disagreement (0..1 score) still averaged.
        judge_max_concurrent: Judge conversations running at once.
        text_model: The trained free-text model (``answer_scorer_text``) and the model that
            computes its features, or None to score free text with ``model`` (hand-set).
    """

    def __init__(
        self,
        model: AnswerScorerModel,
        encoder: SentenceEncoderModel,
        max_answer_chars: int,
        cache: RedisScoreCache | None = None,
        formula_cache_size: int = 100_000,
        stream_read_ahead: int = 2,
        review_confidence: float = 0.0,
        judge: LLMJudge | None = None,
        judge_timeout_s: float = 10.0,
        judge_tolerance: float = 0.2,
        judge_max_concurrent: int = 8,
        text_model: tuple[TextScorerModel, TextFeaturesModel] | None = None,
    ) -> None:
        self._model = model
        self._encoder = encoder
        self._max_answer_chars = max_answer_chars
        self._cache = cache
        # core_rs's grade object per (item, formula): one object an entry (the prepared answer
        # built from it would be ten), so a full cache adds little to each garbage collection.
        self._formulas: LruCache[tuple[str, str], core_rs.FormulaGrade] = LruCache("formula", formula_cache_size)
        self._sheets: LruCache[str, core_rs.PreparedSheet] = LruCache("formula_sheet", 1024)
        self._references: LruCache[tuple[str, str], np.ndarray] = LruCache("reference_embeddings", 1024)
        self._read_ahead = max(1, stream_read_ahead)
        self._coalescer = _Coalescer(self._score_fresh)
        # Newest version of each model Triton reported; cache keys are built from these.
        self._versions: dict[str, str] = {}
        # Each model's config "origin" (trained, hand_set, ...), which decides how scores label it.
        self._origins: dict[str, str] = {}
        self._review_confidence = review_confidence
        self._judge = judge
        self._judge_timeout_s = judge_timeout_s
        self._judge_tolerance = judge_tolerance
        self._judge_slots = asyncio.Semaphore(max(1, judge_max_concurrent))
        self._text_model: TextScorerModel | None = text_model[0] if text_model is not None else None
        self._text_features: TextFeaturesModel | None = text_model[1] if text_model is not None else None
        self._all: dict[str, _TritonModel] = {
            m.name: m for m in (model, encoder, self._text_model, self._text_features) if m is not None
        }

    async def grade(
        self,
        item: common_pb2.ScoringItem,
        answers: Sequence[scorer_pb2.AnswerInput],
        deadline: float | None = None,
        model_version: str = "",
        into: scorer_pb2.ScoreBatchResponse | None = None,
    ) -> list[scorer_pb2.ScoreResponse]:
        """Scores answers to one item; each model is called once for all that need it.

        Args:
            item: The item.
            answers: Its answers.
            deadline: Caller's deadline on the event loop's clock.
            model_version: ``answer_scorer`` version; "" for the newest.
            into: An empty batch response the responses may be written into, in order, when
                they are all written at once (saves copying them there); it stays empty otherwise.

        Returns:
            One response per answer, in order (``into``'s results when they were written there).
        """
        started = time.perf_counter()
        kind = _KIND_LABEL.get(item.kind, "unknown")
        grading.validate(item, [a.text for a in answers], self._max_answer_chars)
        if item.kind in grading.RULE_KINDS:
            results = _write(grading.ScoreWriter(item), grading.prepare(item, answers), into=into)
            _ANSWERS_BY[kind, "rule"].inc(len(results))
        else:
            results = await self._grade_with_models(item, answers, deadline, model_version, into)
        _GRADE_SECONDS_BY[kind].observe(time.perf_counter() - started)
        return results

    async def _grade_with_models(
        self,
        item: common_pb2.ScoringItem,
        answers: Sequence[scorer_pb2.AnswerInput],
        deadline: float | None,
        model_version: str,
        into: scorer_pb2.ScoreBatchResponse | None,
    ) -> list[scorer_pb2.ScoreResponse]:
        kind = _KIND_LABEL[item.kind]
        digest = item_digest(item)
        scores: list[scorer_pb2.ScoreResponse | None] = [None] * len(answers)
        keys: list[str] = []
        if self._cache is not None:
            versions = await self._model_versions(item, model_version)
            keys = [
                self._cache.key(item, digest, normalise_answer(item.kind, a.text), versions, CODE) for a in answers
            ]
            for index, cached in enumerate(await self._cache.get_many(keys)):
                if cached is not None:
                    cached.signals.append(SIGNAL_CACHE)
                    scores[index] = scorer_pb2.ScoreResponse(answer_id=answers[index].answer_id, score=cached)
            _ANSWERS_BY[kind, "cache"].inc(sum(s is not None for s in scores))
        todo = [i for i, s in enumerate(scores) if s is None]
        if todo:
            # Small requests (unary Score) are merged with concurrent ones for the same item;
            # stream messages are already batches.
            fresh_answers = [answers[i] for i in todo]
            if len(todo) < COALESCE_BELOW_ANSWERS:
                fresh, versions = await self._coalescer.submit(item, digest, fresh_answers, deadline, model_version)
            else:
                whole = into if len(todo) == len(answers) else None  # in order only without cache hits
                fresh, versions = await self._score_fresh(item, digest, fresh_answers, deadline, model_version, whole)
            for index, score in zip(todo, fresh, strict=True):
                scores[index] = score
            _ANSWERS_BY[kind, "model"].inc(len(todo))
            if self._cache is not None:
                # Keys of what actually ran, which differ from the lookup keys only if Triton's version changed.
                put_keys = keys
                # No versions: every answer was decided by rule, and the lookup keys stand.
                if versions and versions != await self._model_versions(item, model_version):
                    put_keys = [
                        self._cache.key(item, digest, normalise_answer(item.kind, a.text), versions, CODE)
                        for a in answers
                    ]
                # A score the judge should have fed but did not is not kept: the next request may get it.
                fresh_scores = [(put_keys[i], scores[i].score) for i in todo]  # type: ignore[union-attr]
                self._cache.put_many([(key, score) for key, score in fresh_scores if not _degraded(score)])
        return scores  # type: ignore[return-value]

    def _models_for(self, item: common_pb2.ScoringItem) -> list[_TritonModel]:
        """The models that would score an answer to ``item``, the scoring model first."""
        if item.kind == common_pb2.QUESTION_KIND_FREE_TEXT and self._text_model is not None:
            assert self._text_features is not None
            return [self._text_model, self._text_features]
        if item.kind == common_pb2.QUESTION_KIND_FREE_TEXT and item.rubric.reference_answers:
            return [self._model, self._encoder]
        return [self._model]

    async def _model_versions(self, item: common_pb2.ScoringItem, pinned: str) -> list[str]:
        """``name:version`` of the models that would score an answer to ``item``."""
        models = self._models_for(item)
        for model in models:
            if model.name not in self._versions and not (pinned and model is models[0]):
                self._versions[model.name] = (await model.describe()).version
        versions = [f"{m.name}:{pinned if pinned and m is models[0] else self._versions[m.name]}" for m in models]
        if self._judge is not None and item.kind == common_pb2.QUESTION_KIND_FREE_TEXT:
            versions.append(signal_used(self._judge.model))
        return versions

    async def _prepare(
        self, item: common_pb2.ScoringItem, digest: str, answers: Sequence[scorer_pb2.AnswerInput]
    ) -> list[grading.PreparedAnswer]:
        """core_rs features; formula grades come from the in-process cache when known."""
        if item.kind != common_pb2.QUESTION_KIND_FORMULA:
            if len(answers) >= THREAD_MIN_ANSWERS:
                return await asyncio.to_thread(grading.prepare, item, answers)
            return grading.prepare(item, answers)
        keys = [(digest, answer.text) for answer in answers]
        grades = self._formulas.get_many(keys)
        missing = [index for index, grade in enumerate(grades) if grade is None]
        if missing:
            texts = [keys[index][1] for index in missing]
            graded = await self._grade_formulas(item, digest, texts)
            for index, grade in zip(missing, graded, strict=True):
                grades[index] = grade
            self._formulas.put_many(zip([keys[index] for index in missing], graded))
        return grading.prepare(item, answers, grades)  # type: ignore[arg-type]

    async def _grade_formulas(
        self, item: common_pb2.ScoringItem, digest: str, texts: list[str]
    ) -> list[core_rs.FormulaGrade]:
        """core_rs grades of formulas on the item's prepared sheet, which is built once and kept.

        core_rs grades with the GIL released, but the calling thread waits: all but a single
        answer wait in a worker thread so the event loop keeps serving other calls meanwhile
        (see ``FORMULA_THREAD_MIN_ANSWERS``).
        """
        sheet = self._sheets.get(digest)
        if sheet is None:
            sheet = await asyncio.to_thread(grading.formula_sheet, item)
            self._sheets.put(digest, sheet)
        if len(texts) >= FORMULA_THREAD_MIN_ANSWERS:
            return await asyncio.to_thread(sheet.grade_many, texts)
        return sheet.grade_many(texts)

    async def _similarity(
        self,
        item: common_pb2.ScoringItem,
        digest: str,
        prepared: Sequence[grading.PreparedAnswer],
        texts: Sequence[str],
        deadline: float | None,
    ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Similarities of free-text answers, and the encoder's ``name:version``.

        Returns:
            ``(to_references, to_question_or_references, models)``: each answer's best cosine
            to the reference answers (the model's input), its best cosine to the question or
            a reference (the off-topic guard's input, None without references), and the
            encoder's ``name:version`` (empty when it was not used).
        """
        references = list(item.rubric.reference_answers)
        if item.kind != common_pb2.QUESTION_KIND_FREE_TEXT or not references:
            return np.zeros(len(texts), dtype=np.float32), None, []
        # The question rides along with the references: the off-topic guard compares with both.
        anchors = [*references, item.prompt]
        known = self._versions.get(self._encoder.name, "")
        anchor_embeddings = self._references.get((digest, known))
        if anchor_embeddings is None:
            # First sight of this item: its anchors ride along in the same encoder call.
            embeddings, version = await self._encoder.embed([*anchors, *texts], deadline)
            anchor_embeddings, answer_embeddings = embeddings[: len(anchors)], embeddings[len(anchors) :]
            self._references.put((digest, version), anchor_embeddings)
        else:
            answer_embeddings, version = await self._encoder.embed(texts, deadline)
        self._versions[self._encoder.name] = version
        similarity = grading.reference_similarity(answer_embeddings, anchor_embeddings[: len(references)])
        for answer, value in zip(prepared, similarity, strict=True):
            grading.add_similarity(answer, float(value))
        on_topic = grading.reference_similarity(answer_embeddings, anchor_embeddings)
        return similarity, on_topic, [f"{self._encoder.name}:{version}"]

    async def _origin(self, name: str) -> str:
        """The ``origin`` of a model's Triton config, asked once per process."""
        if name not in self._origins:
            self._origins[name] = (await self._all[name].describe()).origin
        return self._origins[name]

    async def _score_fresh(
        self,
        item: common_pb2.ScoringItem,
        digest: str,
        answers: Sequence[scorer_pb2.AnswerInput],
        deadline: float | None,
        model_version: str,
        into: scorer_pb2.ScoreBatchResponse | None = None,
    ) -> _Results:
        """Scores answers through the models; returns the responses and the models' ``name:version``.

        Free-text answers are screened first (:mod:`scorer.free_text`): answers a guard stops
        are scored 0 by rule and never reach a model; the rest are scored on their text without
        any passage addressed to the grader, and the optional LLM judge is folded in.

        ``into`` is as in :meth:`grade`; free-text responses are never written there (guarded
        answers are scored after the others, out of order).
        """
        if item.kind != common_pb2.QUESTION_KIND_FREE_TEXT:
            prepared = await self._prepare(item, digest, answers)
            zeros = np.zeros(len(prepared), np.float32)
            return await self._run_model(item, prepared, zeros, [], deadline, model_version, into)
        screened = [free_text.screen(item, a.text) for a in answers]
        scores: list[scorer_pb2.ScoreResponse | None] = [None] * len(answers)
        todo = [i for i, s in enumerate(screened) if s.verdict is None]
        versions: list[str] = []
        if todo:
            cleaned = [scorer_pb2.AnswerInput(answer_id=answers[i].answer_id, text=screened[i].text) for i in todo]
            prepared = await self._prepare(item, digest, cleaned)
            measure = self._measure_trained if self._text_model is not None else self._measure_hand_set
            batch = _TextBatch(item, digest, prepared, [c.text for c in cleaned], deadline, model_version)
            on_topic, run, measured_by = await measure(batch)
            if on_topic is not None:
                # The off-topic guard needs the encoder, so it runs only now.
                for index, value in zip(todo, on_topic, strict=True):
                    screened[index] = free_text.screen(item, answers[index].text, float(value))
            keep = [j for j, i in enumerate(todo) if screened[i].verdict is None]
            for j in keep:
                free_text.mark_injection(prepared[j], screened[todo[j]])
            if keep:
                judging = [
                    asyncio.ensure_future(self._ask_judge(item, screened[todo[j]].text, deadline)) for j in keep
                ]
                try:
                    model_scores, versions = await run(keep)
                except BaseException:
                    for task in judging:
                        task.cancel()
                    raise
                for j, result, outcome in zip(keep, model_scores, await asyncio.gather(*judging), strict=True):
                    scale_max = self._judge.scale_max if self._judge is not None else 1.0
                    free_text.apply_judge(result.score, outcome, scale_max, self._judge_tolerance)
                    scores[todo[j]] = result
        rules = grading.ScoreWriter(item)
        for index, screen in enumerate(screened):
            if scores[index] is None:
                (result,) = _write(rules, [free_text.guarded(answers[index].answer_id, item.rubric, screen)])
                zero = result.score
                if screen.similarity is not None:
                    # The off-topic rule read a model's similarity: the score names that model.
                    zero.provenance.models.extend(measured_by)
                    zero.signals.extend(f"triton.{m.split(':')[0]}" for m in measured_by)
                scores[index] = result
        return scores, versions  # type: ignore[return-value]

    async def _measure_hand_set(self, batch: _TextBatch) -> tuple[np.ndarray | None, _Run, list[str]]:
        """Encoder similarities, how to score the answers that pass the guards with them, and
        the ``name:version`` of the models that measured them."""
        item, prepared, deadline = batch.item, batch.prepared, batch.deadline
        similarity, on_topic, other_models = await self._similarity(item, batch.digest, prepared, batch.texts, deadline)

        async def run(keep: list[int]) -> _Results:
            chosen = [prepared[j] for j in keep]
            return await self._run_model(item, chosen, similarity[keep], other_models, deadline, batch.model_version)

        return on_topic, run, other_models

    async def _measure_trained(self, batch: _TextBatch) -> tuple[np.ndarray | None, _Run, list[str]]:
        """As :meth:`_measure_hand_set`, with the trained model's feature rows (from Triton)."""
        assert self._text_model is not None and self._text_features is not None
        item, prepared, texts, deadline, model_version = (
            batch.item, batch.prepared, batch.texts, batch.deadline, batch.model_version
        )
        text_model, text_features = self._text_model, self._text_features
        if not item.rubric.reference_answers:
            raise InvalidArgument(f"item {item.item_id}: {text_model.name} needs at least one reference answer")
        features, features_version = await text_features.features(texts, _item_json(item), deadline)
        self._versions[text_features.name] = features_version
        cos_reference = features[:, BASE_FEATURES.index("cos_reference")]
        # What the off-topic guard was tuned on: the best cosine to the question or a reference.
        on_topic = np.clip(np.maximum(cos_reference, features[:, BASE_FEATURES.index("cos_question")]), 0.0, 1.0)
        for answer, value in zip(prepared, cos_reference, strict=True):
            grading.add_similarity(answer, float(max(0.0, value)), f"triton.{text_features.name}")
        other_models = [f"{text_features.name}:{features_version}"]

        async def run(keep: list[int]) -> _Results:
            values, confidences, version = await text_model.score(features[keep], deadline, model_version)
            if not model_version:
                self._versions[text_model.name] = version
            origin = await self._origin(text_model.name)
            writer = grading.ScoreWriter(item, text_model.name, version, other_models, origin, self._review_confidence)
            results = _write(writer, [prepared[j] for j in keep], values.tolist(), confidences.tolist())
            return results, [f"{text_model.name}:{version}", *other_models]

        return on_topic, run, other_models

    async def _run_model(
        self,
        item: common_pb2.ScoringItem,
        prepared: Sequence[grading.PreparedAnswer],
        similarity: np.ndarray,
        other_models: list[str],
        deadline: float | None,
        model_version: str,
        into: scorer_pb2.ScoreBatchResponse | None = None,
    ) -> _Results:
        """Runs feature rows through ``answer_scorer`` and builds their scores (in ``into``, if given)."""
        features = np.array([p.features for p in prepared if p.features is not None], dtype=np.float32)
        values, version = await self._model.score(features, similarity, deadline, model_version)
        if not model_version:
            self._versions[self._model.name] = version
        origin = await self._origin(self._model.name)
        writer = grading.ScoreWriter(item, self._model.name, version, other_models, origin, self._review_confidence)
        return _write(writer, prepared, values.tolist(), into=into), [f"{self._model.name}:{version}", *other_models]

    async def _ask_judge(
        self, item: common_pb2.ScoringItem, text: str, deadline: float | None
    ) -> free_text.JudgeOutcome:
        """The LLM judge's verdict on one screened answer; never raises for the judge's faults.

        The judge gets at most ``judge_timeout_s``, and never more than the caller's deadline
        leaves, so a slow judge costs the answer its signal, not the caller's deadline.
        """
        if self._judge is None:
            return free_text.JudgeOutcome(None, SIGNAL_NOT_CONFIGURED)
        budget = self._judge_timeout_s
        if deadline is not None:
            # Leave a little of the caller's deadline for building and sending the reply.
            budget = min(budget, deadline - asyncio.get_running_loop().time() - 0.05)
        criteria = [(c.name, list(c.terms), c.weight) for c in item.rubric.criteria]
        try:
            async with self._judge_slots:
                result = await asyncio.wait_for(
                    self._judge.grade_async(item.prompt, list(item.rubric.reference_answers), criteria, text),
                    max(budget, 0.0),
                )
        except TimeoutError:
            JUDGE_OUTCOMES.labels("timeout").inc()
            return free_text.JudgeOutcome(None, SIGNAL_TIMEOUT, f"no verdict within {max(budget, 0.0):.1f} s")
        except JudgeError as exc:
            JUDGE_OUTCOMES.labels("failed").inc()
            log.warning("LLM judge failed: %s", exc)
            return free_text.JudgeOutcome(None, SIGNAL_FAILED, str(exc))
        JUDGE_OUTCOMES.labels("used").inc()
        return free_text.JudgeOutcome(result, signal_used(result.model))

    async def Score(self, request: scorer_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> scorer_pb2.ScoreResponse:
        if not request.HasField("item") or not request.HasField("answer"):
            raise InvalidArgument("item and answer are required")
        (response,) = await self.grade(request.item, [request.answer], _deadline(context), request.model_version)
        return response

    async def _grade_batch(
        self, batch: scorer_pb2.ScoreBatchRequest, deadline: float | None
    ) -> scorer_pb2.ScoreBatchResponse:
        if len(batch.answers) > MAX_ANSWERS_PER_BATCH:
            raise InvalidArgument(
                f"batch {batch.batch_id!r} has {len(batch.answers)} answers; the limit is {MAX_ANSWERS_PER_BATCH}"
            )
        response = scorer_pb2.ScoreBatchResponse(batch_id=batch.batch_id)
        if batch.answers:
            results = await self.grade(batch.item, batch.answers, deadline, batch.model_version, into=response)
            if not response.results:
                response.results.extend(results)
        return response

    async def ScoreStream(
        self, request_iterator: AsyncIterator[scorer_pb2.ScoreBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[scorer_pb2.ScoreBatchResponse]:
        # At most `read_ahead` messages are read and graded before the oldest is answered,
        # so a client that sends faster than it reads is held back by gRPC flow control
        # and the server's memory per stream stays bounded.
        deadline = _deadline(context)
        pending: deque[asyncio.Task[scorer_pb2.ScoreBatchResponse]] = deque()
        try:
            async for batch in request_iterator:
                pending.append(asyncio.create_task(self._grade_batch(batch, deadline)))
                while len(pending) >= self._read_ahead:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()

    async def DescribeModels(
        self, request: scorer_pb2.DescribeModelsRequest, context: grpc.aio.ServicerContext
    ) -> scorer_pb2.DescribeModelsResponse:
        infos = await asyncio.gather(*(model.describe() for model in self._all.values()))
        for info in infos:
            self._versions[info.name] = info.version
        return scorer_pb2.DescribeModelsResponse(
            models=[
                scorer_pb2.ModelInfo(name=i.name, version=i.version, backend="triton", ready=i.ready) for i in infos
            ],
            code_version=CODE,
        )

    async def close(self) -> None:
        """Stops the batchers and closes the cache."""
        for model in self._all.values():
            await model.close()
        if self._cache is not None:
            await self._cache.close()


def _write(
    writer: grading.ScoreWriter,
    prepared: Sequence[grading.PreparedAnswer],
    model_scores: Sequence[float] | None = None,
    calibrated: Sequence[float] | None = None,
    into: scorer_pb2.ScoreBatchResponse | None = None,
) -> list[scorer_pb2.ScoreResponse]:
    """One response per prepared answer, each score written in place (see :class:`grading.ScoreWriter`).

    Args:
        writer: Writes the scores.
        prepared: The answers.
        model_scores: Their model scores, in order; None when rules decide them all.
        calibrated: Their calibrated confidences, in order, when the model has them.
        into: An empty batch response to add the responses to; None makes them on their own.
    """
    results = []
    write = writer.write
    response = scorer_pb2.ScoreResponse if into is None else into.results.add
    for index, answer in enumerate(prepared):
        result = response(answer_id=answer.answer_id)
        write(
            answer,
            None if model_scores is None else model_scores[index],
            None if calibrated is None else calibrated[index],
            result.score,
        )
        results.append(result)
    return results


def _item_json(item: common_pb2.ScoringItem) -> str:
    """A free-text item as the ``text_features`` model's ``ITEM`` input."""
    rubric = item.rubric
    criteria = [[c.name, list(c.terms), c.weight] for c in rubric.criteria]
    return json.dumps({"prompt": item.prompt, "references": list(rubric.reference_answers), "criteria": criteria})


def _degraded(score: common_pb2.Score) -> bool:
    """Whether a configured signal is missing from the score (it should not be cached)."""
    return SIGNAL_FAILED in score.signals or SIGNAL_TIMEOUT in score.signals


def feature_count() -> int:
    """Width of the model's feature row, as core_rs defines it."""
    return len(core_rs.FEATURE_NAMES)
