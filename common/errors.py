"""Errors a service raises on purpose, each bound to the gRPC status it maps to.

Handlers raise these; :class:`common.grpc_server.ErrorInterceptor` turns them into
statuses so every service reports bad input the same way. An error can also carry a
machine-readable reason (the gRPC rich error model: a ``google.rpc.ErrorInfo`` in the
status details), for callers that must tell two errors with the same code apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import grpc
from google.rpc import error_details_pb2

# The ``ErrorInfo.domain`` of every reason below: reasons are unique within it.
ERROR_DOMAIN: Final = "xlinterview.v1"

# Reasons of ``Orchestrator.SubmitAnswer``'s UNAVAILABLE when the answer IS stored but has
# no score yet (see its comment in proto/xlinterview/v1/orchestrator.proto). Defined here,
# not in the orchestrator, because the gateway branches on them too.
# The scorer failed or did not answer in time; the orchestrator's background sweep retries.
REASON_SCORING_UNAVAILABLE: Final = "SCORING_UNAVAILABLE"
# The answer was scored but the score could not be stored; the sweep or a retry scores it again.
REASON_SCORE_NOT_STORED: Final = "SCORE_NOT_STORED"


class ServiceError(Exception):
    """An error with a gRPC status code and a message safe to show to callers.

    Args:
        message: The status message, safe to show to callers.
        reason: A stable UPPER_SNAKE_CASE identifier of this error's cause, sent as a
            ``google.rpc.ErrorInfo`` in domain :data:`ERROR_DOMAIN`; ``None`` sends a
            plain status.
        metadata: Details of the cause for machines (e.g. ``{"answer_id": ...}``);
            only sent with a ``reason``.

    Attributes:
        code: The gRPC status code this error maps to.
        message: The status message.
        error_info: The ``ErrorInfo`` to send, or ``None`` without a reason.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_info: error_details_pb2.ErrorInfo | None = None
        if reason is not None:
            self.error_info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
        elif metadata:
            raise ValueError("metadata needs a reason")


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
