"""The gateway's one connection to the orchestrator, and the per-request client on it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.problems import REQUEST_ID_HEADER, problem_from_rpc_error
from xlinterview.v1 import admin_pb2, admin_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc

log = logging.getLogger(__name__)

ORCHESTRATOR_SERVICE = orchestrator_pb2.DESCRIPTOR.services_by_name["Orchestrator"].full_name
"""Full gRPC service name, as registered with the orchestrator's health servicer."""

_CHANNEL_OPTIONS = [
    # gRPC's default reconnect backoff grows to 120 s, so a restarted orchestrator
    # could stay "unavailable" to the gateway for minutes; cap it at a few seconds.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]

_Response = TypeVar("_Response", bound=Message)


class OrchestratorConnection:
    """One ``grpc.aio`` channel to the orchestrator, shared by all requests.

    Opened by the app's lifespan and closed on shutdown. Creating the channel does
    not connect: it connects on first use and reconnects by itself, so the gateway
    starts even while the orchestrator is down.

    Args:
        address: ``host:port`` of the orchestrator.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self.stub = orchestrator_pb2_grpc.OrchestratorStub(self.channel)
        # The staff services are served by the orchestrator process too.
        self.identity = admin_pb2_grpc.IdentityStub(self.channel)
        self.interviews = admin_pb2_grpc.InterviewsStub(self.channel)
        self.reviews = admin_pb2_grpc.ReviewsStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def is_connected(self) -> bool:
        """Whether the channel currently has a working connection."""
        return bool(self.channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY)

    async def close(self) -> None:
        """Closes the channel, cancelling calls still in flight."""
        await self.channel.close()

    async def check_serving(self, request_id: str, timeout: float) -> tuple[bool, str]:
        """Asks the orchestrator's standard health service whether it serves.

        Args:
            request_id: Passed as ``x-request-id`` metadata.
            timeout: Deadline of the check, in seconds.

        Returns:
            ``(serving, reason)``: ``reason`` says why not, in words safe to show.
        """
        try:
            response = await self.health.Check(
                health_pb2.HealthCheckRequest(service=ORCHESTRATOR_SERVICE),
                timeout=timeout,
                metadata=((REQUEST_ID_HEADER, request_id),),
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("orchestrator health check failed: %s %s", exc.code().name, exc.details())
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return False, "orchestrator unreachable"
            return False, f"orchestrator health check failed ({exc.code().name})"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return response.status == health_pb2.HealthCheckResponse.SERVING, f"orchestrator {status}"


class _RpcClient:
    """Calls made on behalf of one HTTP request.

    Every call carries the gateway's deadline and the request id, and a failed call
    raises :class:`gateway.problems.ProblemError`, never a raw gRPC error.

    Args:
        connection: The shared connection.
        timeout: Deadline of each call, in seconds.
        request_id: Sent as ``x-request-id`` metadata so the logs of both services
            can be joined.
    """

    def __init__(self, connection: OrchestratorConnection, timeout: float, request_id: str) -> None:
        self._connection = connection
        self._stub = connection.stub
        self._timeout = timeout
        self._metadata = ((REQUEST_ID_HEADER, request_id),)

    async def _call(self, method: Callable[..., Awaitable[_Response]], request: Message) -> _Response:
        try:
            # wait_for_ready stays off: with the orchestrator down the call fails at
            # once with UNAVAILABLE instead of waiting out the deadline.
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            problem = problem_from_rpc_error(exc, connected=self._connection.is_connected())
            level = logging.WARNING if problem.status >= 500 else logging.INFO
            log.log(level, "orchestrator call failed: %s %s", exc.code().name, exc.details())
            raise problem from None


class OrchestratorClient(_RpcClient):
    """``xlinterview.v1.Orchestrator`` calls for one HTTP request: the candidate's session."""

    async def get_current_question(self, session_id: str) -> orchestrator_pb2.Question:
        """The question the session waits on; see ``Orchestrator.GetCurrentQuestion``."""
        return await self._call(
            self._stub.GetCurrentQuestion, orchestrator_pb2.GetCurrentQuestionRequest(session_id=session_id)
        )

    async def submit_answer(
        self, session_id: str, item_id: str, answer: str, idempotency_key: str
    ) -> orchestrator_pb2.SubmitAnswerResponse:
        """Stores and scores an answer; see ``Orchestrator.SubmitAnswer``."""
        return await self._call(
            self._stub.SubmitAnswer,
            orchestrator_pb2.SubmitAnswerRequest(
                session_id=session_id, item_id=item_id, answer=answer, idempotency_key=idempotency_key
            ),
        )

    async def get_session(self, session_id: str) -> orchestrator_pb2.Session:
        """The session with its turns; see ``Orchestrator.GetSession``."""
        return await self._call(self._stub.GetSession, orchestrator_pb2.GetSessionRequest(session_id=session_id))

    async def finish_interview(self, session_id: str) -> orchestrator_pb2.Session:
        """Ends the session; see ``Orchestrator.FinishInterview``."""
        return await self._call(
            self._stub.FinishInterview, orchestrator_pb2.FinishInterviewRequest(session_id=session_id)
        )


class AdminClient(_RpcClient):
    """``xlinterview.v1.Identity``, ``Interviews`` and ``Reviews`` calls for one HTTP request.

    Thin on purpose: the routers build the request messages, so each RPC's fields
    are visible where the JSON body is read.
    """

    async def identity(self, method: str, request: Message) -> Any:
        """Calls ``Identity.<method>`` with ``request``."""
        return await self._call(getattr(self._connection.identity, method), request)

    async def interviews(self, method: str, request: Message) -> Any:
        """Calls ``Interviews.<method>`` with ``request``."""
        return await self._call(getattr(self._connection.interviews, method), request)

    async def reviews(self, method: str, request: Message) -> Any:
        """Calls ``Reviews.<method>`` with ``request``."""
        return await self._call(getattr(self._connection.reviews, method), request)

    async def get_interview(self, interview_id: str) -> admin_pb2.Interview:
        """One interview; see ``Interviews.GetInterview``."""
        result: admin_pb2.Interview = await self.interviews(
            "GetInterview", admin_pb2.InterviewRequest(interview_id=interview_id)
        )
        return result
