"""``xli-scorer``: runs the Scorer gRPC service."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import TypedDict

from common.grpc_server import create_server, serve
from common.logging import configure_logging
from common.metrics import start_metrics_server
from scorer.cache import RedisScoreCache
from scorer.judge import LLMJudge
from scorer.resilience import CircuitBreaker
from scorer.service import ScorerService, feature_count
from scorer.settings import ScorerSettings
from scorer.triton import AnswerScorerModel, SentenceEncoderModel, TextFeaturesModel, TextScorerModel, TritonEndpoint
from xlinterview.v1 import scorer_pb2, scorer_pb2_grpc

log = logging.getLogger(__name__)


class _Batching(TypedDict, total=False):
    """Batching arguments of a Triton model client (see ``scorer.triton._TritonModel``)."""

    window_s: float
    max_rows: int
    max_pending_rows: int


def build_judge(settings: ScorerSettings) -> LLMJudge | None:
    """The optional LLM judge as the settings configure it, or None (scores then say so).

    Args:
        settings: The scorer's settings (``OPENAI_BASE_URL`` and friends).

    Returns:
        A judge with an asynchronous client for live scoring, or None when no endpoint is
        set or the judge is disabled.
    """
    if not settings.judge_configured or settings.judge_base_url is None:
        return None
    key = settings.judge_api_key.get_secret_value() if settings.judge_api_key is not None else None
    return LLMJudge.connect(
        settings.judge_base_url, key, settings.judge_model, settings.judge_timeout_s, asynchronous=True
    )


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
    # Scoring models batch like answer_scorer; models that run MiniLM batch like the encoder.
    batching: _Batching = {
        "window_s": settings.batch_window_ms / 1000.0,
        "max_rows": settings.max_batch_rows,
        "max_pending_rows": settings.max_pending_rows,
    }
    encoder_batching: _Batching = {"window_s": settings.encoder_batch_window_ms / 1000.0, "max_rows": settings.encoder_max_batch_rows}
    model = AnswerScorerModel(endpoint, settings.model_name, feature_count(), **batching)
    encoder = SentenceEncoderModel(
        endpoint, settings.encoder_name, **encoder_batching, timeout_s=settings.encoder_deadline_s
    )
    text_model = None
    if settings.text_model_name:
        text_model = (
            TextScorerModel(endpoint, settings.text_model_name, **batching),
            TextFeaturesModel(
                endpoint,
                settings.text_features_name,
                **encoder_batching,
                max_inflight=2,  # one CPU instance: a second request keeps it busy meanwhile
                timeout_s=settings.text_features_deadline_s,
            ),
        )
        log.info("free text: %s on features from %s", settings.text_model_name, settings.text_features_name)
    else:
        log.info("free text: %s (hand-set weights, labelled heuristic)", settings.model_name)
    cache = None
    if settings.redis_url:
        cache = RedisScoreCache(settings.redis_url, ttl_s=settings.cache_ttl_s)
        log.info("score cache: redis (ttl %ds)", settings.cache_ttl_s)
    else:
        log.info("score cache: off (REDIS_URL is not set); every answer is scored by the models")
    judge = build_judge(settings)
    if judge is None:
        log.info("LLM judge: off (OPENAI_BASE_URL is not set or XLI_JUDGE_ENABLED is false)")
    else:
        log.info("LLM judge: %s at %s (timeout %.1fs)", judge.model, settings.judge_base_url, settings.judge_timeout_s)
    return ScorerService(
        model,
        encoder,
        settings.max_answer_chars,
        cache=cache,
        stream_read_ahead=settings.stream_read_ahead,
        review_confidence=settings.review_confidence,
        judge=judge,
        judge_timeout_s=settings.judge_timeout_s,
        judge_tolerance=settings.judge_tolerance,
        judge_max_concurrent=settings.judge_max_concurrent,
        text_model=text_model,
    )


async def run(settings: ScorerSettings) -> None:
    """Serves until SIGTERM/SIGINT."""
    service = build_service(settings)
    server = create_server(settings.max_message_bytes)
    scorer_pb2_grpc.add_ScorerServicer_to_server(service, server)
    # What exists now (modules, protobuf descriptors, grpc, the clients) lives as long as the
    # process. Frozen, it is left out of full garbage collections, which would otherwise walk
    # it under load and stall the event loop for tens of milliseconds (the p99 of Score).
    gc.collect()
    gc.freeze()
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
