"""Scorer configuration, from environment variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from common.settings import ServiceSettings


class ScorerSettings(ServiceSettings):
    """Settings of the scoring service.

    Attributes:
        triton_url: ``host:port`` of Triton's KServe v2 gRPC endpoint (env ``TRITON_URL``).
        listen_address: Where the Scorer gRPC service listens.
        metrics_port: Prometheus ``/metrics`` port; 0 turns it off.
        model_name: Name of the answer-scoring model in the Triton repository.
        triton_deadline_s: Deadline of one Triton inference call.
        batch_window_ms: How long the batcher waits to coalesce concurrent answers.
        max_batch_rows: The most rows sent to Triton in one request.
        max_pending_rows: Rows waiting for Triton before callers are made to wait (backpressure).
        max_answer_chars: Longest answer accepted.
    """

    triton_url: str = Field(validation_alias=AliasChoices("TRITON_URL", "XLI_TRITON_URL"))
    listen_address: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("XLI_SCORER_ADDRESS", "listen_address")
    )
    metrics_port: int = Field(0, validation_alias=AliasChoices("XLI_SCORER_METRICS_PORT", "metrics_port"))
    model_name: str = "answer_scorer"
    triton_deadline_s: float = 2.0
    batch_window_ms: float = 1.0
    max_batch_rows: int = 512
    max_pending_rows: int = 8192
    max_answer_chars: int = 10_000
