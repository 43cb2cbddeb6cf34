"""The epoch ticker: the clock that lets wasmtime stop a runaway evaluation.

wasmtime checks, in compiled code, whether the engine's epoch has passed the
store's deadline; something must advance the epoch. One daemon thread per
process does it every ``tick_ms``. It releases the GIL while it sleeps, and
wasm code runs with the GIL released (ctypes drops it for the call), so the
ticker keeps time while a policy spins.

It is cheap when idle: after ``park_after`` ticks in which no evaluation
started it parks on an event, and the next evaluation wakes it (``touch()``,
an attribute store and an attribute read on the hot path). Parking is only
allowed after more idle ticks than the longest deadline in use, so an
evaluation that is still running past its deadline always sees the epoch
pass it. ``stop()`` ends the thread; a later ``touch()`` starts a new one, so
stopping never leaves evaluations unbounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["EpochTicker"]

log = logging.getLogger(__name__)

#: Park after this many idle ticks at least (1 s at the default 5 ms tick).
_MIN_PARK_AFTER = 200


class EpochTicker:
    """Calls ``increment`` every ``tick_ms`` while evaluations happen; parks when idle."""

    def __init__(
        self, increment: Callable[[], None], tick_ms: float, *, park_after: int = _MIN_PARK_AFTER
    ) -> None:
        if tick_ms <= 0:
            raise ValueError(f"tick_ms must be positive, got {tick_ms!r}")
        self._increment = increment
        self.tick_ms = tick_ms
        self._period = tick_ms / 1000.0
        self._park_after = max(1, park_after)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set by every evaluation; cleared by the ticker each tick.
        self.busy = False
        #: True while the thread is parked or not running: ``touch()`` must then wake it.
        self.needs_wake = True
        #: Ticks since the thread (re)started; read by tests and diagnostics.
        self.ticks = 0

    # -- hot path -----------------------------------------------------------------
    def touch(self) -> None:
        """Mark an evaluation as starting; wake or start the thread if it is not ticking.

        Order matters: ``busy`` is set before ``needs_wake`` is read, and the
        thread sets ``needs_wake`` before it reads ``busy``, so one of the two
        always sees the other (the GIL makes these plain accesses sequentially
        consistent).
        """
        self.busy = True
        if self.needs_wake:
            self._wake_slow()

    # -- control --------------------------------------------------------------------
    def require_ticks(self, ticks: int) -> None:
        """Never park before ``ticks`` idle ticks: some evaluation may run that long."""
        with self._lock:
            self._park_after = max(self._park_after, ticks + 2)

    @property
    def park_after(self) -> int:
        return self._park_after

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def parked(self) -> bool:
        return self.running and self.needs_wake

    def start(self) -> None:
        """Start the thread if it is not running (idempotent)."""
        self._wake_slow()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it; a later ``touch()`` or ``start()`` restarts it."""
        with self._lock:
            thread = self._thread
            self.needs_wake = True
            self._stop.set()
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("wasm epoch ticker did not stop within %.1f s", timeout)

    def _wake_slow(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
                if self._thread is not None and self._thread.is_alive():
                    # A stop() is in progress; let that thread finish before a new one starts.
                    self._thread.join(1.0)
                self._stop = threading.Event()
                self._wake = threading.Event()
                self.needs_wake = False
                self.ticks = 0
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop, self._wake),
                    name="wasm-epoch-ticker",
                    daemon=True,
                )
                self._thread.start()
            else:
                self._wake.set()

    def _run(self, stop: threading.Event, wake: threading.Event) -> None:
        idle = 0
        try:
            while not stop.wait(self._period):
                self._increment()
                self.ticks += 1
                if self.busy:
                    self.busy = False
                    idle = 0
                    continue
                idle += 1
                if idle < self._park_after:
                    continue
                wake.clear()
                self.needs_wake = True
                if self.busy:  # an evaluation started while we were deciding to park
                    self.needs_wake = False
                    continue
                wake.wait()
                if stop.is_set():
                    break
                self.needs_wake = False
                idle = 0
        except Exception:
            # Without ticks no deadline fires: say so loudly; the next touch() restarts the thread.
            log.exception("wasm epoch ticker failed; it restarts on the next evaluation")
        finally:
            if self._stop is stop:  # not superseded by a newer thread
                self.needs_wake = True
