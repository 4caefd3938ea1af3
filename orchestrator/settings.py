"""Settings of the orchestrator service, read from environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings

DEFAULT_BANK_DIR = Path(__file__).resolve().parent / "bank"


class MissingSetting(RuntimeError):
    """A setting the service cannot run without is not set."""


class OrchestratorSettings(ServiceSettings):
    """Configuration of the interviewer.

    The backing-service URLs use the conventional un-prefixed names
    (``DATABASE_URL``, ``REDIS_URL``) so they work with the usual hosting tools;
    everything else is ``XLI_``-prefixed.

    Attributes:
        database_url: PostgreSQL DSN (env ``DATABASE_URL``); the source of truth.
        redis_url: Redis URL (env ``REDIS_URL``) for the hot session state.
        scorer_address: ``host:port`` of the Scorer gRPC service (``XLI_SCORER_ADDRESS``).
        listen_address: ``host:port`` this service listens on (``XLI_ORCHESTRATOR_ADDRESS``).
        metrics_port: Prometheus port (``XLI_ORCHESTRATOR_METRICS_PORT``); 0 disables it.
        scorer_deadline_s: Deadline of one ``Scorer.Score`` call (``XLI_SCORER_DEADLINE_S``).
        db_timeout_s: Upper bound for one database operation (``XLI_DB_TIMEOUT_S``).
        redis_timeout_s: Upper bound for one Redis operation (``XLI_REDIS_TIMEOUT_S``).
        redis_retry_after_s: After a Redis failure, how long to go straight to
            PostgreSQL before trying Redis again (``XLI_REDIS_RETRY_AFTER_S``).
        session_ttl_s: TTL of a session's cached state in Redis (``XLI_SESSION_TTL_S``).
        max_answer_chars: Longest accepted answer (``XLI_MAX_ANSWER_CHARS``).
        bank_dir: Directory of the question-bank YAML files (``XLI_BANK_DIR``).
        db_pool_min_size: Connections the pool keeps open (``XLI_DB_POOL_MIN_SIZE``).
        db_pool_max_size: Most connections the pool opens (``XLI_DB_POOL_MAX_SIZE``).
        startup_timeout_s: How long start-up keeps retrying to reach PostgreSQL
            (``XLI_STARTUP_TIMEOUT_S``).
        cat_max_items: Most questions per interview (``XLI_CAT_MAX_ITEMS``).
        cat_min_items: Fewest answers before the standard-error rule may end an
            interview; raised to the number of skill areas (``XLI_CAT_MIN_ITEMS``).
        cat_se_target: End once the ability's standard error is below this (``XLI_CAT_SE_TARGET``).
        cat_max_exposure: Target largest share of interviews asking one item (``XLI_CAT_MAX_EXPOSURE``).
        interview_time_limit_s: Standard time for one interview (``XLI_INTERVIEW_TIME_LIMIT_S``).
        max_extra_time_percent: Largest accommodation a start request may ask for
            (``XLI_MAX_EXTRA_TIME_PERCENT``).
        scoring_retry_interval_s: Seconds between sweeps that score answers whose
            scoring failed (``XLI_SCORING_RETRY_INTERVAL_S``); 0 turns the sweep off.
        scoring_retry_window_s: Answers older than this are no longer retried
            (``XLI_SCORING_RETRY_WINDOW_S``).
        follow_up_min_weight: A free-text answer that misses a rubric criterion of at
            least this weight gets one follow-up question (``XLI_FOLLOW_UP_MIN_WEIGHT``);
            0 turns follow-ups off.
        calibration_min_responses: ``xli-calibrate`` estimates an item version's
            parameters from the answers only once it has this many scored responses;
            until then it keeps its authored ones (``XLI_CALIBRATION_MIN_RESPONSES``).
    """

    model_config = SettingsConfigDict(env_prefix="XLI_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL")
    )
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    scorer_address: str = "127.0.0.1:50051"
    listen_address: str = Field(
        default="127.0.0.1:50052",
        validation_alias=AliasChoices("XLI_ORCHESTRATOR_ADDRESS"),
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("XLI_ORCHESTRATOR_METRICS_PORT"),
    )
    scorer_deadline_s: float = Field(default=5.0, gt=0)
    db_timeout_s: float = Field(default=5.0, gt=0)
    redis_timeout_s: float = Field(default=1.0, gt=0)
    redis_retry_after_s: float = Field(default=2.0, ge=0)
    session_ttl_s: int = Field(default=24 * 3600, gt=0)
    max_answer_chars: int = Field(default=10_000, gt=0)
    bank_dir: Path = DEFAULT_BANK_DIR
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    startup_timeout_s: float = Field(default=30.0, ge=0)
    cat_max_items: int = Field(default=12, ge=1, le=200)
    cat_min_items: int = Field(default=8, ge=1)
    cat_se_target: float = Field(default=0.3, ge=0)
    cat_max_exposure: float = Field(default=0.25, gt=0, le=1)
    interview_time_limit_s: float = Field(default=3600.0, gt=0)
    max_extra_time_percent: int = Field(default=200, ge=0)
    scoring_retry_interval_s: float = Field(default=15.0, ge=0)
    scoring_retry_window_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    follow_up_min_weight: float = Field(default=0.3, ge=0, le=1)
    calibration_min_responses: int = Field(default=200, ge=1)

    def require_backing_urls(self) -> None:
        """Checks that the backing-service URLs are set.

        Raises:
            MissingSetting: Naming each missing environment variable and what it is for.
        """
        missing = []
        if not self.database_url:
            missing.append("DATABASE_URL (PostgreSQL DSN, e.g. postgresql://user:pass@127.0.0.1:5432/xli)")
        if not self.redis_url:
            missing.append("REDIS_URL (Redis URL, e.g. redis://127.0.0.1:6379/0)")
        if missing:
            raise MissingSetting("the orchestrator needs these environment variables: " + "; ".join(missing))
