"""The Reviews service: people grade the answers the scorer is unsure of.

A score the scorer flags (``Score.needs_review``) waits in the review queue until a
reviewer grades the answer. The grade is stored as the answer's newest ``scores`` row,
so every reader of current scores (reports, results, calibration) uses it without
knowing about reviews; the ``reviews`` row says whose grade it is and which model score
it replaced (migration 0017). A finished interview's result is computed again from the
current scores, and the reviewed free-text answers are the training data of the next
scoring model (:mod:`orchestrator.export_reviews`).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import grpc

from common import CODE_VERSION
from common.errors import FailedPrecondition, InvalidArgument, NotFound
from orchestrator.admin_db import AdminDb, timestamp
from orchestrator.bank import KIND_TO_PROTO, reference_texts
from orchestrator.db import STATUS_FINISHED, ItemRef, decode_score, item_from_entry, score_to_json
from orchestrator.identity import parse_uuid
from orchestrator.service import asked_prompt, graded_text
from xlinterview.v1 import admin_pb2, admin_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from orchestrator.service import OrchestratorService

log = logging.getLogger(__name__)

DEFAULT_QUEUE_LIMIT = 50
MAX_QUEUE_LIMIT = 500
MAX_COMMENT_CHARS = 2000

# What a reviewer's grade says produced it: a person, no model.
SIGNAL_REVIEW = "human.review"
BACKEND_HUMAN = "human"
CODE = f"xlinterview {CODE_VERSION}"

# The newest score of answer ``a`` that no reviewer gave: the model's score, the one a
# reviewer checks. Reviewers' grades are the score rows a ``reviews`` row points at.
_MODEL_SCORE = (
    "SELECT sc.score_id, sc.value, sc.score_pb, CASE WHEN sc.score_pb IS NULL THEN sc.score END AS score"
    " FROM scores sc WHERE sc.answer_id = a.answer_id"
    " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.score_id = sc.score_id)"
    " ORDER BY sc.score_id DESC LIMIT 1"
)

# A follow-up's original answer (orchestrator.db.ItemRef.follow_up_of): the scorer graded
# both together, so the reviewer and the training data see both. Needs ``a`` and ``s``.
ORIGINAL_ANSWER_JOIN = (
    "LEFT JOIN answers o ON o.session_id = a.session_id"
    " AND o.position = (s.items -> a.position ->> 'follow_up_of')::int"
)

# One answer with everything a review task shows. The session tables belong to the
# Orchestrator service; only their stable columns are read here.
_TASK_SELECT = f"""
SELECT a.answer_id, a.session_id, a.item_id, a.item_version, a.position, a.answer, a.submitted_at,
       s.items, s.status AS session_status, COALESCE(i.candidate_name, s.candidate_name) AS candidate_name,
       i.interview_id, i.owner_user_id, o.answer AS original_answer,
       m.score_id AS model_score_id, m.value AS model_value, m.score_pb AS model_score_pb, m.score AS model_score,
       rv.reviewer_user_id, rv.created_at AS reviewed_at, rs.value AS review_value,
       rs.score_pb AS review_score_pb, CASE WHEN rs.score_pb IS NULL THEN rs.score END AS review_score
FROM answers a
JOIN sessions s ON s.session_id = a.session_id
LEFT JOIN interviews i ON i.session_id = a.session_id
{ORIGINAL_ANSWER_JOIN}
LEFT JOIN LATERAL ({_MODEL_SCORE}) m ON true
LEFT JOIN LATERAL (
    SELECT r.reviewer_user_id, r.created_at, r.score_id FROM reviews r
    WHERE r.answer_id = a.answer_id ORDER BY r.review_id DESC LIMIT 1
) rv ON true
LEFT JOIN scores rs ON rs.score_id = rv.score_id
"""

# The queue: answers whose newest score is flagged, least confident first (what the
# model is least sure of teaches it most), then oldest first. The page is chosen before
# the task columns are read, so only the page's answers are looked at in full; the
# window counts the whole queue before the limit. The flag predicate is written exactly
# as the partial index scores_needing_review's (migration 0017) so the index is used.
# A reviewed answer's newest score is the reviewer's, never flagged, so it drops out.
_QUEUE = f"""
WITH queue AS (
    SELECT sc.answer_id, sc.confidence, a.submitted_at, count(*) OVER () AS pending
    FROM scores sc JOIN answers a ON a.answer_id = sc.answer_id
    WHERE (sc.score ->> 'needs_review') = 'true'
      AND NOT EXISTS (SELECT 1 FROM scores newer WHERE newer.answer_id = sc.answer_id AND newer.score_id > sc.score_id)
      {{owner}}
    ORDER BY sc.confidence, a.submitted_at, sc.answer_id
    LIMIT $1
)
SELECT t.*, queue.pending FROM queue
JOIN LATERAL ({_TASK_SELECT} WHERE a.answer_id = queue.answer_id) t ON true
ORDER BY queue.confidence, queue.submitted_at, queue.answer_id
"""
# Sessions started directly over gRPC belong to no interview and so to no owner.
_OWNED = (
    "AND EXISTS (SELECT 1 FROM interviews i WHERE i.session_id = a.session_id AND i.owner_user_id = $2)"
)


def _model_description(model: common_pb2.Score) -> str:
    """What gave ``model``: its models as its provenance names them, else its signals
    (a rule, a guard), else its backend."""
    p = model.provenance
    if p.models:
        return ", ".join(p.models)
    if p.model_name:
        return f"{p.model_name}:{p.model_version}"
    return ", ".join(model.signals) or p.backend or "unknown scorer"


def reviewer_grade(model: common_pb2.Score, value: float, comment: str, rubric_version: str) -> common_pb2.Score:
    """The Score a reviewer's grade is stored as.

    Certain (confidence 1) and never flagged again. It grades the answer as a whole:
    the model's per-criterion results are not the reviewer's and are left out. The
    candidate's own views show an answer's current score, so the grade says nothing
    that is for staff only: not who reviewed (the ``reviews`` row keeps that) and not
    why the model's score was flagged.

    Args:
        model: The model's score the reviewer checked.
        value: The reviewer's grade, 0..1.
        comment: The reviewer's feedback on the answer; empty keeps the model's.
        rubric_version: The item version graded against, e.g. ``vlookup-basics@v2``.
    """
    return common_pb2.Score(
        value=value,
        confidence=1.0,
        feedback=comment or model.feedback,
        evidence=[
            "graded by a reviewer",
            f"the scorer gave {model.value:.2f} with confidence {model.confidence:.2f} ({_model_description(model)})",
        ],
        signals=[SIGNAL_REVIEW],
        provenance=common_pb2.ScoreProvenance(
            backend=BACKEND_HUMAN, code_version=CODE, rubric_version=rubric_version
        ),
        needs_review=False,
    )


class ReviewsService(admin_pb2_grpc.ReviewsServicer):
    """Implements ``xlinterview.v1.Reviews``.

    Args:
        db: The staff pool.
        sessions: The Orchestrator servicer: item versions, and the result of a finished
            session computed again after a review.
        max_answer_chars: The answer limit; a follow-up is shown with its original
            answer cut as the scorer got it (:func:`orchestrator.service.graded_text`).
    """

    def __init__(self, db: AdminDb, sessions: OrchestratorService, max_answer_chars: int) -> None:
        self._db = db
        self._sessions = sessions
        self._max_answer_chars = max_answer_chars

    async def _task(self, row: Any) -> admin_pb2.ReviewTask:
        entries = row["items"]
        ref = item_from_entry(entries[row["position"]]) if row["position"] < len(entries) else None
        item = (await self._sessions.item_version(ItemRef(row["item_id"], row["item_version"]))).item
        follow_up = ref is not None and ref.is_follow_up
        task = admin_pb2.ReviewTask(
            answer_id=str(row["answer_id"]),
            interview_id=str(row["interview_id"]) if row["interview_id"] is not None else "",
            session_id=str(row["session_id"]),
            candidate_name=row["candidate_name"],
            item_id=row["item_id"],
            item_version=row["item_version"],
            kind=KIND_TO_PROTO[item.kind],  # type: ignore[arg-type]
            skill_area=item.skill_area,
            prompt=asked_prompt(item, ref),
            answer=graded_text(row["answer"], row["original_answer"] if follow_up else None, self._max_answer_chars),
            references=reference_texts(item),
            submitted_at=timestamp(row["submitted_at"]),
            follow_up=follow_up,
        )
        model = decode_score(row["model_score_pb"], row["model_score"])
        if model is not None:
            task.model_score.CopyFrom(model)
        review = decode_score(row["review_score_pb"], row["review_score"])
        if review is not None:
            task.review.CopyFrom(review)
            task.reviewer_user_id = str(row["reviewer_user_id"])
            task.reviewed_at.CopyFrom(timestamp(row["reviewed_at"]))
        return task

    async def ListReviewQueue(
        self, request: admin_pb2.ListReviewQueueRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListReviewQueueResponse:
        if not 0 <= request.limit <= MAX_QUEUE_LIMIT:
            raise InvalidArgument(f"limit must be between 0 and {MAX_QUEUE_LIMIT} (0 means {DEFAULT_QUEUE_LIMIT})")
        limit = request.limit or DEFAULT_QUEUE_LIMIT
        async with self._db.connection("list the review queue") as conn:
            if request.owner_user_id:
                owner = parse_uuid(request.owner_user_id, "owner_user_id")
                rows = await conn.fetch(_QUEUE.format(owner=_OWNED), limit, owner)
            else:
                rows = await conn.fetch(_QUEUE.format(owner=""), limit)
        return admin_pb2.ListReviewQueueResponse(
            tasks=[await self._task(r) for r in rows], pending=rows[0]["pending"] if rows else 0
        )

    async def SubmitReview(
        self, request: admin_pb2.SubmitReviewRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ReviewTask:
        answer_id = parse_uuid(request.answer_id, "answer_id")
        reviewer_id = parse_uuid(request.reviewer_user_id, "reviewer_user_id")
        owner = parse_uuid(request.owner_user_id, "owner_user_id") if request.owner_user_id else None
        value = request.value
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InvalidArgument(f"value must be a number from 0 to 1, got {value!r}")
        comment = request.comment.strip()
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(f"comment is longer than {MAX_COMMENT_CHARS} characters")
        async with self._db.connection("review an answer") as conn, conn.transaction():
            if not await conn.fetchval("SELECT true FROM users WHERE user_id = $1", reviewer_id):
                raise NotFound(f"no user {reviewer_id}")
            # Reviews of one answer take turns, so its newest review is also its newest
            # score. NO KEY: the lock a score's foreign key takes does not wait for it.
            # Read after the lock, in a new snapshot, so a review committed meanwhile is seen.
            locked = await conn.fetchval(
                "SELECT answer_id FROM answers WHERE answer_id = $1 FOR NO KEY UPDATE", answer_id
            )
            row = await conn.fetchrow(_TASK_SELECT + " WHERE a.answer_id = $1", answer_id) if locked else None
            if row is None or (owner is not None and row["owner_user_id"] != owner):
                # One message for both: whether another owner's answer exists is not told.
                raise NotFound(f"no answer {answer_id}")
            model = decode_score(row["model_score_pb"], row["model_score"])
            if model is None:
                raise FailedPrecondition(f"answer {answer_id} has no score yet; it can be reviewed once it is scored")
            grade = reviewer_grade(
                model, value, comment, model.provenance.rubric_version or f"{row['item_id']}@v{row['item_version']}"
            )
            score_id = await conn.fetchval(
                "INSERT INTO scores (answer_id, value, confidence, score, score_pb, model_name, model_version, backend)"
                " VALUES ($1, $2, $3, $4, $5, '', '', $6) RETURNING score_id",
                answer_id,
                grade.value,
                grade.confidence,
                score_to_json(grade),
                grade.SerializeToString(),
                BACKEND_HUMAN,
            )
            await conn.execute(
                "INSERT INTO reviews (answer_id, score_id, reviewed_score_id, reviewer_user_id, comment)"
                " VALUES ($1, $2, $3, $4, $5)",
                answer_id,
                score_id,
                row["model_score_id"],
                reviewer_id,
                comment,
            )
            previous = row["review_value"] if row["review_value"] is not None else row["model_value"]
            await conn.execute(
                "INSERT INTO audit_log (session_id, event, detail) VALUES ($1, 'answer_reviewed', $2)",
                row["session_id"],
                {
                    "answer_id": str(answer_id),
                    "reviewer_user_id": str(reviewer_id),
                    "value": value,
                    "previous_value": previous,
                    "model_value": row["model_value"],
                },
            )
            row = await conn.fetchrow(_TASK_SELECT + " WHERE a.answer_id = $1", answer_id)
        log.info("answer %s reviewed by %s: %.2f (was %.2f)", answer_id, reviewer_id, value, previous)
        if row["session_status"] == STATUS_FINISHED:
            # After the commit: the result is computed from the scores as stored. Should
            # this fail, the caller sees the error and may submit again (the same grade
            # again is harmless), which computes the result again.
            await self._sessions.refresh_result(row["session_id"])
        return await self._task(row)

