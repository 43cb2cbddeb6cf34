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
| ``PKG_TEST_CRASH_AT`` | (none) | test only: exit as if killed at ``<point>:<n>`` |
| ``PKG_TEST_CRASH_RECORD`` | (none) | test only: append every crash point hit to this file |

The sidecar injection webhook (:mod:`pkg_operator.inject`; off while ``PKG_WEBHOOK_PORT`` is 0):

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_WEBHOOK_PORT`` | ``0`` (off) | HTTPS port of the admission webhook |
| ``PKG_WEBHOOK_HOST`` | ``0.0.0.0`` | its address |
| ``PKG_WEBHOOK_SECRET`` | (none) | ``namespace/name`` of the Secret of its CA and certificate |
| ``PKG_WEBHOOK_DNS_NAMES`` | (none) | names and IPs of the certificate, comma-separated |
| ``PKG_WEBHOOK_CONFIGURATION`` | (none) | the MutatingWebhookConfiguration given its ``caBundle`` |
| ``PKG_WEBHOOK_CERT_VALIDITY_SECONDS`` | 90 days | lifetime of a serving certificate |
| ``PKG_WEBHOOK_CERT_RENEW_BEFORE_SECONDS`` | 30 days | renew that long before it expires |
| ``PKG_WEBHOOK_CA_VALIDITY_SECONDS`` | 10 years | lifetime of the CA |
| ``PKG_WEBHOOK_CERT_CHECK_SECONDS`` | ``300`` | how often the Secret and ``caBundle`` are checked |
| ``PKG_INJECT_IMAGE`` | (none) | image of the injected sidecar |
| ``PKG_INJECT_*`` | | the injected sidecar's defaults (README: "Sidecar injection") |
| ``PKG_METRICS_PORT`` | ``0`` (off) | port of ``GET /metrics`` (on ``PKG_METRICS_HOST``) |
"""

from __future__ import annotations

import json
import random
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evaluator_sidecar.settings import CommonSettings, SettingsError
from evaluator_sidecar.settings import load_settings as _load

__all__ = [
    "REGION_PATTERN",
    "SECRET_NAME_PATTERN",
    "TARGET_PATTERN",
    "OperatorSettings",
    "PluginSettings",
    "SettingsError",
    "load_settings",
]

#: The PolicyDeployment CRD's patterns (crds/policydeployments.yaml): what the webhook
#: accepts as a pod's target and region.
TARGET_PATTERN = (
    r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(:[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$"
)
REGION_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
#: A Secret's name (DNS-1123 subdomain).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"


class PluginSettings(BaseSettings):
    """The ``kubectl pkg`` plugin's one variable: PKG_DATABASE_URL, optional (the plugin
    reads PostgreSQL only for ``coverage``, ``history`` and ``audit verify``)."""

    model_config = SettingsConfigDict(env_prefix="PKG_", extra="ignore", frozen=True)

    database_url: str = ""


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

    # ---- test only (the chaos suite's crash points, pkg_operator.crashpoints): never set
    # in production. "<point>:<n>" makes the process exit like kill -9 just before the
    # n-th write at <point>; a file name records every point hit, in order.
    test_crash_at: str = Field(default="", pattern=r"^$|^[a-z]+:[A-Za-z0-9_:.-]+:[1-9][0-9]*$")
    test_crash_record: str = ""

    # ---- the sidecar injection webhook (pkg_operator.inject); 0 turns it off.
    webhook_port: int = Field(default=0, ge=0, le=65535)
    webhook_host: str = "0.0.0.0"  # the API server calls in from outside the pod
    webhook_secret: str = Field(
        default="",
        pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        validate_default=True,
    )
    webhook_dns_names: str = Field(default="", validate_default=True)
    webhook_configuration: str = ""
    webhook_cert_validity_seconds: int = Field(default=90 * 86_400, ge=120)
    webhook_cert_renew_before_seconds: int = Field(default=30 * 86_400, ge=30)
    webhook_ca_validity_seconds: int = Field(default=3650 * 86_400, ge=600)
    webhook_cert_check_seconds: float = Field(default=300.0, gt=0, le=86_400)
    inject_image: str = Field(default="", validate_default=True)
    inject_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    inject_env: Literal["prod", "staging", "dev"] = "prod"
    inject_target: str = Field(default="default", pattern=TARGET_PATTERN)
    inject_region: str = Field(default="global", pattern=REGION_PATTERN)
    inject_secret: str = Field(default="pkg-sidecar", pattern=SECRET_NAME_PATTERN)
    inject_http_port: int = Field(default=8080, ge=1, le=65535)
    inject_resources: str = (
        '{"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}'
    )
    inject_wait_for_snapshot: bool = False
    # Prometheus metrics of the operator (pkg_operator.metrics, plain HTTP GET /metrics);
    # 0 turns them off. Off by default so that two operators on one host never collide;
    # the chart turns it on (metrics.enabled, port 9090).
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("webhook_secret", "webhook_dns_names", "inject_image")
    @classmethod
    def _needed_by_the_webhook(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("webhook_port") and not value:
            raise ValueError("required when PKG_WEBHOOK_PORT is set (the webhook is on)")
        return value

    @field_validator("webhook_cert_renew_before_seconds")
    @classmethod
    def _renew_within_validity(cls, value: int, info: ValidationInfo) -> int:
        validity = info.data.get("webhook_cert_validity_seconds")
        if validity is not None and value >= validity:
            raise ValueError(f"must be shorter than PKG_WEBHOOK_CERT_VALIDITY_SECONDS ({validity})")
        return value

    @field_validator("inject_resources")
    @classmethod
    def _resources_json(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(parsed, dict) or set(parsed) - {"requests", "limits"}:
            raise ValueError('a JSON object like {"requests": {...}, "limits": {...}}')
        return value

    @property
    def webhook_secret_ref(self) -> tuple[str, str]:
        """(namespace, name) of the webhook's certificate Secret."""
        namespace, name = self.webhook_secret.split("/", 1)
        return namespace, name

    @property
    def webhook_dns_name_list(self) -> list[str]:
        return [part.strip() for part in self.webhook_dns_names.split(",") if part.strip()]

    @property
    def inject_resources_dict(self) -> dict[str, dict[str, str]]:
        parsed: dict[str, dict[str, str]] = json.loads(self.inject_resources)
        return parsed

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
