"""Every failure is a problem document with the right status, and nothing hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from common.errors import REASON_SCORE_NOT_STORED, REASON_SCORING_UNAVAILABLE, Unavailable
from gateway.problems import SCORING_DELAYED_RETRY_AFTER_S
from gateway_fakes import FakeServer, free_port, start_as_candidate

API = "/api/v1/sessions"
ACCEPT = "/api/v1/invites/accept"
PROBLEM = "application/problem+json"
SECRET = "Traceback (most recent call last): db password=hunter2 at 10.1.2.3"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:xlinterview:problem:")
    assert problem["title"]
    assert problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


def as_candidate_of(client: httpx.AsyncClient, session_id: str = "s1") -> None:
    """Makes ``client`` send a valid candidate token for ``session_id``, minted by the app
    itself, for tests where the orchestrator cannot start a session."""
    token = client.app.state.tokens.candidate_token("i1", session_id)  # type: ignore[attr-defined]
    client.headers["authorization"] = f"Bearer {token}"


@pytest.mark.parametrize(
    ("code", "status", "shows_message"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, True),
        (grpc.StatusCode.NOT_FOUND, 404, True),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, True),
        (grpc.StatusCode.ALREADY_EXISTS, 409, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, True),
        (grpc.StatusCode.UNAVAILABLE, 503, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, False),
        (grpc.StatusCode.INTERNAL, 502, False),
        (grpc.StatusCode.UNKNOWN, 502, False),
        (grpc.StatusCode.UNIMPLEMENTED, 502, False),
        (grpc.StatusCode.PERMISSION_DENIED, 502, False),
        (grpc.StatusCode.DATA_LOSS, 502, False),
    ],
)
async def test_grpc_status_maps_to_http_problem(
    client: httpx.AsyncClient, orchestrator: FakeServer, code: grpc.StatusCode, status: int, shows_message: bool
) -> None:
    message = f"orchestrator says {code.name}" if shows_message else SECRET
    token = orchestrator.servicer.invite()
    orchestrator.servicer.fail = (code, message)
    as_candidate_of(client)
    for response in (
        await client.get(f"{API}/s1"),
        await client.post(ACCEPT, json={"invite_token": token}),
        await client.post(f"{API}/s1/answers", json={"item_id": "i", "answer": "a", "idempotency_key": "k"}),
    ):
        problem = assert_problem(response, status)
        if shows_message:
            assert problem["detail"] == message
        else:
            # Upstream internals (traces, addresses) never reach the browser.
            assert "hunter2" not in response.text and "Traceback" not in response.text
        if status in (429, 503):
            assert response.headers["retry-after"] == "1"


ANSWER = {"item_id": "i", "answer": "a", "idempotency_key": "k"}


@pytest.mark.parametrize("reason", [REASON_SCORING_UNAVAILABLE, REASON_SCORE_NOT_STORED])
async def test_an_answer_saved_but_not_scored_is_scoring_delayed(
    client: httpx.AsyncClient, orchestrator: FakeServer, reason: str
) -> None:
    # Raised in the fake as the orchestrator raises it: through the shared interceptor,
    # which sends the reason as a google.rpc.ErrorInfo in the rich status.
    orchestrator.servicer.crash = Unavailable(SECRET, reason=reason, metadata={"answer_id": "a-1"})
    as_candidate_of(client)
    response = await client.post(f"{API}/s1/answers", json=ANSWER)
    problem = assert_problem(response, 503)
    assert problem["type"] == "urn:xlinterview:problem:scoring-delayed"
    assert problem["title"] == "Answer saved; scoring is delayed"
    # Our words for the candidate, never the orchestrator's message.
    assert problem["detail"].startswith("Your answer is saved.") and "hunter2" not in response.text
    assert response.headers["retry-after"] == str(SCORING_DELAYED_RETRY_AFTER_S)
    assert SCORING_DELAYED_RETRY_AFTER_S > 1


def rich_status(message: str, reason: str, domain: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a google.rpc.Status with one ErrorInfo."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


@pytest.mark.parametrize(
    "trailers",
    [
        (),  # a plain UNAVAILABLE: no rich status at all
        rich_status("down", REASON_SCORING_UNAVAILABLE, "example.com"),  # someone else's reason
        rich_status("a different message", REASON_SCORING_UNAVAILABLE, "xlinterview.v1"),  # inconsistent
        (("grpc-status-details-bin", b"\xff not a status"),),  # malformed
    ],
    ids=["plain", "other-domain", "inconsistent", "malformed"],
)
async def test_any_other_unavailable_is_still_the_service_unavailable_problem(
    client: httpx.AsyncClient, orchestrator: FakeServer, trailers: tuple[tuple[str, bytes], ...]
) -> None:
    orchestrator.servicer.fail = (grpc.StatusCode.UNAVAILABLE, "down", trailers)
    as_candidate_of(client)
    response = await client.post(f"{API}/s1/answers", json=ANSWER)
    problem = assert_problem(response, 503)
    assert problem["type"] == "urn:xlinterview:problem:orchestrator-unavailable"
    assert problem["detail"].startswith("The interview service cannot be reached")
    assert response.headers["retry-after"] == "1"


async def test_unhandled_orchestrator_exception_is_502_without_details(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    orchestrator.servicer.crash = RuntimeError(SECRET)
    as_candidate_of(client)
    response = await client.get(f"{API}/s1")
    assert_problem(response, 502)
    assert "hunter2" not in response.text


async def test_malformed_json_is_400_problem(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    response = await client.post(ACCEPT, content=b'{"invite_token": ', headers={"content-type": "application/json"})
    problem = assert_problem(response, 400)
    assert problem["type"].endswith(":malformed-json")
    assert orchestrator.servicer.calls == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (ACCEPT, {"invite_token": 5}),
        (ACCEPT, {"invite_token": ""}),
        (ACCEPT, {"invite_token": "x" * 101}),
        (ACCEPT, {}),
        (ACCEPT, ["not", "an", "object"]),
        (f"{API}/s1/answers", {"item_id": "i", "answer": "a"}),
        (f"{API}/s1/answers", {"item_id": "", "answer": "a", "idempotency_key": "k"}),
        (f"{API}/s1/answers", {"item_id": "i", "answer": ["a"], "idempotency_key": "k"}),
    ],
)
async def test_schema_violations_are_422_problems(
    client: httpx.AsyncClient, orchestrator: FakeServer, path: str, body: object
) -> None:
    as_candidate_of(client)
    response = await client.post(path, json=body)
    problem = assert_problem(response, 422)
    assert problem["type"].endswith(":validation-error")
    assert problem["errors"] and all({"loc", "msg", "type"} <= set(e) for e in problem["errors"])
    assert orchestrator.servicer.calls == []


async def test_unknown_route_and_wrong_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)
    wrong = await client.delete(ACCEPT)
    assert_problem(wrong, 405)
    assert "POST" in wrong.headers["allow"]


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, orchestrator: FakeServer) -> None:
    limit = client.app.state.settings.max_body_bytes  # type: ignore[attr-defined]
    big = {"item_id": "i", "answer": "x" * limit, "idempotency_key": "k"}
    as_candidate_of(client)
    response = await client.post(f"{API}/s1/answers", json=big)
    problem = assert_problem(response, 413)
    assert str(limit) in problem["detail"]
    assert orchestrator.servicer.calls == []


async def test_body_at_the_limit_passes(orchestrator: FakeServer, make_client) -> None:
    async with make_client(orchestrator.address, max_body_bytes=200) as client:
        session_id = (await start_as_candidate(client, orchestrator))["session"]["session_id"]
        head = b'{"item_id": "sum-east", "idempotency_key": "k", "answer": "=11'
        body = head + b"+1" * ((200 - len(head) - 2) // 2) + b'"}'
        assert len(body) == 200
        answers = f"{API}/{session_id}/answers"
        ok = await client.post(answers, content=body, headers={"content-type": "application/json"})
        assert ok.status_code == 200, ok.text
        too_big = await client.post(answers, content=body + b" ", headers={"content-type": "application/json"})
        assert_problem(too_big, 413)


async def test_unexpected_gateway_error_is_500_problem_without_trace(orchestrator: FakeServer, make_client) -> None:
    async with make_client(orchestrator.address, raise_app_exceptions=False) as client:

        @client.app.get("/boom")  # type: ignore[attr-defined]
        async def boom() -> None:
            raise RuntimeError(SECRET)

        response = await client.get("/boom", headers={"x-request-id": "boom-1"})
    problem = assert_problem(response, 500)
    assert response.headers["x-request-id"] == "boom-1"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


async def test_orchestrator_down_is_503_quickly(make_client) -> None:
    deadline = 3.0
    async with make_client(f"127.0.0.1:{free_port()}", grpc_deadline_s=deadline) as client:
        for _ in range(2):  # the second call meets the channel in reconnect backoff
            started = time.perf_counter()
            response = await client.post(ACCEPT, json={"invite_token": "tok-0001"})
            elapsed = time.perf_counter() - started
            problem = assert_problem(response, 503)
            assert "cannot be reached" in problem["detail"]
            assert "127.0.0.1" not in response.text
            assert elapsed < deadline, elapsed


@pytest.fixture
async def blackhole() -> AsyncIterator[str]:
    """A TCP port that accepts connections and never speaks HTTP/2."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_orchestrator_that_never_answers_the_handshake_is_503_at_the_deadline(
    blackhole: str, make_client
) -> None:
    deadline = 0.5
    async with make_client(blackhole, grpc_deadline_s=deadline) as client:
        as_candidate_of(client)
        started = time.perf_counter()
        response = await client.get(f"{API}/s1")
        elapsed = time.perf_counter() - started
    # Never connected, so this is "unreachable" (503), not a slow answer (504).
    assert_problem(response, 503)
    assert deadline * 0.8 <= elapsed < deadline + 1.0, elapsed


async def test_slow_orchestrator_is_504_at_the_deadline(orchestrator: FakeServer, make_client) -> None:
    deadline = 0.3
    async with make_client(orchestrator.address, grpc_deadline_s=deadline) as client:
        assert (await client.get("/readyz")).status_code == 200  # connect first
        orchestrator.servicer.delay = 2.0
        as_candidate_of(client)
        started = time.perf_counter()
        response = await client.get(f"{API}/s1")
        elapsed = time.perf_counter() - started
    problem = assert_problem(response, 504)
    assert "did not answer in time" in problem["detail"]
    assert elapsed < deadline + 1.0, elapsed
