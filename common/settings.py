"""Typed settings read from environment variables.

Each service declares one subclass of :class:`ServiceSettings`; nothing else reads
``os.environ`` for configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".data")


class ServiceSettings(BaseSettings):
    """Settings every service has.

    Attributes:
        environment: ``development`` allows built-in defaults for secrets; anything
            else makes services refuse to start with them.
        data_dir: Where embedded backing services and local state live.
        log_level: Standard logging level name.
        log_json: Emit one JSON object per log line (otherwise plain text).
    """

    model_config = SettingsConfigDict(env_prefix="XLI_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    log_level: str = "INFO"
    log_json: bool = True
