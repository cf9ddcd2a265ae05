"""The service's configuration: read once at start-up, from flags and ``AVSEARCH_*`` variables.

Every setting has an environment variable (``AVSEARCH_MODEL_DIR``, ``AVSEARCH_INDEX_DIR``, ...)
so that a container is configured without flags; ``avsearch serve`` flags override them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.expansion import MAX_EXPAND

Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    """What ``create_app`` needs; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="AVSEARCH_", extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    model_dir: Path = Field(description="the model bundle (image.onnx, audio.onnx, model.json)")
    index_dir: Path = Field(description="the index bundle, as written by `avsearch index build`")
    corpus_dir: Path | None = Field(
        None, description="the corpus a reindex reads (default: the one the index was built from)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    device: Device = Field("auto", description="where ONNX Runtime and FAISS run")
    max_upload_mb: float = Field(25.0, gt=0, description="largest upload accepted (413 above)")
    processes: int = Field(
        1, ge=1, description="server processes, each with its own model, index and workers "
                             "(past the GIL: more throughput on several cores)")
    workers: int = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1), ge=1,
        description="queries embedded and searched at once (threads)")
    onnx_threads: int = Field(1, ge=1, description="ONNX Runtime threads per query")
    faiss_threads: int = Field(1, ge=1, description="FAISS threads per search")
    max_queue: int = Field(64, ge=1,
                           description="queries waiting for a worker before 503 (busy)")
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the admin API; unset: the admin API is off")
    reload_interval: float = Field(
        10.0, ge=0, description="seconds between checks for a new index version written by "
                                "`avsearch index build|add|remove` (0: never)")
    expand: int = Field(
        0, ge=0, le=MAX_EXPAND,
        description="a sound query is averaged with this many of the index's nearest sounds "
                    "(by the audio features) before it searches; 0: never (a search's "
                    "`expand` overrides it; costs a second search)")
    public_url: str = Field("", description="prefix of media URLs in answers (default: relative)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("AVSEARCH_ADMIN_TOKEN must be at least 16 characters "
                             "(e.g. `openssl rand -hex 32`)")
        return value

    def to_environment(self) -> dict[str, str]:
        """These settings as ``AVSEARCH_*`` variables (for the processes of a multi-process
        server, which read their settings from the environment)."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"AVSEARCH_{name.upper()}"] = str(value)
        return env

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
