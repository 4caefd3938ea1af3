"""ASGI middleware: the client's address behind trusted proxies, request ids and the
request body limit.

All are plain ASGI rather than ``BaseHTTPMiddleware`` so that they see the raw
``receive`` stream (needed to count chunked bodies) and add nothing per request
beyond a function call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import new_request_id, request_id_var
from gateway.problems import REQUEST_ID_HEADER, problem_response

Network = IPv4Network | IPv6Network


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address, reading ``X-Forwarded-For`` only as far as it can be trusted.

    Each proxy appends the address it received the request from, so the list is read
    from the right: every hop a trusted proxy reports is believed, and the first
    address that is not itself a trusted proxy is the client. Anything left of it
    was written by the client and may be forged.

    Args:
        peer: The address of the TCP peer.
        forwarded_for: Every ``X-Forwarded-For`` header value, in order.
        trusted: Networks of the trusted proxies.

    Returns:
        ``peer`` unless it is a trusted proxy; otherwise the rightmost address in the
        header that is not a trusted proxy (or the leftmost, when all are). A
        malformed entry ends the walk at the last address that was vouched for.
    """

    def is_trusted(address: IPv4Address | IPv6Address) -> bool:
        return any(address in network for network in trusted)

    try:
        if not trusted or not is_trusted(ip_address(peer)):
            return peer
    except ValueError:  # e.g. a Unix socket peer: nothing to compare
        return peer
    client = peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = ip_address(hop)
        except ValueError:
            break
        client = str(address)
        if not is_trusted(address):
            break
    return client


class ClientAddressMiddleware:
    """Replaces the peer address by the client's when the peer is a trusted proxy.

    The ASGI ``client`` is rewritten in place, so everything after it — the per-IP
    rate limits, ``request.client`` and uvicorn's access log — sees the client.

    Args:
        app: The application to wrap.
        trusted: Networks of the trusted proxies; with none the middleware does nothing.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] == "http" and scope.get("client"):
            host, port = scope["client"]
            forwarded = Headers(scope=scope).getlist("x-forwarded-for")
            if forwarded:
                scope["client"] = (forwarded_client(host, forwarded, self.trusted), port)
        await self.app(scope, receive, send)


# A caller's id is reused only when it is short and plain: it ends up in logs and
# in gRPC metadata, where free-form text could forge log lines or be rejected.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
# Read from the raw headers, which ASGI servers give with lower-case names.
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode("latin-1")


class RequestIdMiddleware:
    """Gives every request an id: the caller's ``x-request-id`` or a new one.

    The id is stored on ``request.state.request_id``, set in
    :data:`common.logging.request_id_var` for the logs, passed to the orchestrator
    as gRPC metadata by :class:`gateway.orchestrator.OrchestratorClient`, and echoed
    in the response's ``x-request-id`` header.

    Args:
        app: The application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope["headers"] if name == _REQUEST_ID_KEY), b"")
        request_id = incoming.decode("latin-1") if _VALID_REQUEST_ID.fullmatch(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


# How much of an oversized body is read and thrown away before answering 413. HTTP/1
# clients such as httpx and browsers send the whole body before reading the
# response; closing on them mid-upload turns the 413 into a connection reset.
# Bodies larger than this are cut off with a reset: the client is abusive anyway.
_DRAIN_BYTES = 1024 * 1024


class BodyLimitMiddleware:
    """Rejects request bodies over ``max_body_bytes`` with a 413 problem.

    A declared ``Content-Length`` over the limit is refused without buffering
    anything. Otherwise the body is read up front, counting bytes as they arrive,
    so a chunked body without a length is cut off at the limit too; the app then
    gets the buffered body. Buffering is fine because the limit is small (64 KiB by
    default).

    Args:
        app: The application to wrap.
        max_body_bytes: Largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is None and "transfer-encoding" not in headers:
            # No length and not chunked: HTTP/1.1 says there is no body (a GET), so
            # there is nothing to count or buffer.
            await self.app(scope, receive, send)
            return
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await self._reject(scope, receive, send, 400, "bad-request", "Bad request", "Invalid Content-Length.")
                return
            if length > self.max_body_bytes:
                # A client waiting on "Expect: 100-continue" has sent nothing yet
                # and will not, so there is nothing to drain.
                if length <= _DRAIN_BYTES and headers.get("expect", "").lower() != "100-continue":
                    await self._drain(receive, 0)
                await self._too_large(scope, receive, send)
                return

        chunks: list[bytes] = []
        received = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            more_body = message.get("more_body", False)
            if received > self.max_body_bytes:
                if more_body:
                    await self._drain(receive, received)
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)

        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # After the body, the app may still wait for the disconnect (e.g. a
            # streaming response), which only the real receive can report.
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive, received: int) -> None:
        while received <= _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._reject(
            scope,
            receive,
            send,
            413,
            "payload-too-large",
            "Request body too large",
            f"The request body is larger than {self.max_body_bytes} bytes.",
        )

    @staticmethod
    async def _reject(
        scope: Scope, receive: Receive, send: Send, status: int, slug: str, title: str, detail: str
    ) -> None:
        # Close the connection: any rest of the body is unread, so the connection
        # cannot carry another request.
        response = problem_response(Request(scope), status, slug, title, detail, headers={"connection": "close"})
        await response(scope, receive, send)
