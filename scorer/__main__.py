"""``xli-scorer``: runs the Scorer gRPC service."""

from __future__ import annotations

import asyncio
import logging

from common.grpc_server import create_server, serve
from common.logging import configure_logging
from common.metrics import start_metrics_server
from scorer.cache import RedisScoreCache
from scorer.resilience import CircuitBreaker
from scorer.service import ScorerService, feature_count
from scorer.settings import ScorerSettings
from scorer.triton import AnswerScorerModel, SentenceEncoderModel, TritonEndpoint
from xlinterview.v1 import scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)


def build_service(settings: ScorerSettings) -> ScorerService:
    """Wires the service to Triton (and Redis, when configured) as the settings say.

    Must run inside the event loop that will serve, since the clients bind to it.
    """
    endpoint = TritonEndpoint(
        settings.triton_url,
        timeout_s=settings.triton_deadline_s,
        breaker=CircuitBreaker("triton", settings.breaker_failures, settings.breaker_reset_s),
        max_retries=settings.triton_retries,
    )
    model = AnswerScorerModel(
        endpoint,
        settings.model_name,
        feature_count(),
        window_s=settings.batch_window_ms / 1000.0,
        max_rows=settings.max_batch_rows,
        max_pending_rows=settings.max_pending_rows,
    )
    encoder = SentenceEncoderModel(
        endpoint,
        settings.encoder_name,
        window_s=settings.encoder_batch_window_ms / 1000.0,
        max_rows=settings.encoder_max_batch_rows,
        timeout_s=settings.encoder_deadline_s,
    )
    cache = None
    if settings.redis_url:
        cache = RedisScoreCache(settings.redis_url, ttl_s=settings.cache_ttl_s)
        log.info("score cache: redis (ttl %ds)", settings.cache_ttl_s)
    else:
        log.info("score cache: off (REDIS_URL is not set); every answer is scored by the models")
    return ScorerService(
        model,
        encoder,
        settings.max_answer_chars,
        cache=cache,
        stream_read_ahead=settings.stream_read_ahead,
    )


async def run(settings: ScorerSettings) -> None:
    """Serves until SIGTERM/SIGINT."""
    service = build_service(settings)
    server = create_server(settings.max_message_bytes)
    scorer_pb2_grpc.add_ScorerServicer_to_server(service, server)
    name = scorer_pb2.DESCRIPTOR.services_by_name["Scorer"].full_name
    await serve(server, settings.listen_address, [name], on_stop=service.close)


def main() -> None:
    """Console entry point."""
    settings = ScorerSettings()  # type: ignore[call-arg]  # required fields come from the environment
    configure_logging("scorer", settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    if settings.metrics_port:
        log.info("metrics on http://127.0.0.1:%d/metrics", settings.metrics_port)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
