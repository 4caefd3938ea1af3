"""The review queue API against the fake orchestrator: roles, owners, translation and bad input."""

from __future__ import annotations

import grpc
import httpx
import pytest

from gateway_fakes import STAFF, FakeServer, sign_in, start_as_candidate
from xlinterview.v1 import common_pb2

API = "/api/v1/reviews"
IV, IV2, ADMIN, ANALYST = (STAFF[e][0] for e in ("iv@example.com", "iv2@example.com", "admin@example.com", "an@example.com"))
# Answer ids are UUIDs: one in an interview of IV's, one in IV2's.
MINE, THEIRS = "5e1f0000-0000-4000-8000-00000000000b", "5e1f0000-0000-4000-8000-00000000000c"


def queue_two(orchestrator: FakeServer) -> None:
    orchestrator.servicer.queue_review(MINE, IV, confidence=0.4)
    orchestrator.servicer.queue_review(THEIRS, IV2, confidence=0.2, kind=common_pb2.QUESTION_KIND_FORMULA)


def requests_of(orchestrator: FakeServer, method: str) -> list:
    return [request for name, request, _, _ in orchestrator.servicer.calls if name == method]


async def test_the_queue_is_translated_and_narrowed_to_the_callers_interviews(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    queue_two(orchestrator)

    everyone = await client.get(API, headers=await sign_in(client, "admin@example.com"))
    assert everyone.status_code == 200, everyone.text
    body = everyone.json()
    assert body["pending"] == 2
    assert [t["answer_id"] for t in body["tasks"]] == [THEIRS, MINE]  # least confident first
    task = body["tasks"][1]
    assert task["kind"] == "QUESTION_KIND_FREE_TEXT" and body["tasks"][0]["kind"] == "QUESTION_KIND_FORMULA"
    assert task["interview_id"] == f"interview-of-{MINE}"
    assert (task["candidate_name"], task["skill_area"]) == ("Ada Lovelace", "lookups")
    assert task["references"] == ["The lookup value is not in the first column."]
    assert task["model_score"]["needs_review"] is True and task["model_score"]["review_reason"] == "not English"
    assert task["model_score"]["confidence"] == pytest.approx(0.4)
    assert task["review"] is None and task["reviewed_at"] is None and task["reviewer_user_id"] == ""

    analyst = await client.get(API, params={"limit": 1}, headers=await sign_in(client, "an@example.com"))
    assert analyst.status_code == 200 and len(analyst.json()["tasks"]) == 1 and analyst.json()["pending"] == 2

    mine = await client.get(API, headers=await sign_in(client, "iv@example.com"))
    assert [t["answer_id"] for t in mine.json()["tasks"]] == [MINE]
    assert [(r.owner_user_id, r.limit) for r in requests_of(orchestrator, "ListReviewQueue")] == [
        ("", 50),
        ("", 1),
        (IV, 50),
    ]


async def test_a_grade_is_sent_with_the_reviewer_and_their_owner_filter(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    queue_two(orchestrator)

    graded = await client.post(
        f"{API}/{MINE}", json={"score": 0.8, "comment": "  Right idea.  "}, headers=await sign_in(client, "iv@example.com")
    )
    assert graded.status_code == 200, graded.text
    review = graded.json()["review"]
    assert review["value"] == pytest.approx(0.8) and review["signals"] == ["human.review"]
    assert graded.json()["reviewer_user_id"] == IV
    by_admin = await client.post(f"{API}/{THEIRS}", json={"score": 0}, headers=await sign_in(client, "admin@example.com"))
    assert by_admin.status_code == 200, by_admin.text

    sent = requests_of(orchestrator, "SubmitReview")
    assert [(r.answer_id, r.reviewer_user_id, r.owner_user_id, r.value, r.comment) for r in sent] == [
        (MINE, IV, IV, pytest.approx(0.8), "Right idea."),
        (THEIRS, ADMIN, "", 0.0, ""),
    ]


async def test_who_may_not_grade_is_refused_before_the_orchestrator_is_asked(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    queue_two(orchestrator)
    analyst = await client.post(f"{API}/{MINE}", json={"score": 1}, headers=await sign_in(client, "an@example.com"))
    assert analyst.status_code == 403 and analyst.headers["content-type"] == "application/problem+json"
    assert (await client.get(API)).status_code == 401

    await start_as_candidate(client, orchestrator)  # the client now sends a candidate's token
    assert (await client.get(API)).status_code == 403
    assert (await client.post(f"{API}/{MINE}", json={"score": 1})).status_code == 403
    assert requests_of(orchestrator, "SubmitReview") == [] and requests_of(orchestrator, "ListReviewQueue") == []


@pytest.mark.parametrize(
    "body",
    [
        {"score": 1.5},
        {"score": -0.1},
        {},
        {"score": "high"},
        {"score": 0.5, "comment": "x" * 2001},
    ],
    ids=["over-1", "negative", "missing", "not-a-number", "long-comment"],
)
async def test_bad_grades_are_422_problems_and_nothing_is_sent(
    client: httpx.AsyncClient, orchestrator: FakeServer, body: dict
) -> None:
    queue_two(orchestrator)
    response = await client.post(f"{API}/{MINE}", json=body, headers=await sign_in(client, "admin@example.com"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json" and response.json()["status"] == 422
    assert requests_of(orchestrator, "SubmitReview") == []


async def test_malformed_json_and_bad_limits_are_refused(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    headers = {**await sign_in(client, "admin@example.com"), "content-type": "application/json"}
    malformed = await client.post(f"{API}/{MINE}", content=b'{"score": ', headers=headers)
    assert malformed.status_code == 400 and malformed.headers["content-type"] == "application/problem+json"
    # Python's JSON reader takes these literals; a grade must still be a finite number.
    for literal in (b"NaN", b"Infinity"):
        not_finite = await client.post(f"{API}/{MINE}", content=b'{"score": ' + literal + b"}", headers=headers)
        assert not_finite.status_code == 422 and not_finite.headers["content-type"] == "application/problem+json"
    for limit in (0, 501, "many"):
        assert (await client.get(API, params={"limit": limit}, headers=headers)).status_code == 422
    assert requests_of(orchestrator, "SubmitReview") == [] and requests_of(orchestrator, "ListReviewQueue") == []


@pytest.mark.parametrize(
    "answer_id",
    ["answer-mine", MINE.replace("-", ""), MINE + "0", MINE.replace("5", "g"), "x" * 65],
    ids=["words", "no-hyphens", "too-long", "not-hex", "very-long"],
)
async def test_an_answer_id_that_is_not_a_uuid_is_a_422_problem(
    client: httpx.AsyncClient, orchestrator: FakeServer, answer_id: str
) -> None:
    headers = await sign_in(client, "admin@example.com")
    response = await client.post(f"{API}/{answer_id}", json={"score": 1}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert requests_of(orchestrator, "SubmitReview") == []


async def test_api_keys_act_with_their_role_on_behalf_of_their_owner(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    queue_two(orchestrator)
    admin = await sign_in(client, "admin@example.com")
    keys = {}
    for role in ("ROLE_ANALYST", "ROLE_INTERVIEWER"):
        issued = await client.post("/api/v1/api-keys", json={"name": role, "role": role}, headers=admin)
        keys[role] = {"x-api-key": issued.json()["secret"]}

    assert (await client.get(API, headers=keys["ROLE_ANALYST"])).json()["pending"] == 2
    refused = await client.post(f"{API}/{MINE}", json={"score": 1}, headers=keys["ROLE_ANALYST"])
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    # An interviewer key created by the admin works on the admin's own interviews, as
    # the interviews list does; neither queued answer is in one of them.
    assert (await client.get(API, headers=keys["ROLE_INTERVIEWER"])).json() == {"tasks": [], "pending": 0}
    assert (await client.post(f"{API}/{MINE}", json={"score": 1}, headers=keys["ROLE_INTERVIEWER"])).status_code == 404
    assert [r.owner_user_id for r in requests_of(orchestrator, "ListReviewQueue")] == ["", ADMIN]
    sent = requests_of(orchestrator, "SubmitReview")
    assert [(r.reviewer_user_id, r.owner_user_id) for r in sent] == [(ADMIN, ADMIN)]


@pytest.mark.parametrize(
    ("code", "status"),
    [(grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.FAILED_PRECONDITION, 409), (grpc.StatusCode.INVALID_ARGUMENT, 400)],
)
async def test_the_orchestrators_refusals_become_problems(
    client: httpx.AsyncClient, orchestrator: FakeServer, code: grpc.StatusCode, status: int
) -> None:
    headers = await sign_in(client, "admin@example.com")
    orchestrator.servicer.fail = (code, "answer has no score yet")
    response = await client.post(f"{API}/{MINE}", json={"score": 0.5}, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "answer has no score yet"


async def test_another_interviewers_answer_is_not_found(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    queue_two(orchestrator)
    response = await client.post(f"{API}/{THEIRS}", json={"score": 1}, headers=await sign_in(client, "iv@example.com"))
    assert response.status_code == 404 and response.json()["status"] == 404
    assert not orchestrator.servicer.review_tasks[THEIRS][1].HasField("review")
