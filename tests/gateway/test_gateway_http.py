"""The gateway over real HTTP (uvicorn), the candidate page, docs and probes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from grpc_health.v1 import health_pb2

from gateway_fakes import FakeServer, free_port, serve
from gateway.orchestrator import ORCHESTRATOR_SERVICE
from gateway.schemas import question_from_proto, session_from_proto
from gateway.settings import GatewaySettings
from xlinterview.v1 import common_pb2, orchestrator_pb2

API = "/api/v1/invites/accept"


@pytest.fixture
async def served(orchestrator: FakeServer) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free port; yields its base URL."""
    async with serve(GatewaySettings(orchestrator_address=orchestrator.address)) as url:
        yield url


async def _chunks(total: int, size: int = 4096) -> AsyncIterator[bytes]:
    sent = 0
    head = b'{"invite_token": "'
    yield head
    sent += len(head)
    while sent < total - 2:
        piece = min(size, total - 2 - sent)
        yield b"a" * piece
        sent += piece
    yield b'"}'


async def test_chunked_body_over_the_limit_is_413(served: str, orchestrator: FakeServer) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.post(
            API, content=_chunks(200 * 1024), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413
    assert orchestrator.servicer.calls == []


async def test_chunked_body_under_the_limit_reaches_the_route(served: str, orchestrator: FakeServer) -> None:
    token = orchestrator.servicer.invite("Grace Hopper").encode()

    async def small() -> AsyncIterator[bytes]:
        for part in (b'{"invite_', b'token": "', token, b'"}'):
            yield part

    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.post(API, content=small(), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["session"]["candidate_name"] == "Grace Hopper"


async def test_declared_length_over_the_limit_is_413_over_http(served: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.post(
            API, content=b"x" * (65 * 1024), headers={"content-type": "application/json", "x-request-id": "big-1"}
        )
    assert response.status_code == 413
    assert response.headers["x-request-id"] == "big-1"
    assert response.json()["request_id"] == "big-1"


async def test_candidate_page_and_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert '<script src="/static/app.js"' in html
    assert 'href="/static/app.css"' in html
    # Everything from this origin: no CDN or other host in any src/href.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/", "#")), url
    for asset, media in (("/static/app.js", "javascript"), ("/static/app.css", "text/css"), ("/static/favicon.svg", "svg")):
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert media in response.headers["content-type"], asset
        assert not re.search(r"(?:import|url\(|fetch\()\s*['\"]?https?://", response.text), asset


async def test_page_has_the_screens_and_accessibility_hooks(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    assert "open the invite link" in html
    assert "Start interview" in html
    assert 'aria-live="polite"' in html
    assert 'id="question-heading" tabindex="-1"' in html
    js = (await client.get("/static/app.js")).text
    # The page's contract with the API and with a refresh.
    for needle in (
        "/api/v1/sessions", "/api/v1/invites", "#invite=", "Authorization", "idempotency_key", "randomUUID",
        "localStorage", "Scored by", "of ${total}",
        # A follow-up shows its label and the original question for context.
        "q.follow_up", "q.original_prompt", "turn.follow_up",
    ):
        assert needle in js, needle
    for needle in ('id="question-context"', 'id="question-context-prompt"', 'id="question-follow-up"', "Follow-up:"):
        assert needle in html, needle


def test_follow_up_questions_reach_the_page() -> None:
    question = orchestrator_pb2.Question(
        item_id="why-absolute#follow-up",
        item_version=2,
        kind=common_pb2.QUESTION_KIND_FREE_TEXT,
        prompt="How do you write one?",
        position=4,
        total=12,
        follow_up=True,
        follow_up_of_item_id="why-absolute",
        original_prompt="Why would you use an absolute reference?",
    )
    body = question_from_proto(question).model_dump(mode="json")
    assert (body["follow_up"], body["follow_up_of_item_id"], body["original_prompt"]) == (
        True, "why-absolute", "Why would you use an absolute reference?"
    )
    plain = question_from_proto(orchestrator_pb2.Question(item_id="q", prompt="p")).model_dump(mode="json")
    assert (plain["follow_up"], plain["follow_up_of_item_id"], plain["original_prompt"]) == (False, "", "")
    turn = orchestrator_pb2.Turn(answer_id="a", item_id="why-absolute", prompt="How do you write one?", follow_up=True)
    session = session_from_proto(orchestrator_pb2.Session(session_id="s", turns=[turn]))
    assert session.turns[0].follow_up is True


async def test_openapi_and_local_swagger_ui(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert set(paths) >= {
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/interviews",
        "/api/v1/interviews/{interview_id}",
        "/api/v1/interviews/{interview_id}/invite",
        "/api/v1/interviews/{interview_id}/cancel",
        "/api/v1/interviews/{interview_id}/report",
        "/api/v1/invites/preview",
        "/api/v1/invites/accept",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/question",
        "/api/v1/sessions/{session_id}/answers",
        "/api/v1/sessions/{session_id}/finish",
        "/api/v1/api-keys",
        "/api/v1/bank/items",
        "/healthz",
        "/readyz",
    }
    created = paths["/api/v1/interviews"]["post"]["responses"]
    assert created["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/InvitedInterview")
    assert created["503"]["content"]["application/problem+json"]["schema"]["$ref"] == "#/components/schemas/Problem"
    assert {"Problem", "Question", "Score", "Session", "SubmitAnswerResult", "Report"} <= set(schema["components"]["schemas"])

    docs = await client.get("/docs")
    assert docs.status_code == 200
    pytest.importorskip("swagger_ui_bundle")
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert (await client.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200


async def test_healthz_needs_no_orchestrator(make_client) -> None:
    async with make_client(f"127.0.0.1:{free_port()}") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_follows_the_orchestrator_health_service(
    client: httpx.AsyncClient, orchestrator: FakeServer
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "detail": "orchestrator SERVING"}

    await orchestrator.health.set(ORCHESTRATOR_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["content-type"] == "application/problem+json"
    assert "NOT_SERVING" in not_ready.json()["detail"]


async def test_readyz_is_503_quickly_when_the_orchestrator_is_down(make_client) -> None:
    async with make_client(f"127.0.0.1:{free_port()}", readiness_deadline_s=1.0) as client:
        started = time.perf_counter()
        response = await client.get("/readyz")
        elapsed = time.perf_counter() - started
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
    assert elapsed < 1.0, elapsed


async def test_huge_chunked_body_is_cut_off_and_the_server_keeps_serving(served: str, orchestrator: FakeServer) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        try:
            response = await client.post(API, content=_chunks(8 * 1024 * 1024, 64 * 1024))
        except httpx.TransportError:
            pass  # past the drain allowance the gateway may simply close on the client
        else:
            assert response.status_code == 413
        assert orchestrator.servicer.calls == []
        assert (await client.get("/healthz")).status_code == 200


def _cells(*values: object) -> common_pb2.SheetRow:
    def cell(value: object) -> common_pb2.CellValue:
        if value is None:
            return common_pb2.CellValue()
        kind = "boolean" if isinstance(value, bool) else "number" if isinstance(value, float) else "text"
        return common_pb2.CellValue(**{kind: value})

    return common_pb2.SheetRow(cells=[cell(v) for v in values])


@pytest.mark.parametrize(
    "question",
    [
        orchestrator_pb2.Question(
            item_id="sumifs", item_version=3, kind=common_pb2.QUESTION_KIND_FORMULA, prompt="Sum «East» — ünïcode",
            skill_area="lookup", position=1, total=12,
            sheet=common_pb2.SampleSheet(name="Sales", rows=[_cells("Region", "Amount", None),
                                                             _cells("East", 1234.5, True), _cells("West", 1e-7, False)]),
        ),
        orchestrator_pb2.Question(item_id="mc", kind=common_pb2.QUESTION_KIND_MULTIPLE_CHOICE, options=["A", "B"],
                                  position=2, total=12),
        orchestrator_pb2.Question(item_id="num", kind=common_pb2.QUESTION_KIND_NUMERIC, unit="%", decimals=0,
                                  position=3, total=12),
        orchestrator_pb2.Question(item_id="sumifs#follow-up", kind=common_pb2.QUESTION_KIND_FREE_TEXT, follow_up=True,
                                  follow_up_of_item_id="sumifs", original_prompt="Sum East", position=1, total=12),
        orchestrator_pb2.Question(item_id="future", kind=99, position=4, total=12),  # a kind this gateway does not know
        orchestrator_pb2.Question(item_id="nan", kind=common_pb2.QUESTION_KIND_FORMULA, position=1, total=1,
                                  sheet=common_pb2.SampleSheet(name="S", rows=[_cells(float("nan"), float("inf"))])),
    ],
    ids=["formula", "choice", "numeric", "follow-up", "unknown-kind", "nan"],
)
def test_the_question_response_is_the_question_models_json(question: orchestrator_pb2.Question) -> None:
    from gateway.schemas import question_response

    response = question_response(question)
    assert response.media_type == "application/json"
    assert json.loads(response.body) == json.loads(question_from_proto(question).model_dump_json())


_SCORE = common_pb2.Score(
    value=0.75, confidence=0.9, feedback="Right range, wrong criterion.", evidence=["C2:C9"], signals=["formula"],
    criteria=[common_pb2.CriterionResult(name="sums_east", met=True, weight=0.6, detail="East only")],
    provenance=common_pb2.ScoreProvenance(model_name="answer_scorer", model_version="3", backend="triton"),
    needs_review=True, review_reason="low confidence",
)


@pytest.mark.parametrize(
    "response",
    [
        orchestrator_pb2.SubmitAnswerResponse(
            answer_id="a1", score=_SCORE,
            next_question=orchestrator_pb2.Question(item_id="mc", kind=common_pb2.QUESTION_KIND_MULTIPLE_CHOICE,
                                                    options=["A", "B"], position=2, total=12),
        ),
        orchestrator_pb2.SubmitAnswerResponse(answer_id="a2", score=_SCORE, finished=True),
        orchestrator_pb2.SubmitAnswerResponse(answer_id="a3", next_question=orchestrator_pb2.Question(item_id="f", kind=99)),
        orchestrator_pb2.SubmitAnswerResponse(
            answer_id="a4", score=common_pb2.Score(value=1.0),
            next_question=orchestrator_pb2.Question(item_id="nan", kind=common_pb2.QUESTION_KIND_FORMULA,
                                                    sheet=common_pb2.SampleSheet(name="S", rows=[_cells(float("nan"))])),
        ),
    ],
    ids=["next-question", "finished", "unknown-kind", "nan"],
)
def test_the_submit_response_is_the_result_models_json(response: orchestrator_pb2.SubmitAnswerResponse) -> None:
    from common.session_events import submit_result_json
    from gateway.schemas import SubmitAnswerResult, submit_result_response

    encoded = json.loads(submit_result_response(submit_result_json(response)).body)
    assert encoded == json.loads(SubmitAnswerResult.model_validate(submit_result_json(response)).model_dump_json())
    assert "needs_review" not in json.dumps(encoded)  # candidates never see review flags
