"""The operator's settings: environment variables with the prefix ``PKG_``, validated at start.

The variables it shares with the sidecar (``PKG_DATABASE_URL``, ``PKG_REDIS_URL``,
``PKG_LOG_LEVEL``, ``PKG_LOG_FORMAT``) and their checks come from
:class:`evaluator_sidecar.settings.CommonSettings`; these are the operator's own:

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_MIGRATE_ON_START`` | ``true`` | apply pending SQL migrations before reconciling |
| ``PKG_NAMESPACES`` | (all) | namespaces to watch, comma-separated, globs allowed |
| ``PKG_PEERING_NAME`` | ``pkg-operator`` | the ClusterKopfPeering the replicas share |
| ``PKG_PEERING_PRIORITY`` | random | the highest live priority works, the others wait |
| ``PKG_PEERING_LIFETIME_SECONDS`` | ``30`` | how long a silent replica still counts as alive |
| ``PKG_STANDALONE`` | ``false`` | run without peering (a single replica) |
| ``PKG_LIVENESS_PORT`` | ``8080`` | port of ``/healthz`` (0 disables it) |
| ``PKG_LIVENESS_HOST`` | ``0.0.0.0`` | address of ``/healthz`` |
| ``PKG_ROLLOUT_INTERVAL_SECONDS`` | ``2`` | how often each PolicyDeployment is reconciled |
| ``PKG_HEARTBEAT_FOLD_INTERVAL_SECONDS`` | ``1`` | how long a heartbeat read waits for more |
| ``PKG_HEARTBEAT_BATCH_SIZE`` | ``500`` | heartbeats read and written per round trip |
| ``PKG_INTEGRITY_CHECK_SECONDS`` | ``300`` | how often the integrity checks run (0: never) |
| ``PKG_TRUSTED_KEYS`` | (none) | ``namespace/name`` of the ConfigMap or Secret of trusted keys |
| ``PKG_LEVEL_RESYNC_SECONDS`` | ``10`` | how often Redis's levels are checked against PostgreSQL |
| ``PKG_OPERATOR_METRICS_PORT`` | ``9090`` | port of Prometheus's ``/metrics`` (0: off) |
| ``PKG_OPERATOR_METRICS_HOST`` | ``0.0.0.0`` | address of ``/metrics`` |
"""

from __future__ import annotations

import random

from pydantic import Field

from evaluator_sidecar.settings import CommonSettings, SettingsError
from evaluator_sidecar.settings import load_settings as _load

__all__ = ["OperatorSettings", "SettingsError", "load_settings"]


class OperatorSettings(CommonSettings):
    migrate_on_start: bool = True
    namespaces: str = ""
    peering_name: str = "pkg-operator"
    # Random unless set: replicas of one Deployment must differ, or kopf pauses them all.
    peering_priority: int = Field(default_factory=lambda: random.randint(1, 2**31 - 1))
    # kopf refreshes the record every lifetime minus 5-10 s. A replica killed without
    # a clean exit keeps the others (and its own successor, unless POD_ID gives both one
    # identity) paused until the record expires; too short a lifetime lets a standby
    # start while a slow active replica is still working.
    peering_lifetime_seconds: int = Field(default=30, ge=15, le=3600)
    standalone: bool = False
    liveness_host: str = "0.0.0.0"  # the kubelet probes from outside the pod
    liveness_port: int = Field(default=8080, ge=0, le=65535)
    rollout_interval_seconds: float = Field(default=2.0, gt=0, le=300)
    heartbeat_fold_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    heartbeat_batch_size: int = Field(default=500, ge=1, le=100_000)
    # pkg_operator.integrity: database checks, audit chain and snapshot rows; 0 disables.
    integrity_check_seconds: float = Field(default=300.0, ge=0, le=86_400)
    trusted_keys: str = Field(
        default="", pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[-._a-z0-9]+$"
    )

    @property
    def trusted_keys_ref(self) -> tuple[str, str] | None:
        """(namespace, name) of the trusted keys' ConfigMap or Secret, or None."""
        if not self.trusted_keys:
            return None
        namespace, name = self.trusted_keys.split("/", 1)
        return namespace, name

    level_resync_seconds: float = Field(default=10.0, gt=0, le=3600)
    # pkg_operator.metrics; Prometheus scrapes it from outside the pod.
    operator_metrics_host: str = "0.0.0.0"
    operator_metrics_port: int = Field(default=9090, ge=0, le=65535)

    @property
    def namespace_list(self) -> list[str]:
        return [part.strip() for part in self.namespaces.split(",") if part.strip()]

    @property
    def liveness_endpoint(self) -> str | None:
        if self.liveness_port == 0:
            return None
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"


def load_settings() -> OperatorSettings:
    """Read the environment; SettingsError names each bad variable and what it needs."""
    return _load(OperatorSettings)
