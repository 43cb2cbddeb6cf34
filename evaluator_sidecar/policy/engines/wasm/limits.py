"""The bounds every WASM evaluation runs under: a wall-clock deadline and a memory cap.

Each evaluation gets an epoch deadline (wasmtime traps the running code once the
process's epoch ticker has advanced past it) and the policy's linear memory is
created with a maximum page count. Both are configurable per engine and, by
default, from ``PKG_WASM_DEADLINE_MS``, ``PKG_WASM_MAX_MEMORY_PAGES`` and
``PKG_WASM_TICK_MS``. Defaults and meaning: docs/wasm-engine.md ("Limits").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DEADLINE_MS",
    "DEFAULT_MAX_MEMORY_PAGES",
    "DEFAULT_TICK_MS",
    "PAGE_SIZE",
    "WasmLimits",
    "tick_ms_from_env",
    "ticks_for",
]

PAGE_SIZE = 65536
DEFAULT_DEADLINE_MS = 50.0
DEFAULT_MAX_MEMORY_PAGES = 512
DEFAULT_TICK_MS = 5.0
#: wasm32 cannot address more than 4 GiB.
_MAX_PAGES = 65536
#: Loading a module and its data is not an evaluation; it gets this much time.
_LOAD_DEADLINE_MS = 10_000.0


@dataclass(frozen=True)
class WasmLimits:
    """Per-evaluation deadline and per-instance memory cap of the WASM engine."""

    deadline_ms: float = DEFAULT_DEADLINE_MS
    max_memory_pages: int = DEFAULT_MAX_MEMORY_PAGES

    def __post_init__(self) -> None:
        if not (self.deadline_ms > 0 and math.isfinite(self.deadline_ms)):
            raise ValueError(f"deadline_ms must be a positive number, got {self.deadline_ms!r}")
        if not 2 <= self.max_memory_pages <= _MAX_PAGES:
            raise ValueError(
                f"max_memory_pages must be between 2 and {_MAX_PAGES} (pages of 64 KiB), "
                f"got {self.max_memory_pages!r}"
            )

    @property
    def max_memory_bytes(self) -> int:
        return self.max_memory_pages * PAGE_SIZE

    def deadline_ticks(self, tick_ms: float) -> int:
        """Epoch ticks one evaluation may run for, with the ticker advancing every ``tick_ms``."""
        return ticks_for(self.deadline_ms, tick_ms)

    @staticmethod
    def load_ticks(tick_ms: float) -> int:
        """Epoch ticks allowed for instantiation and loading ``data`` (not evaluations)."""
        return ticks_for(_LOAD_DEADLINE_MS, tick_ms)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WasmLimits:
        """Limits from ``PKG_WASM_*`` variables, defaults for those unset.

        Raises ValueError naming the variable when one is not a valid number.
        """
        source = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            raw = source.get(name, "").strip()
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(
                    f"{name}={raw!r} is not a number; unset it or give e.g. {default:g}"
                ) from None

        pages = number("PKG_WASM_MAX_MEMORY_PAGES", DEFAULT_MAX_MEMORY_PAGES)
        if pages != int(pages):
            raise ValueError(
                f"PKG_WASM_MAX_MEMORY_PAGES={pages!r} must be a whole number of 64 KiB pages"
            )
        return cls(
            deadline_ms=number("PKG_WASM_DEADLINE_MS", DEFAULT_DEADLINE_MS),
            max_memory_pages=int(pages),
        )


def ticks_for(duration_ms: float, tick_ms: float) -> int:
    """Epoch ticks to allow for ``duration_ms``: one more than it covers, so it is never cut short.

    The first tick after a deadline is set may come at any moment within a tick
    period, so ``ceil(duration / tick)`` ticks could stop the code up to one tick
    early; one extra tick makes ``duration_ms`` a lower bound.
    """
    if not (tick_ms > 0 and math.isfinite(tick_ms)):
        raise ValueError(f"tick_ms must be a positive number, got {tick_ms!r}")
    return math.ceil(duration_ms / tick_ms) + 1


def tick_ms_from_env(env: Mapping[str, str] | None = None) -> float:
    """The epoch ticker's period from ``PKG_WASM_TICK_MS`` (default 5 ms)."""
    raw = (os.environ if env is None else env).get("PKG_WASM_TICK_MS", "").strip()
    if not raw:
        return DEFAULT_TICK_MS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"PKG_WASM_TICK_MS={raw!r} is not a number; unset it or give e.g. 5"
        ) from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"PKG_WASM_TICK_MS={raw!r} must be a positive number of milliseconds")
    return value
