"""Scorer configuration, from environment variables."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

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
        redis_url: Redis for the score cache (env ``REDIS_URL``); unset runs without a cache.
        cache_ttl_s: Lifetime of a cached score.
        encoder_name: Name of the sentence-encoder model in the Triton repository.
        encoder_batch_window_ms: How long the encoder batcher waits to coalesce texts.
        encoder_max_batch_rows: Most texts per encoder request (the model's max_batch_size).
        encoder_deadline_s: Deadline of one encoder request (it is compute-bound on a CPU).
        triton_retries: Retries of a Triton call that failed transiently (never past the deadline).
        breaker_failures: Consecutive Triton failures that open the circuit breaker.
        breaker_reset_s: How long the breaker stays open before it probes Triton again.
        stream_read_ahead: Stream messages graded concurrently per stream.
        max_message_bytes: Largest gRPC message received or sent.
        judge_base_url: OpenAI-compatible endpoint of the optional LLM judge (env
            ``OPENAI_BASE_URL``); unset means no judge, and scores say so.
        judge_api_key: Its API key (env ``OPENAI_API_KEY``), if the endpoint needs one.
        judge_model: Chat model the judge asks (env ``XLI_JUDGE_MODEL``).
        judge_timeout_s: Longest one judge request may take; a slower judge is left out of
            the score (which says so) rather than holding the answer up.
        judge_enabled: Turns a configured judge off without unsetting its URL.
        judge_tolerance: Largest judge/model disagreement (on the 0..1 score) that is averaged;
            beyond it the lower score is kept and the answer goes to review.
        judge_max_concurrent: Judge conversations running at once (the rest wait their turn).
        text_model_name: Trained free-text model in the Triton repository
            (``XLI_TEXT_MODEL_NAME``, default ``answer_scorer_text``); empty scores free text
            with ``model_name``'s hand-set weights instead, labelled a heuristic.
        text_features_name: The model that computes ``text_model_name``'s feature rows.
        text_features_deadline_s: Deadline of one ``text_features`` request (it runs MiniLM).
        review_confidence: Scores whose confidence is below this are flagged ``needs_review``.
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
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "XLI_REDIS_URL"))
    cache_ttl_s: int = 86_400
    encoder_name: str = "sentence_encoder"
    encoder_batch_window_ms: float = 2.0
    encoder_max_batch_rows: int = 64
    encoder_deadline_s: float = 10.0
    triton_retries: int = 2
    breaker_failures: int = 5
    breaker_reset_s: float = 2.0
    stream_read_ahead: int = 2
    max_message_bytes: int = 4 * 1024 * 1024
    judge_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL", "judge_base_url"))
    judge_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY", "judge_api_key"))
    judge_model: str = Field("gpt-4o-mini", validation_alias=AliasChoices("XLI_JUDGE_MODEL", "judge_model"))
    judge_timeout_s: float = 10.0
    judge_enabled: bool = True
    judge_tolerance: float = 0.2
    judge_max_concurrent: int = 8
    text_model_name: str = "answer_scorer_text"
    text_features_name: str = "text_features"
    text_features_deadline_s: float = 10.0
    review_confidence: float = Field(0.5, ge=0.0, le=1.0)

    @property
    def judge_configured(self) -> bool:
        """Whether live scoring asks the LLM judge (enabled and an endpoint is set)."""
        return self.judge_enabled and bool(self.judge_base_url)
