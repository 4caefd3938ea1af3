"""Settings of the local stack runner."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field

from common.settings import ServiceSettings
from stack.backing import free_port


class StackSettings(ServiceSettings):
    """What ``xli-up`` runs and where.

    A backing service whose URL is set is used as it is; one without a URL is started
    embedded, with its data under ``data_dir``.

    Attributes:
        database_url: External PostgreSQL (env ``DATABASE_URL``).
        redis_url: External Redis (env ``REDIS_URL``).
        triton_url: External Triton gRPC ``host:port`` (env ``TRITON_URL``).
        host: Interface the services listen on.
        gateway_port: Port of the REST gateway and the candidate page.
        scorer_port: Port of the Scorer gRPC service.
        orchestrator_port: Port of the Orchestrator gRPC service.
        ready_timeout_s: How long to wait for everything to become ready.
    """

    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    triton_url: str | None = Field(None, validation_alias=AliasChoices("TRITON_URL", "triton_url"))
    host: str = "127.0.0.1"
    gateway_port: int = Field(8000, validation_alias=AliasChoices("XLI_GATEWAY_PORT", "gateway_port"))
    scorer_port: int = Field(50051, validation_alias=AliasChoices("XLI_SCORER_PORT", "scorer_port"))
    orchestrator_port: int = Field(50052, validation_alias=AliasChoices("XLI_ORCHESTRATOR_PORT", "orchestrator_port"))
    ready_timeout_s: float = 120.0

    @classmethod
    def isolated(cls, data_dir: Path) -> Self:
        """A stack of its own, as benchmarks and tests start: PostgreSQL, Redis and Triton
        embedded under ``data_dir`` whatever the environment names, and free ports.

        Args:
            data_dir: Where the stack keeps its data.
        """
        return cls(
            data_dir=data_dir, gateway_port=free_port(), scorer_port=free_port(), orchestrator_port=free_port(),
            database_url=None, redis_url=None, triton_url=None,
        )
