"""The shared gRPC frame: error mapping, hidden internals, request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from common.errors import ERROR_DOMAIN, NotFound, Unavailable
from common.grpc_server import REQUEST_ID_KEY, create_server
from common.logging import request_id_var
from stack.backing import free_port

SEEN_REQUEST_IDS: list[str] = []
SAVED_MESSAGE = "answer saved; scoring is unavailable right now — retry later"


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    SEEN_REQUEST_IDS.append(request_id_var.get())
    if request == b"missing":
        raise NotFound("no such thing: missing")
    if request == b"crash":
        raise RuntimeError("secret connection string postgres://user:pw@db")
    if request == b"saved":
        raise Unavailable(SAVED_MESSAGE, reason="TEST_REASON", metadata={"answer_id": "a-1"})
    return request


async def echo_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        if request == b"missing":
            raise NotFound("stream item missing")
        if request == b"saved":
            raise Unavailable(SAVED_MESSAGE, reason="TEST_REASON", metadata={"answer_id": "a-2"})
        yield request


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = create_server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(
                        echo
                    ),
                    "Stream": grpc.stream_stream_rpc_method_handler(
                        echo_stream
                    ),
                },
            )
        ]
    )
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    async with grpc.aio.insecure_channel(address) as opened:
        yield opened
    await server.stop(None)


async def test_service_errors_map_to_their_status(channel: grpc.aio.Channel) -> None:
    unary = channel.unary_unary("/test.Echo/Unary")
    assert await unary(b"hello", timeout=5) == b"hello"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(b"missing", timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing: missing"


async def test_unexpected_errors_are_internal_and_leak_nothing(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Echo/Unary")(b"crash", timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "postgres" not in (caught.value.details() or "")


async def test_stream_errors_map_to_their_status(channel: grpc.aio.Channel) -> None:
    async def requests() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"missing"

    call = channel.stream_stream("/test.Echo/Stream")(requests(), timeout=5)
    assert await call.read() == b"one"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_request_id_comes_from_metadata_or_is_made(channel: grpc.aio.Channel) -> None:
    SEEN_REQUEST_IDS.clear()
    unary = channel.unary_unary("/test.Echo/Unary")
    await unary(b"a", metadata=((REQUEST_ID_KEY, "req-123"),), timeout=5)
    await unary(b"b", timeout=5)
    assert SEEN_REQUEST_IDS[0] == "req-123"
    assert len(SEEN_REQUEST_IDS[1]) == 32 and SEEN_REQUEST_IDS[1] != "req-123"


def calls_counted(code: str) -> float:
    return REGISTRY.get_sample_value("xli_grpc_requests_total", {"method": "Unary", "code": code}) or 0.0


async def test_every_call_is_counted_and_gets_a_fresh_request_id(channel: grpc.aio.Channel) -> None:
    # The frame wraps each method once; the counts and ids must still be per call.
    SEEN_REQUEST_IDS.clear()
    ok, not_found = calls_counted("OK"), calls_counted("NOT_FOUND")
    unary = channel.unary_unary("/test.Echo/Unary")
    for _ in range(3):
        await unary(b"hello", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(b"missing", timeout=5)
    assert calls_counted("OK") == ok + 3 and calls_counted("NOT_FOUND") == not_found + 1
    assert len(set(SEEN_REQUEST_IDS)) == 4


async def test_unknown_methods_stay_unimplemented(channel: grpc.aio.Channel) -> None:
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/test.Echo/Nope")(b"x", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def error_info_of(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo in ``error``'s rich status (``from_call`` also checks that its
    code and message match the call's)."""
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status in the trailers"
    assert status.code == error.code().value[0] and status.message == error.details()
    assert len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info), status.details[0].type_url
    return info


async def test_an_error_with_a_reason_carries_it_as_error_info(channel: grpc.aio.Channel) -> None:
    unavailable = calls_counted("UNAVAILABLE")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Echo/Unary")(b"saved", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == SAVED_MESSAGE  # plain clients still see code and message
    info = error_info_of(caught.value)
    assert (info.reason, info.domain, dict(info.metadata)) == ("TEST_REASON", ERROR_DOMAIN, {"answer_id": "a-1"})
    assert calls_counted("UNAVAILABLE") == unavailable + 1


async def test_a_stream_error_with_a_reason_carries_it_as_error_info(channel: grpc.aio.Channel) -> None:
    async def requests() -> AsyncIterator[bytes]:
        yield b"saved"

    call = channel.stream_stream("/test.Echo/Stream")(requests(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info_of(caught.value).metadata["answer_id"] == "a-2"


async def test_an_error_without_a_reason_has_no_rich_status(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Echo/Unary")(b"missing", timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert rpc_status.from_call(caught.value) is None


def test_metadata_without_a_reason_is_refused() -> None:
    with pytest.raises(ValueError):
        Unavailable("down", metadata={"answer_id": "a-1"})
