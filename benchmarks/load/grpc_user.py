"""A locust User that calls gRPC services and reports every call to locust's statistics.

Locust runs users as gevent greenlets, so the blocking grpc API is made cooperative
with :func:`grpc.experimental.gevent.init_gevent` (the locustfile calls it before any
channel exists); grpc.aio would need its own event loop per greenlet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import grpc
from google.protobuf.message import Message
from locust import User

from answers import think

Reply = TypeVar("Reply", bound=Message)

REQUEST_TYPE = "grpc"


class GrpcUser(User):
    """Base of users that speak gRPC to one service through one channel of their own.

    Attributes:
        address_option: The locust option holding the service's ``host:port``.
        stub_class: The generated stub class of the service.
        think_option: The locust option holding the mean seconds between calls.
        deadline_s: Deadline of every call; a call that runs out counts as a failure.
    """

    abstract = True
    address_option: ClassVar[str]
    stub_class: ClassVar[type[Any]]
    think_option: ClassVar[str] = "grpc_think_time"
    deadline_s = 30.0

    def wait_time(self) -> float:
        return think(float(getattr(self.environment.parsed_options, self.think_option)))

    def on_start(self) -> None:
        self.rng = random.Random()
        self.channel = grpc.insecure_channel(getattr(self.environment.parsed_options, self.address_option))
        self.stub = self.stub_class(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def call(self, name: str, method: Callable[..., Reply], request: Message) -> Reply | None:
        """Calls one unary method and fires locust's ``request`` event for it.

        Args:
            name: The row in locust's statistics, e.g. ``"grpc Scorer.Score formula"``.
            method: A bound stub method, e.g. ``stub.Score``.
            request: The request message.

        Returns:
            The reply, or ``None`` when the call failed (the failure is in the statistics).
        """
        started = time.perf_counter()
        reply: Reply | None = None
        error: Exception | None = None
        try:
            reply = method(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            error = exc
        context: dict[str, Any] = {}
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=reply.ByteSize() if reply is not None else 0,
            exception=error,
            context=context,
        )
        return reply
