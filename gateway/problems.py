"""RFC 9457 problem documents: the one shape every gateway error takes.

Routers raise :class:`ProblemError`; the handlers installed by
:func:`install_problem_handlers` render it, FastAPI's validation errors, Starlette's
HTTP errors and anything unexpected as ``application/problem+json``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import ERROR_DOMAIN, REASON_SCORE_NOT_STORED, REASON_SCORING_UNAVAILABLE

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"

# Problem types are URNs: stable identifiers for clients to branch on, with no
# promise that they resolve to a page.
_TYPE_PREFIX = "urn:xlinterview:problem:"


class Problem(BaseModel):
    """An RFC 9457 problem document.

    Attributes:
        type: URI naming the kind of problem; clients branch on this, not on ``title``.
        title: Short summary of the kind of problem.
        status: The HTTP status code, repeated for clients that lose the header.
        detail: What went wrong with this request, safe to show to a person.
        instance: The request path the problem occurred on.
        request_id: Id to quote when reporting the problem; matches the
            ``x-request-id`` response header and the server logs.
        errors: Per-field validation errors, for 400/422 responses only.
    """

    model_config = ConfigDict(json_schema_extra={"description": "RFC 9457 problem details."})

    type: str = Field(examples=[_TYPE_PREFIX + "not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["session 4f1c… does not exist"])
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """An error that the gateway reports to its client as a problem document.

    Args:
        status: HTTP status code of the response.
        slug: Last part of the problem type URN, e.g. ``"not-found"``.
        title: Short summary of the kind of problem.
        detail: Explanation for this request, safe to show to a person.
        headers: Extra response headers, e.g. ``Retry-After``.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}


# status, slug, title, and whether the orchestrator's own message may be shown.
# Only messages of deliberate client errors are passed on: the orchestrator writes
# those for callers, while the others can carry addresses or internals.
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str, str, bool]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid-argument", "Invalid request", True),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid-argument", "Invalid request", True),
    grpc.StatusCode.NOT_FOUND: (404, "not-found", "Not found", True),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated", "Not authenticated", True),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict", "Conflict with the interview's state", True),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already-exists", "Already exists", True),
    grpc.StatusCode.ABORTED: (409, "conflict", "Conflict with the interview's state", True),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate-limited", "Too many requests", True),
    grpc.StatusCode.UNAVAILABLE: (503, "orchestrator-unavailable", "Interview service unavailable", False),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "orchestrator-timeout", "Interview service timed out", False),
}

_UNAVAILABLE_DETAIL = "The interview service cannot be reached right now. Please try again in a moment."
_TIMEOUT_DETAIL = "The interview service did not answer in time. Please try again."
_UPSTREAM_DETAIL = "The interview service failed to handle the request."

# SubmitAnswer's UNAVAILABLE when the answer IS stored and only its score is missing (see
# the rpc's comment in orchestrator.proto). Not "cannot be reached": the page tells the
# candidate their answer is safe and waits, while the result may also come over the
# session's event stream.
_SCORING_DELAYED_REASONS = frozenset({REASON_SCORING_UNAVAILABLE, REASON_SCORE_NOT_STORED})
_SCORING_DELAYED = (503, "scoring-delayed", "Answer saved; scoring is delayed")
_SCORING_DELAYED_DETAIL = (
    "Your answer is saved. Scoring is taking longer than usual; your result will appear "
    "as soon as it is ready."
)
# Seconds a client should wait before resending a scoring-delayed answer. The failed call
# already waited out the orchestrator's scorer deadline (5 s); a resend sooner than that is
# likely to meet the same overloaded scorer and only add to its load, while the
# orchestrator's background sweep scores the answer anyway and the page hears of it.
SCORING_DELAYED_RETRY_AFTER_S = 5


def _error_reason(exc: grpc.aio.AioRpcError) -> str | None:
    """The ``ErrorInfo.reason`` in ``exc``'s rich status, if the orchestrator sent one.

    Only reasons of our own domain count. A malformed or inconsistent rich status (its
    code or message differ from the call's) is ignored: the plain code still maps.
    """
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, DecodeError):
        log.warning("ignoring a malformed rich status from the orchestrator")
        return None
    if status is None:
        return None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return str(info.reason)
    return None


def problem_from_rpc_error(exc: grpc.aio.AioRpcError, *, connected: bool = True) -> ProblemError:
    """Maps a failed orchestrator call to the problem the browser sees.

    Args:
        exc: The failed call.
        connected: Whether the channel to the orchestrator was connected. A deadline
            that ran out while still connecting means the orchestrator is unreachable,
            which is a 503, not a slow answer (504).

    Returns:
        The problem to raise; anything unmapped is a 502 with a generic message. An
        UNAVAILABLE whose rich status says the answer is stored but not yet scored is
        a 503 ``scoring-delayed`` with a longer ``Retry-After``.
    """
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and _error_reason(exc) in _SCORING_DELAYED_REASONS:
        status, slug, title = _SCORING_DELAYED
        return ProblemError(
            status, slug, title, _SCORING_DELAYED_DETAIL, {"Retry-After": str(SCORING_DELAYED_RETRY_AFTER_S)}
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not connected:
        code = grpc.StatusCode.UNAVAILABLE
    status, slug, title, show_details = _GRPC_TO_HTTP.get(
        code, (502, "orchestrator-error", "Interview service error", False)
    )
    headers: dict[str, str] = {}
    if show_details and exc.details():
        detail = exc.details() or title
    elif status == 503:
        detail = _UNAVAILABLE_DETAIL
    elif status == 504:
        detail = _TIMEOUT_DETAIL
    else:
        detail = _UPSTREAM_DETAIL if status == 502 else title
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return ProblemError(status, slug, title, detail, headers)


def request_id_of(request: Request) -> str | None:
    """The request id the middleware assigned, if it ran."""
    return getattr(request.state, "request_id", None)


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """Builds a problem response for ``request``.

    Args:
        request: The request that failed.
        status: HTTP status code.
        slug: Last part of the problem type URN.
        title: Short summary of the kind of problem.
        detail: Explanation for this request.
        headers: Extra response headers.
        errors: Per-field validation errors.

    Returns:
        A ``application/problem+json`` response.
    """
    request_id = request_id_of(request)
    body = Problem(
        type=_TYPE_PREFIX + slug,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=request_id,
        errors=errors,
    )
    all_headers = dict(headers or {})
    if request_id:
        # Handlers for unexpected errors run outside the request-id middleware, so
        # the header is set here as well.
        all_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=all_headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "http-error"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


async def _problem_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers)


async def _http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    return problem_response(
        request, exc.status_code, _slug(exc.status_code), _title(exc.status_code), detail, dict(exc.headers or {})
    )


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only loc/msg/type: pydantic's "input" would echo the whole body back and its
    # "ctx" can hold exception objects that do not serialize.
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return problem_response(
            request, 400, "malformed-json", "Malformed JSON", "The request body is not valid JSON.", errors=errors
        )
    return problem_response(
        request,
        422,
        "validation-error",
        "Invalid request",
        "The request does not match the expected schema; see errors.",
        errors=errors,
    )


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this returns, so the traceback still reaches the
    # logs; the client only learns the request id.
    return problem_response(
        request,
        500,
        "internal-error",
        "Internal server error",
        "The gateway failed to handle the request; quote the request id when reporting it.",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Makes every error ``app`` returns a problem document.

    Args:
        app: The application to install the exception handlers on.
    """
    app.add_exception_handler(ProblemError, _problem_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem bodies for ``statuses``.

    Args:
        statuses: HTTP status codes the operation can answer with a problem.

    Returns:
        A mapping to pass as a route's ``responses``.
    """
    return {
        status: {
            "description": _title(status),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
