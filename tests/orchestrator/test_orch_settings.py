"""Settings read the documented environment variables."""

from __future__ import annotations

import pytest

from orchestrator.settings import DEFAULT_BANK_DIR, MissingSetting, OrchestratorSettings


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("XLI_SCORER_ADDRESS", "scorer:1")
    monkeypatch.setenv("XLI_ORCHESTRATOR_ADDRESS", "0.0.0.0:2")
    monkeypatch.setenv("XLI_ORCHESTRATOR_METRICS_PORT", "9102")
    monkeypatch.setenv("XLI_SCORER_DEADLINE_S", "2.5")
    monkeypatch.setenv("XLI_MAX_ANSWER_CHARS", "50")
    monkeypatch.setenv("LISTEN_ADDRESS", "not-ours:1")  # un-prefixed names of other fields are ignored
    s = OrchestratorSettings()
    assert s.database_url == "postgresql://u:p@db:5432/x"
    assert s.redis_url == "redis://cache:6379/0"
    assert s.scorer_address == "scorer:1"
    assert s.listen_address == "0.0.0.0:2"
    assert s.metrics_port == 9102
    assert s.scorer_deadline_s == 2.5
    assert s.max_answer_chars == 50
    s.require_backing_urls()


def test_defaults_and_missing_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "XLI_SCORER_ADDRESS", "XLI_ORCHESTRATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    s = OrchestratorSettings()
    assert (s.scorer_address, s.listen_address, s.metrics_port) == ("127.0.0.1:50051", "127.0.0.1:50052", 0)
    assert (s.scorer_deadline_s, s.db_timeout_s, s.max_answer_chars) == (5.0, 5.0, 10000)
    assert s.bank_dir == DEFAULT_BANK_DIR
    with pytest.raises(MissingSetting, match="DATABASE_URL.*REDIS_URL"):
        s.require_backing_urls()
