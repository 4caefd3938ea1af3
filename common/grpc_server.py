"""The frame every gRPC server runs in: health, reflection, errors, request ids, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Histogram

from common.errors import InvalidArgument, ServiceError
from common.logging import request_id_var

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


@contextlib.asynccontextmanager
async def _rpc_scope(method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """Sets the request id, maps errors to statuses and records metrics around one RPC."""
    metadata = dict(context.invocation_metadata() or ())
    # grpc.aio runs each RPC in its own task, so the value never leaks into another
    # RPC and needs no reset (a reset fails when a stream is torn down from another context).
    request_id_var.set(str(metadata.get(REQUEST_ID_KEY) or uuid.uuid4().hex))
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        yield
    except ServiceError as exc:
        code = exc.code
        await context.abort(exc.code, exc.message)
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except grpc.aio.AbortError:
        code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    except Exception:
        code = grpc.StatusCode.INTERNAL
        log.exception("unhandled error in %s", method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")
    finally:
        RPC_TOTAL.labels(method, code.name).inc()
        RPC_LATENCY.labels(method).observe(time.perf_counter() - started)


def _wrap_unary(
    method: str, behavior: Callable[..., Awaitable[Any]], deserialize: Deserializer
) -> Callable[..., Awaitable[Any]]:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        async with _rpc_scope(method, context):
            return await behavior(_decode(deserialize, raw), context)

    return handler


def _wrap_stream(method: str, behavior: Callable[..., Any], deserialize: Deserializer) -> Callable[..., Any]:
    async def handler(raw_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        async def requests() -> Any:
            async for raw in raw_iterator:
                yield _decode(deserialize, raw)

        async with _rpc_scope(method, context):
            async for response in behavior(requests(), context):
                yield response

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps :class:`ServiceError` to its status, hides other exceptions, sets the request id.

    Unary-unary and stream-stream handlers are wrapped; those are the only shapes the
    v1 contracts use.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(method, handler.stream_stream, handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
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
