"""The one place that imports wasmtime: availability, the process-wide Engine and epoch ticker.

``import evaluator_sidecar.policy.engines.wasm`` never fails because wasmtime is
missing or broken: :func:`load_wasmtime` tries the import once and remembers
why it failed, and the engine falls back to a no-op (see ``fallback``).

One wasmtime ``Engine`` serves the whole process (compiled modules are tied to
the engine that compiled them, and an engine is thread-safe). It is configured
for epoch interruption, and memories never move (``memory_may_move = False``),
so the engine can keep the address of each instance's linear memory.

The hot call path uses wasmtime's C API through the ctypes bindings that
wasmtime-py ships (``wasmtime._bindings``). Those are not public API, so the
fast path is enabled only for the wasmtime versions it was checked on
(:data:`FAST_PATH_VERSIONS`) and when every symbol it needs is present;
otherwise the engine uses wasmtime-py's public API and logs why, once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from evaluator_sidecar.policy.engines.wasm.limits import tick_ms_from_env
from evaluator_sidecar.policy.engines.wasm.ticker import EpochTicker

if TYPE_CHECKING:
    from wasmtime import Engine

__all__ = [
    "FAST_PATH_VERSIONS",
    "Runtime",
    "get_runtime",
    "import_problem",
    "load_wasmtime",
]

log = logging.getLogger(__name__)

#: wasmtime-py major versions whose private ctypes bindings the fast path was checked on.
FAST_PATH_VERSIONS = range(50, 51)
#: Symbols of ``wasmtime._bindings`` the fast path calls.
_FAST_SYMBOLS = (
    "_wasmtime_func_call_unchecked",
    "_wasmtime_context_set_epoch_deadline",
    "wasmtime_val_raw_t",
    "wasm_trap_t",
    "wasmtime_memory_t",
    "wasmtime_context_t",
)
#: A tag for the engine configuration below; part of the compiled-module cache key.
CONFIG_TAG = "epoch-nomove-speed-v1"


class _State:
    """The process's one attempt at importing wasmtime, and the runtime built on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tried = False
        self.module: ModuleType | None = None
        self.import_error: str | None = None
        self.runtime: Runtime | None = None


_state = _State()


def load_wasmtime() -> ModuleType | None:
    """The wasmtime module, or None when it cannot be imported (why: :func:`import_problem`)."""
    state = _state
    if state.tried:
        return state.module
    with state.lock:
        if not state.tried:
            try:
                state.module = importlib.import_module("wasmtime")
            except Exception as exc:  # ImportError, or a broken native library (OSError)
                state.import_error = f"{type(exc).__name__}: {exc}"
                log.debug("wasmtime cannot be imported", exc_info=True)
            state.tried = True
    return state.module


def import_problem() -> str | None:
    """Why wasmtime could not be imported, or None when it was (or has not been tried)."""
    return _state.import_error


@dataclass(frozen=True)
class Runtime:
    """wasmtime, the process's engine and ticker, and whether the fast path may be used."""

    wasmtime: ModuleType
    engine: Engine
    ticker: EpochTicker
    version: str
    fast_path: bool
    fast_path_problem: str | None

    @property
    def cache_tag(self) -> str:
        """What a compiled module depends on besides its bytes: wasmtime's version, our config."""
        return f"wasmtime-{self.version}-{CONFIG_TAG}"


def _fast_path_problem(wt: ModuleType, version: str) -> str | None:
    try:
        major = int(version.split(".", maxsplit=1)[0])
    except ValueError:
        return f"cannot read wasmtime's version {version!r}"
    if major not in FAST_PATH_VERSIONS:
        return (
            f"wasmtime {version} is outside the versions the fast path was checked on "
            f"({FAST_PATH_VERSIONS.start}.x to {FAST_PATH_VERSIONS.stop - 1}.x)"
        )
    try:
        bindings = importlib.import_module("wasmtime._bindings")
        func_module = importlib.import_module("wasmtime._func")
    except ImportError as exc:
        return f"wasmtime's ctypes bindings cannot be imported ({exc})"
    missing = [name for name in _FAST_SYMBOLS if not hasattr(bindings, name)]
    if not hasattr(func_module, "LAST_EXCEPTION"):
        missing.append("_func.LAST_EXCEPTION")
    if missing:
        return f"wasmtime {version} lacks {', '.join(missing)}"
    return None


def get_runtime() -> Runtime | None:
    """The process-wide runtime (created on first use), or None when wasmtime is unavailable."""
    state = _state
    if state.runtime is not None:
        return state.runtime
    wt = load_wasmtime()
    if wt is None:
        return None
    with state.lock:
        if state.runtime is None:
            try:
                version = importlib.metadata.version("wasmtime")
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
            config = wt.Config()
            config.epoch_interruption = True
            config.cranelift_opt_level = "speed"
            config.memory_may_move = False
            engine = wt.Engine(config)
            problem = _fast_path_problem(wt, version)
            if problem:
                log.warning("wasm engine: using wasmtime's public call API (slower): %s", problem)
            ticker = EpochTicker(engine.increment_epoch, tick_ms_from_env())
            state.runtime = Runtime(
                wasmtime=wt,
                engine=engine,
                ticker=ticker,
                version=version,
                fast_path=problem is None,
                fast_path_problem=problem,
            )
    return state.runtime
