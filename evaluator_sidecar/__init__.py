"""The evaluator library both sides share, and the evaluator sidecar.

Four layers, each a subpackage that imports only the layers below it (import-linter
contracts in pyproject.toml hold this):

- ``evaluator_sidecar.sidecar``: the runtime of one sidecar: the hot-swap manager
  (``PKGManager``), heartbeats, the disk cache, the HTTP API, metrics, logs, its
  settings and the ``pkg-sidecar`` entry point;
- ``evaluator_sidecar.store`` (PostgreSQL: ``PKGClient``, its DAOs, the migration
  runner) and ``evaluator_sidecar.signals`` (the Redis protocol shared with the
  operator: desired state, messages, heartbeats, cohorts), independent of each other;
- ``evaluator_sidecar.policy``: the pure policy core: the snapshot model, the engines
  (native declarative rules compiled at load; OPA policies compiled to WebAssembly and
  run in wasmtime), ``PKGEvaluator`` (one loaded snapshot behind one ``evaluate()``),
  task facts and fixtures; no server, no database, no Redis.

Beside them: ``evaluator_sidecar.settings`` (the settings the sidecar and the operator
share) and ``evaluator_sidecar.cli`` (the offline ``pkg`` CLI). It never imports the
operator.

Public names are imported lazily so that ``import evaluator_sidecar`` stays
cheap and a process that only needs the evaluator does not load asyncpg,
redis or wasmtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluator_sidecar.policy.engines.base import ENGINE_REGISTRY, PolicyEngine, register_engine
    from evaluator_sidecar.policy.engines.native import NativeRuleEngine
    from evaluator_sidecar.policy.engines.wasm import OpaWasm
    from evaluator_sidecar.policy.errors import EvaluationError, SnapshotLoadError
    from evaluator_sidecar.policy.evaluator import PKGEvaluator
    from evaluator_sidecar.policy.model import PKGSnapshotData
    from evaluator_sidecar.sidecar.manager import PKGManager
    from evaluator_sidecar.sidecar.process import (
        get_global_pkg_manager,
        initialize_global_pkg_manager,
    )
    from evaluator_sidecar.store.audit import PKGAuditDAO
    from evaluator_sidecar.store.client import PKGClient
    from evaluator_sidecar.store.deployments import PKGDeploymentsDAO
    from evaluator_sidecar.store.devices import PKGDevicesDAO
    from evaluator_sidecar.store.errors import (
        ChecksumMismatchError,
        ConflictError,
        DatabaseUnavailableError,
        IntegrityError,
        NotFoundError,
        PKGError,
    )
    from evaluator_sidecar.store.models import DeviceHeartbeat, TemporalFact
    from evaluator_sidecar.store.promotions import PKGPromotionsDAO
    from evaluator_sidecar.store.snapshots import PKGSnapshotsDAO
    from evaluator_sidecar.store.validation import PKGValidationDAO

__all__ = [
    "ENGINE_REGISTRY",
    "ChecksumMismatchError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DeviceHeartbeat",
    "EvaluationError",
    "IntegrityError",
    "NativeRuleEngine",
    "NotFoundError",
    "OpaWasm",
    "PKGAuditDAO",
    "PKGClient",
    "PKGDeploymentsDAO",
    "PKGDevicesDAO",
    "PKGError",
    "PKGEvaluator",
    "PKGManager",
    "PKGPromotionsDAO",
    "PKGSnapshotData",
    "PKGSnapshotsDAO",
    "PKGValidationDAO",
    "PolicyEngine",
    "SnapshotLoadError",
    "TemporalFact",
    "get_global_pkg_manager",
    "initialize_global_pkg_manager",
    "register_engine",
]

# name -> module that defines it. Later parts of the library add their names here.
_LAZY: dict[str, str] = {
    "ENGINE_REGISTRY": "evaluator_sidecar.policy.engines.base",
    "PolicyEngine": "evaluator_sidecar.policy.engines.base",
    "register_engine": "evaluator_sidecar.policy.engines.base",
    "EvaluationError": "evaluator_sidecar.policy.errors",
    "SnapshotLoadError": "evaluator_sidecar.policy.errors",
    "NativeRuleEngine": "evaluator_sidecar.policy.engines.native",
    "OpaWasm": "evaluator_sidecar.policy.engines.wasm",
    "PKGEvaluator": "evaluator_sidecar.policy.evaluator",
    "PKGSnapshotData": "evaluator_sidecar.policy.model",
    "PKGManager": "evaluator_sidecar.sidecar.manager",
    "get_global_pkg_manager": "evaluator_sidecar.sidecar.process",
    "initialize_global_pkg_manager": "evaluator_sidecar.sidecar.process",
    # The PostgreSQL client (evaluator_sidecar.store).
    "PKGClient": "evaluator_sidecar.store.client",
    "PKGSnapshotsDAO": "evaluator_sidecar.store.snapshots",
    "PKGDeploymentsDAO": "evaluator_sidecar.store.deployments",
    "PKGValidationDAO": "evaluator_sidecar.store.validation",
    "PKGPromotionsDAO": "evaluator_sidecar.store.promotions",
    "PKGDevicesDAO": "evaluator_sidecar.store.devices",
    "PKGAuditDAO": "evaluator_sidecar.store.audit",
    "DeviceHeartbeat": "evaluator_sidecar.store.models",
    "TemporalFact": "evaluator_sidecar.store.models",
    "PKGError": "evaluator_sidecar.store.errors",
    "NotFoundError": "evaluator_sidecar.store.errors",
    "ConflictError": "evaluator_sidecar.store.errors",
    "IntegrityError": "evaluator_sidecar.store.errors",
    "ChecksumMismatchError": "evaluator_sidecar.store.errors",
    "DatabaseUnavailableError": "evaluator_sidecar.store.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evaluator_sidecar' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
