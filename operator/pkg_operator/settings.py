"""The operator's settings: environment variables with the prefix ``PKG_``, validated at start.

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_DATABASE_URL`` | (required) | PostgreSQL DSN, ``postgresql://user:pass@host:port/db`` |
| ``PKG_REDIS_URL`` | (required) | Redis URL, ``redis://host:port/db`` |
| ``PKG_MIGRATE_ON_START`` | ``true`` | apply pending SQL migrations before reconciling |
| ``PKG_NAMESPACES`` | (all) | namespaces to watch, comma-separated, globs allowed |
| ``PKG_PEERING_NAME`` | ``pkg-operator`` | the ClusterKopfPeering the replicas share |
| ``PKG_PEERING_PRIORITY`` | random | the highest live priority works, the others wait |
| ``PKG_STANDALONE`` | ``false`` | run without peering (a single replica) |
| ``PKG_LIVENESS_PORT`` | ``8080`` | port of ``/healthz`` (0 disables it) |
| ``PKG_LIVENESS_HOST`` | ``0.0.0.0`` | address of ``/healthz`` |
| ``PKG_ROLLOUT_INTERVAL_SECONDS`` | ``2`` | how often each PolicyDeployment is reconciled |
| ``PKG_HEARTBEAT_FOLD_INTERVAL_SECONDS`` | ``1`` | how long a heartbeat read waits for more |
| ``PKG_HEARTBEAT_BATCH_SIZE`` | ``500`` | heartbeats read and written per round trip |
| ``PKG_LOG_LEVEL`` | ``INFO`` | ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` |
| ``PKG_LOG_FORMAT`` | ``json`` | ``json`` (one object per line) or ``text`` |
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OperatorSettings", "SettingsError", "load_settings"]


class SettingsError(Exception):
    """The environment does not describe a runnable operator; the message says which variable."""


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PKG_", extra="ignore", frozen=True)

    database_url: str = Field(min_length=1)
    redis_url: str = Field(min_length=1)
    migrate_on_start: bool = True
    namespaces: str = ""
    peering_name: str = "pkg-operator"
    peering_priority: int = Field(default_factory=lambda: random.randint(1, 2**31 - 1))
    standalone: bool = False
    liveness_host: str = "0.0.0.0"
    liveness_port: int = Field(default=8080, ge=0, le=65535)
    rollout_interval_seconds: float = Field(default=2.0, gt=0, le=300)
    heartbeat_fold_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    heartbeat_batch_size: int = Field(default=500, ge=1, le=100_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must start with postgresql:// (for example postgresql://pkg@db:5432/pkg)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must start with redis://, rediss:// or unix:// (for example redis://redis:6379/0)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def namespace_list(self) -> list[str]:
        return [part.strip() for part in self.namespaces.split(",") if part.strip()]

    @property
    def liveness_endpoint(self) -> str | None:
        if self.liveness_port == 0:
            return None
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"


def load_settings() -> OperatorSettings:
    """Read the environment; raise SettingsError naming each bad variable and what it needs."""
    try:
        return OperatorSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = f"PKG_{field.upper()}"
            message = "is required" if error["type"] == "missing" else error["msg"]
            problems.append(f"{variable} {message}")
        raise SettingsError(
            "the operator's settings are invalid: "
            + "; ".join(problems)
            + ". Set the environment variables (see pkg_operator.settings) and start again."
        ) from None
