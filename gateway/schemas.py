"""JSON shapes of REST API v1 and their translation to and from the protobuf messages.

Explicit pydantic models rather than ``MessageToDict``: the response schemas show in
OpenAPI, unset messages become ``null`` and zero numbers such as ``position`` are
always present. Field names and enum values follow the proto3 JSON mapping with
proto field names (``"kind": "QUESTION_KIND_FORMULA"``), so the JSON reads like the
contract it comes from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field, StringConstraints
from starlette.responses import Response

from common import session_events
from xlinterview.v1 import common_pb2, orchestrator_pb2

# ---------------------------------------------------------------- requests


class SubmitAnswerBody(BaseModel):
    """One answer to the session's current question.

    Attributes:
        item_id: The question answered; must be the current one (409 otherwise).
        answer: A formula such as ``=SUM(B2:B9)``, free text, for multiple choice
            the zero-based index of the option as a string, or for numeric questions
            the number, e.g. ``1,234.50`` or ``12%``.
        idempotency_key: Client-chosen key (a UUID); resending the same key returns
            the first result instead of storing a second answer.
    """

    item_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(examples=["sumifs-region"])
    answer: Annotated[str, StringConstraints(max_length=20_000)] = Field(examples=['=SUMIFS(C2:C9,B2:B9,"East")'])
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        examples=["7d0f3b8e-5b7a-4a36-9f51-0a3c2a0f6f11"]
    )


# ---------------------------------------------------------------- responses


class QuestionKind(StrEnum):
    """How a question is answered (``xlinterview.v1.QuestionKind``)."""

    UNSPECIFIED = "QUESTION_KIND_UNSPECIFIED"
    FORMULA = "QUESTION_KIND_FORMULA"
    FREE_TEXT = "QUESTION_KIND_FREE_TEXT"
    MULTIPLE_CHOICE = "QUESTION_KIND_MULTIPLE_CHOICE"
    NUMERIC = "QUESTION_KIND_NUMERIC"

    @classmethod
    def _missing_(cls, value: object) -> QuestionKind:
        # A kind a newer orchestrator adds reads as UNSPECIFIED rather than failing the request.
        return cls.UNSPECIFIED


class SessionStatus(StrEnum):
    """Where an interview is (``xlinterview.v1.SessionStatus``)."""

    UNSPECIFIED = "SESSION_STATUS_UNSPECIFIED"
    IN_PROGRESS = "SESSION_STATUS_IN_PROGRESS"
    FINISHED = "SESSION_STATUS_FINISHED"


CellValue = bool | float | str | None
"""One cell: a number, text, a boolean, or ``null`` for an empty cell."""


class Sheet(BaseModel):
    """A small worksheet laid out from A1: ``rows[0]`` is row 1, ``rows[r][0]`` column A."""

    name: str
    rows: list[list[CellValue]]


class Question(BaseModel):
    """A question as shown to the candidate; never includes the reference solution."""

    item_id: str
    item_version: int
    kind: QuestionKind
    prompt: str
    skill_area: str
    sheet: Sheet | None = Field(description="Formula questions: the sheet the formula is evaluated on.")
    options: list[str] = Field(description="Multiple-choice questions: the options, answered by index.")
    unit: str = Field(
        default="", description='Numeric questions: the unit the answer is in, e.g. "days" or "%"; empty for a bare number.'
    )
    decimals: int | None = Field(
        default=None, description="Numeric questions: decimal places asked for; null when any precision will do."
    )
    position: int = Field(
        description="1-based position of this question in the interview; a follow-up repeats its original's."
    )
    total: int = Field(description="How many questions the interview has (follow-ups not counted).")
    follow_up: bool = Field(
        default=False,
        description='A follow-up on the answer just given, which missed an important point; its item_id is '
        '"<item id>#follow-up" and it is answered in free text.',
    )
    follow_up_of_item_id: str = Field(default="", description="Follow-ups: the item followed up.")
    original_prompt: str = Field(default="", description="Follow-ups: the followed-up question's prompt, for context.")


class CriterionResult(BaseModel):
    """The verdict on one criterion of an answer."""

    name: str
    met: bool
    weight: float
    detail: str


class ScoreProvenance(BaseModel):
    """Which versions produced a score."""

    model_name: str
    model_version: str
    backend: str
    rubric_version: str
    code_version: str


class Score(BaseModel):
    """A graded answer."""

    value: float = Field(description="0 (wrong) to 1 (fully right).")
    confidence: float = Field(description="How sure the scorer is of value, 0 to 1.")
    feedback: str
    criteria: list[CriterionResult]
    evidence: list[str] = Field(description="Human-readable facts behind the score.")
    signals: list[str] = Field(
        description='What produced the score, e.g. "core_rs.formula_eval", "triton.answer_scorer".'
    )
    provenance: ScoreProvenance | None


class ReviewedScore(Score):
    """A graded answer as staff see it: with the scorer's request for a human check.

    Candidates never get these flags (they would learn how to read the grader).
    """

    needs_review: bool = Field(
        description="A human should check this score before it counts: low confidence, a guard zeroed it, "
        "text addressed to the grader was removed, or the LLM judge disagreed."
    )
    review_reason: str = Field(description="Why needs_review is set, in plain words; empty when it is not.")


class Turn(BaseModel):
    """One answered question of a session."""

    answer_id: str
    item_id: str
    item_version: int
    prompt: str
    answer: str
    score: Score | None = Field(description="null while the answer waits to be scored.")
    submitted_at: datetime | None
    follow_up: bool = Field(
        default=False,
        description="The answer to a follow-up; its score grades it together with the answer it follows up.",
    )


class StaffTurn(Turn):
    """One answered question as staff see it."""

    score: ReviewedScore | None = Field(description="null while the answer waits to be scored.")


class SkillEstimate(BaseModel):
    """Ability on one skill area, from that area's answers only."""

    skill_area: str
    ability: float
    standard_error: float
    answers: int


class Result(BaseModel):
    """The adaptive engine's estimate on the IRT ability scale (0 = population mean, 1 = its SD)."""

    ability: float
    standard_error: float
    ci_low: float = Field(description="95% interval, lower end.")
    ci_high: float = Field(description="95% interval, upper end.")
    skills: list[SkillEstimate]
    stop_reason: str = Field(description='"se_target", "max_items", "bank_exhausted", "time_limit" or "finish_requested".')
    answers_scored: int


class Session(BaseModel):
    """An interview and every turn so far."""

    session_id: str
    candidate_name: str
    status: SessionStatus
    turns: list[Turn]
    started_at: datetime | None
    finished_at: datetime | None
    overall_score: float = Field(description="Mean score of the scored turns, 0 to 1.")
    result: Result | None = Field(default=None, description="null until the interview is finished.")
    deadline: datetime | None = Field(default=None, description="When the interview's time runs out.")


class StaffSession(Session):
    """An interview and every turn so far, as staff see it: scores with their review flags."""

    # Narrowing a field is how pydantic models a richer view; mypy objects because a
    # list is mutable, but nothing adds turns to a session after translation.
    turns: list[StaffTurn]  # type: ignore[assignment]


class SubmitAnswerResult(BaseModel):
    """The score of an answer and what comes next."""

    answer_id: str
    score: Score | None
    next_question: Question | None = Field(description="null when the interview has no more questions.")
    finished: bool


# ---------------------------------------------------------------- translation

# The candidate-visible JSON of questions, scores and answer results is built in
# common.session_events, because the orchestrator publishes answer results to the
# candidate's event stream too; validating it here keeps one translation for both.
_STATUSES = {
    orchestrator_pb2.SESSION_STATUS_IN_PROGRESS: SessionStatus.IN_PROGRESS,
    orchestrator_pb2.SESSION_STATUS_FINISHED: SessionStatus.FINISHED,
}


def timestamp_or_none(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    ts: Timestamp = getattr(message, field)
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def question_from_proto(q: orchestrator_pb2.Question) -> Question:
    """Translates a ``Question`` message."""
    return Question.model_validate(session_events.question_json(q))


_QUESTION_KINDS = frozenset(kind.value for kind in QuestionKind)
# Built once: json.dumps with any option builds an encoder per call. The options are
# those of FastAPI's JSON responses, except that NaN is refused rather than written.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_response(data: dict[str, Any], model: type[BaseModel]) -> Response:
    """``data``, built in ``model``'s shape, as the JSON response ``model`` would make.

    Encoded straight from the translated dict, without validating it into the model
    and having FastAPI validate and dump that again (``response_model`` still
    documents the route): those round trips cost about twice what encoding the dict
    does, on the routes every step of an interview takes (benchmarks/README.md,
    gateway section). Tests pin the two encodings to each other.
    """
    try:
        body = _JSON.encode(data).encode()
    except ValueError:  # a cell holding NaN or infinity, which JSON cannot: the model writes null
        body = model.model_validate(data).model_dump_json().encode()
    return Response(body, media_type="application/json")


def _with_known_kind(question: dict[str, Any]) -> dict[str, Any]:
    # The one value the model would change: a kind it does not know reads as unspecified.
    if question["kind"] not in _QUESTION_KINDS:
        question["kind"] = QuestionKind.UNSPECIFIED.value
    return question


def question_response(q: orchestrator_pb2.Question) -> Response:
    """A ``Question`` message as the JSON response a :class:`Question` would make."""
    return _json_response(_with_known_kind(session_events.question_json(q)), Question)


def submit_result_response(result: dict[str, Any]) -> Response:
    """A submitted answer's result (:func:`common.session_events.submit_result_json`) as the
    JSON response a :class:`SubmitAnswerResult` would make."""
    if result["next_question"] is not None:
        _with_known_kind(result["next_question"])
    return _json_response(result, SubmitAnswerResult)


def score_from_proto(s: common_pb2.Score) -> Score:
    """Translates a ``Score`` message for the candidate: its review flags are left out."""
    return Score.model_validate(session_events.score_json(s))


def reviewed_score_from_proto(s: common_pb2.Score) -> ReviewedScore:
    """Translates a ``Score`` message for staff, with its review flags."""
    return ReviewedScore.model_validate(
        {**session_events.score_json(s), "needs_review": s.needs_review, "review_reason": s.review_reason}
    )


def _session_fields(s: orchestrator_pb2.Session, score: Callable[[common_pb2.Score], Score]) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "candidate_name": s.candidate_name,
        "status": _STATUSES.get(s.status, SessionStatus.UNSPECIFIED),
        "turns": [
            {
                "answer_id": t.answer_id,
                "item_id": t.item_id,
                "item_version": t.item_version,
                "prompt": t.prompt,
                "answer": t.answer,
                "score": score(t.score) if t.HasField("score") else None,
                "submitted_at": timestamp_or_none(t, "submitted_at"),
                "follow_up": t.follow_up,
            }
            for t in s.turns
        ],
        "started_at": timestamp_or_none(s, "started_at"),
        "finished_at": timestamp_or_none(s, "finished_at"),
        "overall_score": s.overall_score,
        "result": result_from_proto(s.result) if s.HasField("result") else None,
        "deadline": timestamp_or_none(s, "deadline"),
    }


def session_from_proto(s: orchestrator_pb2.Session) -> Session:
    """Translates a ``Session`` message for the candidate (scores without review flags)."""
    return Session.model_validate(_session_fields(s, score_from_proto))


def staff_session_from_proto(s: orchestrator_pb2.Session) -> StaffSession:
    """Translates a ``Session`` message for staff (scores with review flags)."""
    return StaffSession.model_validate(_session_fields(s, reviewed_score_from_proto))


def result_from_proto(r: orchestrator_pb2.Result) -> Result:
    """Translates a ``Result`` message."""
    return Result(
        ability=r.ability,
        standard_error=r.standard_error,
        ci_low=r.ci_low,
        ci_high=r.ci_high,
        skills=[
            SkillEstimate(skill_area=k.skill_area, ability=k.ability, standard_error=k.standard_error, answers=k.answers)
            for k in r.skills
        ],
        stop_reason=r.stop_reason,
        answers_scored=r.answers_scored,
    )
