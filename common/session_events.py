"""The contract of a candidate session's live events, shared by their publishers and the gateway.

The gateway streams a session's events to the candidate page as Server-Sent Events
(``gateway.events``). They reach it over Redis pub/sub: one channel per session,
named ``CHANNEL_PREFIX + session_id``, each message the JSON object
``{"event": <name>, "data": <payload>}``. The gateway publishes from its own request
paths; the orchestrator publishes ``answer_scored`` for answers its background retry
scored after a scorer outage, when no request of the candidate's is there to carry
the score. The two services never import each other, so the channel, the envelope
and the JSON of the ``answer_scored`` payload are defined once, here.

The payload JSON is the candidate's view: it is also what the gateway's REST API
returns to candidates (``gateway.schemas`` builds its response models from these
functions), so a score's review flags, which are for hiring staff only, are left out.
"""

from __future__ import annotations

import json
from typing import Any

from xlinterview.v1 import common_pb2, orchestrator_pb2

CHANNEL_PREFIX = "xli:gateway:session-events:"

ANSWER_SCORED = "answer_scored"
"""An answer's result: the body of ``POST /api/v1/sessions/{id}/answers`` with
``item_id`` and ``idempotency_key`` (see :func:`answer_scored_data`)."""

QUESTION_READY = "question_ready"
"""The next question (``gateway.schemas.Question``), after an answer that has one; the
gateway's stream sends it after each ``answer_scored`` with a next question, so nobody
publishes it."""

INTERVIEW_FINISHED = "interview_finished"
"""The session ended: the candidate finished it, or the hiring team cancelled the
interview (see :func:`interview_finished_data`); the stream ends after it."""

Json = dict[str, Any]


def channel(session_id: str) -> str:
    """The Redis pub/sub channel of one session's events."""
    return CHANNEL_PREFIX + session_id


def encode(event: str, data: Json) -> str:
    """One event as the message published on the session's channel."""
    return json.dumps({"event": event, "data": data}, separators=(",", ":"))


def decode(raw: bytes | str) -> tuple[str, Json]:
    """Inverse of :func:`encode`.

    Raises:
        ValueError: When ``raw`` is not JSON (``json.JSONDecodeError``).
        KeyError: When it lacks ``event`` or ``data``.
    """
    message = json.loads(raw)
    return str(message["event"]), dict(message["data"])


def _cell(cell: common_pb2.CellValue) -> bool | float | str | None:
    which = cell.WhichOneof("value")
    return None if which is None else getattr(cell, which)


def _enum_name(enum: Any, value: int, unknown: str) -> str:
    # A value added by a newer peer reads as the unknown name rather than failing.
    try:
        return str(enum.Name(value))
    except ValueError:
        return unknown


def interview_finished_data(session: orchestrator_pb2.Session, *, cancelled: bool = False) -> Json:
    """The payload of :data:`INTERVIEW_FINISHED`: the session's status and overall score,
    and whether the hiring team ended it (so the page can say so rather than the
    candidate wondering what they did)."""
    return {
        "status": _enum_name(orchestrator_pb2.SessionStatus, session.status, "SESSION_STATUS_UNSPECIFIED"),
        "overall_score": session.overall_score,
        "cancelled": cancelled,
    }


def question_json(q: orchestrator_pb2.Question) -> Json:
    """A question as the candidate sees it (``gateway.schemas.Question``)."""
    sheet = None
    if q.HasField("sheet"):
        sheet = {"name": q.sheet.name, "rows": [[_cell(c) for c in row.cells] for row in q.sheet.rows]}
    return {
        "item_id": q.item_id,
        "item_version": q.item_version,
        "kind": _enum_name(common_pb2.QuestionKind, q.kind, "QUESTION_KIND_UNSPECIFIED"),
        "prompt": q.prompt,
        "skill_area": q.skill_area,
        "sheet": sheet,
        "options": list(q.options),
        "unit": q.unit,
        "decimals": q.decimals if q.HasField("decimals") else None,
        "position": q.position,
        "total": q.total,
        "follow_up": q.follow_up,
        "follow_up_of_item_id": q.follow_up_of_item_id,
        "original_prompt": q.original_prompt,
    }


def score_json(s: common_pb2.Score) -> Json:
    """A score as the candidate sees it (``gateway.schemas.Score``): without its review flags."""
    provenance = None
    if s.HasField("provenance"):
        p = s.provenance
        provenance = {
            "model_name": p.model_name,
            "model_version": p.model_version,
            "backend": p.backend,
            "rubric_version": p.rubric_version,
            "code_version": p.code_version,
        }
    return {
        "value": s.value,
        "confidence": s.confidence,
        "feedback": s.feedback,
        "criteria": [{"name": c.name, "met": c.met, "weight": c.weight, "detail": c.detail} for c in s.criteria],
        "evidence": list(s.evidence),
        "signals": list(s.signals),
        "provenance": provenance,
    }


def submit_result_json(r: orchestrator_pb2.SubmitAnswerResponse) -> Json:
    """The result of an answer (``gateway.schemas.SubmitAnswerResult``)."""
    return {
        "answer_id": r.answer_id,
        "score": score_json(r.score) if r.HasField("score") else None,
        "next_question": question_json(r.next_question) if r.HasField("next_question") else None,
        "finished": r.finished,
    }


def answer_scored_data(r: orchestrator_pb2.SubmitAnswerResponse, item_id: str, idempotency_key: str) -> Json:
    """The payload of ``answer_scored``.

    The candidate page completes the answer it waits on when ``idempotency_key`` is
    that answer's, exactly as if its own request had returned ``r``; so a publisher
    that is not answering the request must send what a retry with that key would get.
    """
    return answer_scored_payload(submit_result_json(r), item_id, idempotency_key)


def answer_scored_payload(result: Json, item_id: str, idempotency_key: str) -> Json:
    """:func:`answer_scored_data` of a result already translated by :func:`submit_result_json`."""
    return {"item_id": item_id, "idempotency_key": idempotency_key, **result}
