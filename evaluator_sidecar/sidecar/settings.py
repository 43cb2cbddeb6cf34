"""The evaluator sidecar's settings: environment variables with the prefix ``PKG_``.

:class:`SidecarSettings` extends :class:`evaluator_sidecar.settings.CommonSettings`
(the variables it shares with the operator, listed in that module) with the
sidecar's own; read it with :func:`evaluator_sidecar.settings.load_settings`.

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
| ``PKG_TRUSTED_KEYS_DIR`` | (none) | folder of trusted public keys (a mounted ConfigMap) |
| ``PKG_MAX_STALENESS_SECONDS`` | ``0`` (off) | stale past this long without confirming its level |
| ``PKG_STALENESS_POLICY`` | ``serve`` | when stale: ``serve``, or ``fail-closed`` (refuse) |
| ``PKG_SNAPSHOT_FILE`` | (none) | standalone: serve this PolicySnapshot file, no PostgreSQL/Redis |
| ``PKG_SNAPSHOT_POLL_SECONDS`` | ``1`` | standalone: how often the file is checked for a change |

With ``PKG_SNAPSHOT_FILE`` set (or ``pkg serve FILE``), ``PKG_DATABASE_URL`` and
``PKG_REDIS_URL`` are not needed: see :mod:`evaluator_sidecar.sidecar.standalone`.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from evaluator_sidecar.settings import CommonSettings

__all__ = ["SidecarSettings"]


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
    trusted_keys_dir: Path | None = None
    redis_backoff_max_seconds: float = Field(default=60.0, gt=0, le=600)
    max_staleness_seconds: float = Field(default=0.0, ge=0)
    staleness_policy: Literal["serve", "fail-closed"] = "serve"
    snapshot_file: Path | None = None
    snapshot_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    # Required unless a snapshot file stands in for them (the rule below says so).
    database_url: str = ""
    redis_url: str = ""

    @model_validator(mode="after")
    def _a_source_of_snapshots(self) -> SidecarSettings:
        if self.snapshot_file is None:
            missing = [
                name
                for name, value in (
                    ("PKG_DATABASE_URL", self.database_url),
                    ("PKG_REDIS_URL", self.redis_url),
                )
                if not value
            ]
            if missing:
                verb = "is" if len(missing) == 1 else "are"
                raise ValueError(
                    f"{' and '.join(missing)} {verb} not set (required, unless PKG_SNAPSHOT_FILE "
                    "names a PolicySnapshot file to serve on its own, with no PostgreSQL or Redis)"
                )
        return self

    @property
    def heartbeat_ttl(self) -> int:
        """The heartbeat key's TTL: as configured, else three intervals (at least one second)."""
        if self.heartbeat_ttl_seconds is not None:
            return self.heartbeat_ttl_seconds
        return max(1, round(3 * self.heartbeat_interval_seconds))
