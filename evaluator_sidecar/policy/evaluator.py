"""``PKGEvaluator``: one loaded snapshot behind one ``evaluate()``, whichever engine runs it.

The engine is chosen by ``snapshot.engine`` from ``ENGINE_REGISTRY``. Engines
register themselves when their module is imported; an unregistered name is
imported on first use as ``evaluator_sidecar.policy.engines.<name>`` (so the native
engine never needs the WASM engine's modules, and the reverse), and
``EngineUnavailableError`` names the registered engines when it is still
missing.

``evaluate`` checks the task facts first (``evaluator_sidecar.policy.facts``: types and
size limits) and raises ``EvaluationError`` saying what is wrong; a failure
inside an engine also surfaces as ``EvaluationError``. The result is exactly
``{"subtasks": [...], "dag": [...], "rules": [...], "snapshot": version}``.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.base import ENGINE_REGISTRY, PolicyEngine
from evaluator_sidecar.policy.environment_facts import EnvironmentFacts, with_environment_facts
from evaluator_sidecar.policy.errors import EngineUnavailableError, EvaluationError
from evaluator_sidecar.policy.facts import validate_task_facts
from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["PKGEvaluator", "resolve_engine"]

logger = logging.getLogger(__name__)


def resolve_engine(name: str) -> type[PolicyEngine]:
    """The engine class registered as ``name``, importing its module on first use."""
    cls = ENGINE_REGISTRY.get(name)
    if cls is not None:
        return cls
    reason = ""
    if isinstance(name, str) and name.isidentifier():
        module = f"evaluator_sidecar.policy.engines.{name}"
        try:
            importlib.import_module(module)
        except ImportError as exc:
            # A missing engine (or a dependency it needs) must not break other engines.
            logger.warning(
                "engine module could not be imported",
                extra={"event": "engine_import_failed", "engine": name, "error": str(exc)},
            )
            reason = f" (importing {module} failed: {exc})"
        cls = ENGINE_REGISTRY.get(name)
        if cls is not None:
            return cls
    registered = ", ".join(sorted(ENGINE_REGISTRY)) or "none"
    raise EngineUnavailableError(
        f"no policy engine {name!r} is available{reason}; registered engines: {registered}. "
        "Use a snapshot with a registered engine, or install the engine's dependencies."
    )


class PKGEvaluator:
    """Evaluates task facts against one snapshot."""

    def __init__(self, snapshot: PKGSnapshotData) -> None:
        """Load ``snapshot`` into its engine; raises SnapshotLoadError or EngineUnavailableError."""
        engine_cls = resolve_engine(snapshot.engine)
        started = time.perf_counter()
        self._engine: PolicyEngine = engine_cls.from_snapshot(snapshot)
        self._load_seconds = time.perf_counter() - started
        self._snapshot = snapshot
        self._version = snapshot.version
        self._engine_type = snapshot.engine
        self._loaded_at = time.time()
        logger.info(
            "snapshot loaded",
            extra={
                "event": "snapshot_loaded",
                "version": snapshot.version,
                "engine": snapshot.engine,
                "snapshot_id": snapshot.id,
                "load_ms": round(self._load_seconds * 1000, 3),
                "degraded": self._engine.degraded,
            },
        )

    def evaluate(
        self,
        task_facts: Mapping[str, Any],
        environment_facts: EnvironmentFacts | None = None,
    ) -> dict[str, Any]:
        """``{"subtasks", "dag", "rules", "snapshot"}``; raises EvaluationError on bad input.

        ``environment_facts`` (the sidecar's loaded set) join the request's own
        facts for FACT conditions: see :mod:`evaluator_sidecar.policy.environment_facts`.
        """
        facts = with_environment_facts(validate_task_facts(task_facts), environment_facts)
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            result = self._engine.evaluate(facts)
        except EvaluationError:
            raise
        except Exception as exc:
            logger.exception(
                "engine failed",
                extra={
                    "event": "evaluation_failed",
                    "version": self._version,
                    "engine": self._engine_type,
                },
            )
            raise EvaluationError(
                f"the {self._engine_type} engine failed evaluating snapshot {self._version!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if debug:
            logger.debug(
                "evaluated",
                extra={
                    "event": "evaluation",
                    "version": self._version,
                    "engine": self._engine_type,
                    "duration_us": round((time.perf_counter() - started) * 1e6, 1),
                    "subtasks": len(result["subtasks"]),
                    "rules": len(result["rules"]),
                },
            )
        return {
            "subtasks": result["subtasks"],
            "dag": result["dag"],
            "rules": result["rules"],
            "snapshot": self._version,
        }

    @property
    def version(self) -> str:
        """The snapshot's version string (``rules@1.4.0``)."""
        return self._version

    @property
    def engine_type(self) -> str:
        """``native`` or ``wasm`` (or another registered engine's name)."""
        return self._engine_type

    @property
    def loaded_at(self) -> float:
        """When the snapshot was loaded (epoch seconds)."""
        return self._loaded_at

    @property
    def load_seconds(self) -> float:
        """How long loading (checking and compiling) took."""
        return self._load_seconds

    @property
    def degraded(self) -> bool:
        """True when the engine runs in a fallback mode."""
        return self._engine.degraded

    @property
    def checksum(self) -> str | None:
        """The snapshot's checksum as given (64 hex) or None."""
        return self._snapshot.checksum

    @property
    def snapshot_id(self) -> int:
        """The snapshot's database id (0 when not stored)."""
        return self._snapshot.id

    @property
    def snapshot(self) -> PKGSnapshotData:
        """The snapshot this evaluator runs."""
        return self._snapshot

    @property
    def engine(self) -> PolicyEngine:
        """The engine instance (for diagnostics)."""
        return self._engine

    def __repr__(self) -> str:
        return f"PKGEvaluator(version={self._version!r}, engine={self._engine_type!r})"
