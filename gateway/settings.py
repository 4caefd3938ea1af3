"""Settings of the REST gateway, read from ``XLI_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """How the gateway listens and how it reaches the orchestrator.

    Attributes:
        orchestrator_address: ``host:port`` of the orchestrator's gRPC server
            (``XLI_ORCHESTRATOR_ADDRESS``).
        host: Interface the HTTP server binds (``XLI_GATEWAY_HOST``).
        port: Port the HTTP server binds (``XLI_GATEWAY_PORT``).
        grpc_deadline_s: Deadline of every call to the orchestrator. Generous because
            submitting an answer waits for it to be scored (``XLI_GRPC_DEADLINE_S``).
        readiness_deadline_s: Deadline of the health check behind ``/readyz``; short so
            a load balancer's probe never piles up (``XLI_READINESS_DEADLINE_S``).
        max_body_bytes: Largest request body accepted; larger ones get 413
            (``XLI_MAX_BODY_BYTES``).
    """

    # The explicit env names below are not the prefix + field name, so constructing
    # GatewaySettings(host=...) in code and tests needs field names accepted too.
    model_config = SettingsConfigDict(validate_by_name=True)

    orchestrator_address: str = Field(default="127.0.0.1:50052", validation_alias="XLI_ORCHESTRATOR_ADDRESS")
    host: str = Field(default="127.0.0.1", validation_alias="XLI_GATEWAY_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="XLI_GATEWAY_PORT")
    grpc_deadline_s: float = Field(default=10.0, gt=0)
    readiness_deadline_s: float = Field(default=1.0, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
