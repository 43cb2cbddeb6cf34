"""The native rule engine: declarative rules compiled at load, evaluated in microseconds.

Importing this package registers the engine as ``"native"``. It owns the
engine class; ``loader`` checks a snapshot's rules (with ``conditions`` and
``dag``) into the records of ``loaded``, ``compiler`` turns them into one
generated function (with ``codegen``), ``runtime`` holds what that function
calls, ``values`` and ``regex`` the value primitives and RE2 patterns. The reference interpreter
(``evaluator_sidecar.policy.engines.reference``) and the reference Rego policy
(``policies/reference``) implement the same language, and tests hold all three
to it.

Semantics (task facts, conditions, operators, output, load checks):
docs/rule-language.md.

Memory: compiling a large snapshot builds the generated source's syntax tree and
bytecode, tens of MiB for 1,000 rules, nearly all freed at once; glibc keeps such
freed memory in the process, so a sidecar's RSS stayed ~30 MiB above what it holds.
:func:`release_freed_memory` hands it back after each compile (``malloc_trim``).
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from evaluator_sidecar.policy.engines.base import EngineResult, register_engine
from evaluator_sidecar.policy.engines.native.compiler import CompiledRules, compile_rules
from evaluator_sidecar.policy.engines.native.loader import LoadedSnapshot, load_rules
from evaluator_sidecar.policy.errors import EvaluationError
from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["NativeRuleEngine", "release_freed_memory"]

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    import ctypes  # noqa: PLC0415 - only a compiling process needs it

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError) as exc:
        logger.debug("no malloc_trim in this C library (%s): freed memory stays mapped", exc)
        return None
    return trim


def release_freed_memory() -> None:
    """Return the C heap's free pages to the system (a few ms; nothing held is touched)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class NativeRuleEngine:
    """Evaluates one snapshot's native rules with a function generated at load."""

    def __init__(self, loaded: LoadedSnapshot, compiled: CompiledRules) -> None:
        # Not the loaded records (~1.4 MiB at 1,000 rules) nor the generated source
        # (~0.27 MiB): the compiled function holds what evaluating needs, and a sidecar
        # keeps three engines (the active one, two for rollback). The source stays
        # available compressed, for debugging.
        self._version = loaded.version
        self._rule_count = len(loaded.rules)
        self._source = zlib.compress(compiled.source.encode(), 6)
        self._evaluate = compiled.evaluate

    @classmethod
    def from_snapshot(cls, snapshot: PKGSnapshotData) -> NativeRuleEngine:
        """Check and compile ``snapshot``'s rules; SnapshotLoadError lists every problem."""
        loaded = load_rules(snapshot)
        engine = cls(loaded, compile_rules(loaded))
        release_freed_memory()
        return engine

    def evaluate(self, task_facts: Mapping[str, Any]) -> EngineResult:
        """``{"subtasks", "dag", "rules"}`` for already validated task facts."""
        try:
            return self._evaluate(task_facts)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # Validated facts never get here; facts passed straight to the engine might.
            raise EvaluationError(
                f"native evaluation of snapshot {self._version!r} failed on these task "
                f"facts ({type(exc).__name__}: {exc}); check them with "
                "evaluator_sidecar.policy.facts"
            ) from exc

    @property
    def degraded(self) -> bool:
        """The native engine has no fallback mode."""
        return False

    @property
    def rule_count(self) -> int:
        """Enabled rules compiled into the evaluation function."""
        return self._rule_count

    @property
    def source(self) -> str:
        """The generated Python source (for debugging; it holds no snapshot data)."""
        return zlib.decompress(self._source).decode()


register_engine("native", NativeRuleEngine)
