"""The evaluator library both sides share, and the evaluator sidecar.

It owns the policy engines (native declarative rules compiled at load; OPA
policies compiled to WebAssembly and run in wasmtime), ``PKGEvaluator`` (one
loaded snapshot behind one ``evaluate()``), the PostgreSQL client
(``PKGClient``), the Redis protocol shared with the operator, the hot-swap
manager (``PKGManager``), the sidecar's HTTP API and heartbeats, and the
offline ``pkg`` CLI. It never imports the operator.

Public names are imported lazily so that ``import evaluator_sidecar`` stays
cheap and a process that only needs the evaluator does not load asyncpg,
redis or wasmtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluator_sidecar.db.audit import PKGAuditDAO
    from evaluator_sidecar.db.client import PKGClient
    from evaluator_sidecar.db.deployments import PKGDeploymentsDAO
    from evaluator_sidecar.db.devices import PKGDevicesDAO
    from evaluator_sidecar.db.errors import (
        ChecksumMismatchError,
        ConflictError,
        DatabaseUnavailableError,
        IntegrityError,
        NotFoundError,
        PKGError,
    )
    from evaluator_sidecar.db.models import DeviceHeartbeat, TemporalFact
    from evaluator_sidecar.db.promotions import PKGPromotionsDAO
    from evaluator_sidecar.db.snapshots import PKGSnapshotsDAO
    from evaluator_sidecar.db.validation import PKGValidationDAO
    from evaluator_sidecar.manager import (
        PKGManager,
        get_global_pkg_manager,
        initialize_global_pkg_manager,
    )
    from evaluator_sidecar.policy.engines.base import ENGINE_REGISTRY, PolicyEngine, register_engine
    from evaluator_sidecar.policy.engines.native import NativeRuleEngine
    from evaluator_sidecar.policy.engines.wasm import OpaWasm
    from evaluator_sidecar.policy.errors import EvaluationError, SnapshotLoadError
    from evaluator_sidecar.policy.evaluator import PKGEvaluator
    from evaluator_sidecar.policy.model import PKGSnapshotData

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
    "PKGManager": "evaluator_sidecar.manager",
    "get_global_pkg_manager": "evaluator_sidecar.manager",
    "initialize_global_pkg_manager": "evaluator_sidecar.manager",
    # The PostgreSQL client (evaluator_sidecar.db).
    "PKGClient": "evaluator_sidecar.db.client",
    "PKGSnapshotsDAO": "evaluator_sidecar.db.snapshots",
    "PKGDeploymentsDAO": "evaluator_sidecar.db.deployments",
    "PKGValidationDAO": "evaluator_sidecar.db.validation",
    "PKGPromotionsDAO": "evaluator_sidecar.db.promotions",
    "PKGDevicesDAO": "evaluator_sidecar.db.devices",
    "PKGAuditDAO": "evaluator_sidecar.db.audit",
    "DeviceHeartbeat": "evaluator_sidecar.db.models",
    "TemporalFact": "evaluator_sidecar.db.models",
    "PKGError": "evaluator_sidecar.db.errors",
    "NotFoundError": "evaluator_sidecar.db.errors",
    "ConflictError": "evaluator_sidecar.db.errors",
    "IntegrityError": "evaluator_sidecar.db.errors",
    "ChecksumMismatchError": "evaluator_sidecar.db.errors",
    "DatabaseUnavailableError": "evaluator_sidecar.db.errors",
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
