"""End to end: browser API → gateway → orchestrator → scorer → core_rs + Triton → PostgreSQL.

Starts the whole stack the way ``make up`` does (real PostgreSQL, Redis and Triton, each
service its own process) and drives one interview through the REST API.
"""

from __future__ import annotations

import uuid
import asyncpg
import httpx
import pytest

from e2e_helpers import accept_invite, create_invite
from stack.runner import Stack

# The model that scores each kind on the stack's defaults: formulas on the hand-set
# answer_scorer, free text on the trained answer_scorer_text (XLI_TEXT_MODEL_NAME).
SCORING_MODEL = {"QUESTION_KIND_FORMULA": "answer_scorer", "QUESTION_KIND_FREE_TEXT": "answer_scorer_text"}

pytestmark = pytest.mark.e2e

def answer_for(question: dict) -> str:
    kind = question["kind"]
    if kind == "QUESTION_KIND_FORMULA":
        return "=1+1"  # a real formula; graded by value against the reference on the sample sheet
    if kind == "QUESTION_KIND_MULTIPLE_CHOICE":
        return "0"
    if kind == "QUESTION_KIND_NUMERIC":
        return "42"  # read as a number and graded by tolerance, by rule
    return "A relative reference changes when copied, an absolute reference with $ signs stays fixed."


def test_one_interview_travels_every_layer(stack: Stack, client: httpx.Client, admin_headers: dict[str, str]) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()

    created = create_invite(client, admin_headers, "Ada Lovelace")
    started, candidate = accept_invite(client, created["invite_url"])
    session_id = started["session"]["session_id"]
    question = started["question"]
    total = question["total"]
    assert total >= 3

    submitted: list[tuple[str, str, dict]] = []
    follow_ups, previous = 0, question
    while True:
        if question.get("follow_up"):
            # An answer that missed an important rubric point gets one follow-up on its item.
            follow_ups += 1
            assert question["kind"] == "QUESTION_KIND_FREE_TEXT" and question["original_prompt"]
            assert question["item_id"] == question["follow_up_of_item_id"] + "#follow-up"
            assert question["follow_up_of_item_id"] == previous["item_id"] and not previous.get("follow_up")
        key = str(uuid.uuid4())
        text = answer_for(question)
        reply = client.post(
            f"/api/v1/sessions/{session_id}/answers",
            json={"item_id": question["item_id"], "answer": text, "idempotency_key": key},
            headers=candidate,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        score = body["score"]
        assert 0.0 <= score.get("value", 0.0) <= 1.0
        assert score["signals"], "every score names the signals that produced it"
        if question["kind"] in SCORING_MODEL:
            assert score["provenance"]["backend"] == "triton"
            assert score["provenance"]["model_name"] == SCORING_MODEL[question["kind"]]
        submitted.append((body["answer_id"], text, score))

        # A retry with the same key returns the first result and stores nothing new.
        again = client.post(
            f"/api/v1/sessions/{session_id}/answers",
            json={"item_id": question["item_id"], "answer": text, "idempotency_key": key},
            headers=candidate,
        )
        assert again.status_code == 200 and again.json()["answer_id"] == body["answer_id"]

        if body.get("finished"):
            break
        previous, question = question, body["next_question"]

    # Adaptive: total is the most questions; the engine may stop earlier once sure enough.
    # Follow-ups do not count toward the total.
    assert 3 <= len(submitted) - follow_ups <= total
    session = client.get(f"/api/v1/sessions/{session_id}", headers=candidate).json()
    assert session["status"] == "SESSION_STATUS_FINISHED"
    assert [t["answer_id"] for t in session["turns"]] == [a for a, _, _ in submitted]

    rows = _database_rows(stack.database_url, session_id)
    assert [(str(r["answer_id"]), r["answer"]) for r in rows] == [(a, t) for a, t, _ in submitted]
    assert all(r["value"] is not None for r in rows), "every stored answer has its stored score"
    for row, (_, _, score) in zip(rows, submitted, strict=True):
        assert row["value"] == pytest.approx(score.get("value", 0.0))


def test_bad_input_gets_problem_bodies_and_changes_nothing(
    stack: Stack, client: httpx.Client, admin_headers: dict[str, str]
) -> None:
    invite_url = create_invite(client, admin_headers, "Bad Input")["invite_url"]
    started, candidate = accept_invite(client, invite_url)
    session_id, question = started["session"]["session_id"], started["question"]

    reused = client.post("/api/v1/invites/accept", json={"invite_token": invite_url.split("#invite=", 1)[1]})
    assert reused.status_code == 409

    unknown = client.get(f"/api/v1/sessions/{uuid.uuid4()}/question", headers=candidate)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")

    empty = client.post(
        f"/api/v1/sessions/{session_id}/answers",
        json={"item_id": question["item_id"], "answer": "   ", "idempotency_key": str(uuid.uuid4())},
        headers=candidate,
    )
    assert empty.status_code in (400, 422) and empty.json()["status"] == empty.status_code

    wrong_item = client.post(
        f"/api/v1/sessions/{session_id}/answers",
        json={"item_id": "not-the-current-item", "answer": "=1", "idempotency_key": str(uuid.uuid4())},
        headers=candidate,
    )
    assert wrong_item.status_code == 409

    malformed = client.post(
        f"/api/v1/sessions/{session_id}/answers",
        content=b"{not json",
        headers={"content-type": "application/json", **candidate},
    )
    assert 400 <= malformed.status_code < 500

    assert _database_rows(stack.database_url, session_id) == []
    still = client.get(f"/api/v1/sessions/{session_id}/question", headers=candidate)
    assert still.status_code == 200 and still.json()["item_id"] == question["item_id"]


def _database_rows(database_url: str, session_id: str) -> list[asyncpg.Record]:
    import asyncio

    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            return await connection.fetch(
                """
                SELECT a.answer_id, a.answer, s.value
                FROM answers a LEFT JOIN scores s ON s.answer_id = a.answer_id
                WHERE a.session_id = $1
                ORDER BY a.position
                """,
                uuid.UUID(session_id),
            )
        finally:
            await connection.close()

    return asyncio.run(fetch())
