"""REST API v1 against the fake orchestrator: fields, flow, idempotency, request ids."""

from __future__ import annotations

import re

import httpx

from gateway_fakes import FakeServer, start_as_candidate

API = "/api/v1/sessions"


async def test_full_interview_maps_every_field(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    started = await start_as_candidate(client, orchestrator, "Ada Lovelace")
    session = started["session"]
    assert session["candidate_name"] == "Ada Lovelace"
    assert session["status"] == "SESSION_STATUS_IN_PROGRESS"
    assert session["turns"] == []
    assert session["started_at"].startswith("2023-11-14T22:13:20")
    assert session["finished_at"] is None
    assert session["overall_score"] == 0

    first = started["question"]
    assert first["item_id"] == "sum-east"
    assert first["item_version"] == 3
    assert first["kind"] == "QUESTION_KIND_FORMULA"
    assert first["skill_area"] == "aggregation"
    assert (first["position"], first["total"]) == (1, 2)
    assert first["options"] == []
    assert first["sheet"] == {
        "name": "Sales",
        "rows": [["Region", "Amount", "Paid"], ["East", 1250.0, True], ["West", 980.5, False], [None, 40.0]],
    }
    session_id = session["session_id"]

    current = await client.get(f"{API}/{session_id}/question")
    assert current.status_code == 200
    assert current.json() == first

    answered = await client.post(
        f"{API}/{session_id}/answers",
        json={"item_id": "sum-east", "answer": '=SUMIF(A2:A4,"East",B2:B4)', "idempotency_key": "k-1"},
    )
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["answer_id"] == "a1"
    assert body["finished"] is False
    score = body["score"]
    assert score["value"] == 1.0
    assert score["feedback"] == "Correct."
    assert score["signals"] == ["core_rs.formula_eval", "triton.answer_scorer"]
    assert score["evidence"] == ["candidate value 1250 = expected 1250"]
    assert score["criteria"] == [{"name": "value", "met": True, "weight": 1.0, "detail": "B2"}]
    assert score["provenance"]["backend"] == "triton"
    second = body["next_question"]
    assert second["kind"] == "QUESTION_KIND_MULTIPLE_CHOICE"
    assert second["options"] == ["SUM", "XLOOKUP", "LEN"]
    assert second["sheet"] is None
    assert (second["position"], second["total"]) == (2, 2)

    last = await client.post(
        f"{API}/{session_id}/answers",
        json={"item_id": "lookup-choice", "answer": "0", "idempotency_key": "k-2"},
    )
    assert last.status_code == 200
    assert last.json()["finished"] is True
    assert last.json()["next_question"] is None

    finished = await client.post(f"{API}/{session_id}/finish")
    assert finished.status_code == 200
    done = finished.json()
    assert done["status"] == "SESSION_STATUS_FINISHED"
    assert done["finished_at"] is not None
    assert done["overall_score"] == (1.0 + 0.25) / 2
    assert [t["item_id"] for t in done["turns"]] == ["sum-east", "lookup-choice"]
    assert done["turns"][1]["answer"] == "0"
    assert done["turns"][1]["score"]["value"] == 0.25

    fetched = await client.get(f"{API}/{session_id}")
    assert fetched.status_code == 200
    assert fetched.json() == done

    # Finished interviews have no current question: FAILED_PRECONDITION -> 409.
    after = await client.get(f"{API}/{session_id}/question")
    assert after.status_code == 409
    assert after.headers["content-type"] == "application/problem+json"
    assert after.json()["detail"] == "the interview is finished"


async def test_requests_reach_the_orchestrator_as_sent(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    await client.post(
        f"{API}/{session_id}/answers",
        json={"item_id": "sum-east", "answer": "=SUM(B2:B3)", "idempotency_key": "key-xyz"},
    )
    method, request, _, _ = orchestrator.servicer.calls[-1]
    assert method == "SubmitAnswer"
    assert (request.session_id, request.item_id, request.answer, request.idempotency_key) == (
        session_id,
        "sum-east",
        "=SUM(B2:B3)",
        "key-xyz",
    )


async def test_resending_an_idempotency_key_returns_the_first_result(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    body = {"item_id": "sum-east", "answer": "=1", "idempotency_key": "same-key"}
    first = await client.post(f"{API}/{session_id}/answers", json=body)
    again = await client.post(f"{API}/{session_id}/answers", json=body)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    session = (await client.get(f"{API}/{session_id}")).json()
    assert len(session["turns"]) == 1


async def test_answer_to_a_question_that_is_not_current_is_409(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    response = await client.post(
        f"{API}/{session_id}/answers",
        json={"item_id": "lookup-choice", "answer": "1", "idempotency_key": "k"},
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "lookup-choice is not the current question"


async def test_another_session_is_404_problem_and_never_asked_for(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    mine = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    theirs = (await start_as_candidate(client, orchestrator, "Someone Else"))["session"]["session_id"]
    # The client now holds the second candidate's token; the first session is not theirs.
    calls = len(orchestrator.servicer.calls)
    for path in (f"{API}/{mine}", f"{API}/{mine}/question", f"{API}/nope"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 404
        assert problem["instance"] == path
    answer = await client.post(f"{API}/{mine}/answers", json={"item_id": "sum-east", "answer": "=1", "idempotency_key": "k"})
    assert answer.status_code == 404
    assert len(orchestrator.servicer.calls) == calls
    assert (await client.get(f"{API}/{theirs}")).status_code == 200


async def test_request_id_is_echoed_and_sent_as_grpc_metadata(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    response = await client.get(f"{API}/{session_id}", headers={"x-request-id": "req-42.a:b"})
    assert response.headers["x-request-id"] == "req-42.a:b"
    _, _, metadata, _ = orchestrator.servicer.calls[-1]
    assert metadata["x-request-id"] == "req-42.a:b"

    orchestrator.servicer.sessions.clear()
    generated = await client.get(f"{API}/{session_id}")
    request_id = generated.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert generated.json()["request_id"] == request_id
    assert orchestrator.servicer.calls[-1][2]["x-request-id"] == request_id


async def test_unsafe_request_ids_are_replaced(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    for unsafe in ("has spaces", "x" * 200, "line\tbreak"):
        response = await client.get("/api/v1/nope", headers={"x-request-id": unsafe})
        assert response.headers["x-request-id"] != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_every_orchestrator_call_carries_the_deadline(
    orchestrator: FakeServer, make_client
) -> None:
    async with make_client(orchestrator.address, grpc_deadline_s=3.0) as client:
        session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
        await client.get(f"{API}/{session_id}")
        await client.get(f"{API}/{session_id}/question")
        await client.post(f"{API}/{session_id}/answers", json={"item_id": "sum-east", "answer": "=1", "idempotency_key": "k"})
        await client.post(f"{API}/{session_id}/finish")
    methods = {call[0] for call in orchestrator.servicer.calls}
    assert methods == {"StartInterview", "GetSession", "GetCurrentQuestion", "SubmitAnswer", "FinishInterview"}
    for method, _, _, remaining in orchestrator.servicer.calls:
        # None would mean no deadline; the slack absorbs gRPC's timer rounding.
        assert remaining is not None and 0 < remaining <= 3.1, (method, remaining)


def test_enum_values_a_newer_orchestrator_adds_read_as_unspecified() -> None:
    from gateway.schemas import question_from_proto, session_from_proto
    from xlinterview.v1 import orchestrator_pb2

    question = question_from_proto(orchestrator_pb2.Question(item_id="x", kind=99))  # type: ignore[arg-type]
    assert question.kind == "QUESTION_KIND_UNSPECIFIED"
    assert question.sheet is None and (question.position, question.total) == (0, 0)
    session = session_from_proto(orchestrator_pb2.Session(session_id="s", status=7))  # type: ignore[arg-type]
    assert session.status == "SESSION_STATUS_UNSPECIFIED"
    assert session.started_at is None


async def test_the_current_question_route_checks_every_request(
    orchestrator: FakeServer, make_client, client: httpx.AsyncClient
) -> None:
    # The page's most frequent call, with its own lean dependency chain (sessions.session_caller,
    # own_session) and response encoding (schemas.question_response): every check still applies.
    session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
    question = f"{API}/{session_id}/question"
    ok = await client.get(question, headers={"x-request-id": "lean-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "lean-1"
    assert ok.headers["content-type"] == "application/json"
    token = client.headers.pop("authorization")
    unauthenticated = await client.get(question)
    assert unauthenticated.status_code == 401 and unauthenticated.headers["www-authenticate"] == "Bearer"
    client.headers["authorization"] = token
    for method in ("HEAD", "POST", "PUT"):
        refused = await client.request(method, question)
        assert refused.status_code == 405 and refused.headers["allow"] == "GET"
    # Too long for a session id: refused by the API route's validation, as before.
    too_long = await client.get(f"{API}/{'s' * 129}/question")
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["loc"] == ["path", "session_id"]
    assert (await client.get(f"{API}/{'s' * 128}/question")).status_code == 404
    operation = (await client.get("/openapi.json")).json()["paths"]["/api/v1/sessions/{session_id}/question"]["get"]
    assert operation["parameters"][0]["schema"]["maxLength"] == 128
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Question"}

    async with make_client(orchestrator.address, rate_limit_ip_per_min=2) as limited:
        session_id = (await start_as_candidate(limited, orchestrator))["session"]["session_id"]  # 1 IP hit
        assert (await limited.get(f"{API}/{session_id}/question")).status_code == 200
        over = await limited.get(f"{API}/{session_id}/question")
        assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 60
        assert over.headers["content-type"] == "application/problem+json"
