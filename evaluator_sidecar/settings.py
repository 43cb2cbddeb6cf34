"""Typed settings from environment variables with the prefix ``PKG_``, validated at start.

:class:`CommonSettings` holds what the sidecar and the operator share;
:class:`SidecarSettings` adds the sidecar's own. :func:`load_settings` turns a
validation failure into one paragraph naming each bad variable (no traceback).

Shared variables:

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_DATABASE_URL`` | (required) | PostgreSQL DSN, ``postgresql://user:pass@host:port/db`` |
| ``PKG_REDIS_URL`` | (required) | Redis URL, ``redis://host:port/db`` |
| ``PKG_LOG_LEVEL`` | ``INFO`` | ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` |
| ``PKG_LOG_FORMAT`` | ``json`` | ``json`` (one object per line) or ``text`` |

The sidecar's variables:

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_ENV`` | ``prod`` | environment whose snapshots it runs: ``prod``, ``staging``, ``dev`` |
| ``PKG_TARGET`` | ``default`` | rollout target it belongs to (``router``, ``edge:door``, ...) |
| ``PKG_REGION`` | ``global`` | rollout region it belongs to |
| ``PKG_DEVICE_ID`` | host name | its id in heartbeats and canary cohorts; unique per sidecar |
| ``PKG_DEVICE_TYPE`` | ``sidecar`` | kind of device, reported in heartbeats |
| ``PKG_HTTP_HOST`` | ``127.0.0.1`` | address of the HTTP API (loopback: only its pod reaches it) |
| ``PKG_HTTP_PORT`` | ``8080`` | port of the HTTP API (0 picks a free one) |
| ``PKG_RESYNC_INTERVAL_SECONDS`` | ``30`` | how often the desired state is re-read |
| ``PKG_HEARTBEAT_INTERVAL_SECONDS`` | ``5`` | how often a heartbeat goes to Redis |
| ``PKG_HEARTBEAT_TTL_SECONDS`` | 3 x interval | how long a heartbeat key lives (liveness) |
| ``PKG_CACHE_DIR`` | ``$TMPDIR/pkg-sidecar`` | last good snapshots, for outages |
| ``PKG_MAX_SNAPSHOT_AGE_SECONDS`` | ``0`` (off) | ``/readyz`` fails past this age |
| ``PKG_MAX_REQUEST_BYTES`` | ``65536`` | largest accepted request body |
| ``PKG_DB_TIMEOUT_SECONDS`` | ``5`` | time limit of one snapshot read from PostgreSQL |
| ``PKG_SELF_TEST`` | ``true`` | run a snapshot's fixtures before activating it |
| ``PKG_REDIS_BACKOFF_MAX_SECONDS`` | ``60`` | cap of the reconnect back-off (full jitter) |
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CommonSettings", "SettingsError", "SidecarSettings", "load_settings"]

PREFIX = "PKG_"


class SettingsError(Exception):
    """The environment does not describe a runnable process; the message names the variable."""


class CommonSettings(BaseSettings):
    """The variables the sidecar and the operator share."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(min_length=1)
    redis_url: str = Field(min_length=1)
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


class SidecarSettings(CommonSettings):
    """The evaluator sidecar's settings (see the module's table)."""

    env: Literal["prod", "staging", "dev"] = "prod"
    target: str = Field(default="default", min_length=1)
    region: str = Field(default="global", min_length=1)
    device_id: str = Field(default_factory=socket.gethostname, min_length=1)
    device_type: str = Field(default="sidecar", min_length=1)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    resync_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    heartbeat_ttl_seconds: int | None = Field(default=None, ge=1)
    cache_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "pkg-sidecar")
    max_snapshot_age_seconds: float = Field(default=0.0, ge=0)
    max_request_bytes: int = Field(default=65536, ge=256, le=64 * 1024 * 1024)
    db_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    self_test: bool = True
    redis_backoff_max_seconds: float = Field(default=60.0, gt=0, le=600)

    @property
    def heartbeat_ttl(self) -> int:
        """The heartbeat key's TTL: as configured, else three intervals (at least one second)."""
        if self.heartbeat_ttl_seconds is not None:
            return self.heartbeat_ttl_seconds
        return max(1, round(3 * self.heartbeat_interval_seconds))


S = TypeVar("S", bound=BaseSettings)


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        variable = PREFIX + field.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"{variable} is not set (it is required)")
        else:
            parts.append(f"{variable}={error.get('input')!r} is not valid: {message}")
    return (
        "The configuration from the environment is not valid: "
        + "; ".join(parts)
        + ". Set these variables and start again (the module evaluator_sidecar.settings "
        "lists every PKG_ variable with its default)."
    )


def load_settings(cls: type[S]) -> S:
    """Read ``cls`` from the environment; raise :class:`SettingsError` naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
