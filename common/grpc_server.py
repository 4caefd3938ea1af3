"""The frame every gRPC server runs in: health, reflection, errors, request ids, metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from common.errors import InvalidArgument, ServiceError
from common.logging import new_request_id, request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"

RPC_TOTAL = Counter("xli_grpc_requests_total", "gRPC requests handled", ["method", "code"])
RPC_LATENCY = Histogram(
    "xli_grpc_request_seconds",
    "gRPC handler latency",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


Deserializer = Callable[[bytes], Any] | None


def _decode(deserialize: Deserializer, raw: bytes) -> Any:
    # Decoding here instead of in grpc core turns a malformed message into
    # INVALID_ARGUMENT with a message, rather than grpc's bare UNKNOWN.
    if deserialize is None:
        return raw
    try:
        return deserialize(raw)
    except DecodeError as exc:
        raise InvalidArgument(f"malformed request message: {exc}") from None


class _Method:
    """The per-method part of the frame, built once per method rather than once per call.

    Label lookups in prometheus_client take a lock and build a tuple, and a fresh
    ``RpcMethodHandler`` per call is a handful of allocations; at thousands of calls a
    second on one event loop both show up, so the metric children and handlers are kept.
    """

    __slots__ = ("name", "latency", "_totals")

    def __init__(self, name: str) -> None:
        self.name = name
        self.latency = RPC_LATENCY.labels(name)
        self._totals: dict[grpc.StatusCode, Any] = {}

    def finished(self, code: grpc.StatusCode, started: float) -> None:
        """Counts one finished call and records its latency."""
        total = self._totals.get(code)
        if total is None:
            total = self._totals[code] = RPC_TOTAL.labels(self.name, code.name)
        total.inc()
        self.latency.observe(time.perf_counter() - started)


def _rich_status(exc: ServiceError, info: error_details_pb2.ErrorInfo) -> grpc.Status:
    """``exc`` as a status in the gRPC rich error model: its code and message, with
    ``info`` packed into a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer.

    The packed status repeats the code and message exactly: ``rpc_status.from_call``
    on the client refuses a status whose two copies disagree.
    """
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=exc.code.value[0], message=exc.message, details=[detail])
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``x-request-id``, or a fresh one (32 hex digits)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and value:
            return str(value)
    return new_request_id()


class _RpcScope:
    """Sets the request id, maps errors to statuses and records metrics around one RPC.

    A plain class rather than ``contextlib.asynccontextmanager``: the generator-based
    version costs several microseconds per call on the event loop's thread.
    """

    __slots__ = ("_method", "_context", "_started")

    def __init__(self, method: _Method, context: grpc.aio.ServicerContext) -> None:
        self._method = method
        self._context = context
        self._started = 0.0

    async def __aenter__(self) -> None:
        # grpc.aio runs each RPC in its own task, so the value never leaks into another
        # RPC and needs no reset (a reset fails when a stream is torn down from another context).
        request_id_var.set(_request_id(self._context))
        self._started = time.perf_counter()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        context = self._context
        unexpected = isinstance(exc, Exception) and not isinstance(exc, (ServiceError, grpc.aio.AbortError))
        if isinstance(exc, ServiceError):
            code = exc.code
        elif isinstance(exc, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif isinstance(exc, grpc.aio.AbortError):
            code = context.code() or grpc.StatusCode.UNKNOWN
        elif unexpected:
            code = grpc.StatusCode.INTERNAL
            log.error("unhandled error in %s", self._method.name, exc_info=exc)
        else:
            code = grpc.StatusCode.OK  # no error, or a stream closed by its reader
        # Counted before an error status is sent: a caller that already holds the status
        # (possibly on this very event loop) must find its call counted.
        self._method.finished(code, self._started)
        if isinstance(exc, ServiceError):
            if exc.error_info is None:
                await context.abort(exc.code, exc.message)
            else:
                await context.abort_with_status(_rich_status(exc, exc.error_info))
        elif unexpected:
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")


def _wrap_unary(
    method: _Method, behavior: Callable[..., Awaitable[Any]], deserialize: Deserializer
) -> Callable[..., Awaitable[Any]]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        async with _RpcScope(method, context):
            return await behavior(_decode(deserialize, raw), context)

    return handler


def _wrap_stream(method: _Method, behavior: Callable[..., Any], deserialize: Deserializer) -> Callable[..., Any]:
    async def handler(raw_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        async def requests() -> Any:
            async for raw in raw_iterator:
                yield _decode(deserialize, raw)

        async with _RpcScope(method, context):
            async for response in behavior(requests(), context):
                yield response

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps :class:`ServiceError` to its status, hides other exceptions, sets the request id.

    Unary-unary and stream-stream handlers are wrapped; those are the only shapes the
    v1 contracts use. Each method is wrapped once, on its first call: handlers are
    registered before the server starts and never change afterwards.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        wrapped = self._wrapped.get(handler_call_details.method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: not cached, grpc answers UNIMPLEMENTED
        method = _Method(handler_call_details.method.rsplit("/", 1)[-1])
        if handler.unary_unary is not None:
            handler = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        elif handler.stream_stream is not None:
            handler = grpc.stream_stream_rpc_method_handler(
                _wrap_stream(method, handler.stream_stream, handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        self._wrapped[handler_call_details.method] = handler
        return handler


def create_server(max_message_bytes: int = 4 * 1024 * 1024) -> grpc.aio.Server:
    """Builds a grpc.aio server with the shared interceptors and message limits."""
    return grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )


def add_health_and_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> health.aio.HealthServicer:
    """Adds standard gRPC health checking and server reflection for the named services.

    Returns:
        The health servicer, so the caller can mark services serving or not.
    """
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return health_servicer


async def serve(
    server: grpc.aio.Server,
    address: str,
    service_names: Iterable[str],
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Adds health checking and reflection, binds, serves until SIGTERM/SIGINT.

    Args:
        server: Server with the services already added.
        address: ``host:port`` to listen on.
        service_names: Full names of the services added (for health and reflection).
        on_stop: Awaited after the server has stopped, to close pools and clients.
    """
    names = list(service_names)
    health_servicer = add_health_and_reflection(server, names)
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s", ", ".join(names), address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=5)
    if on_stop is not None:
        await on_stop()
