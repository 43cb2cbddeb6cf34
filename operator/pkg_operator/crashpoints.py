"""Test-only crash points: die like ``kill -9`` just before a chosen write (the chaos suite).

The fault-injection suite (``make chaos``, tests/chaos/test_crash_*.py) kills the
operator at every distinct place where it writes, restarts it and checks that the end
state is still right. To find those places deterministically the effects layer calls
:func:`hit` just before each write: every PostgreSQL write through the store client
(``pg:<method>``), every Redis write through the signals publisher
(``redis:<method>``) and every status patch (``kube:patch_status:<plural>``,
``kube:kopf_status:<plural>`` for the status kopf writes after a handler, and
``kube:fleet_status:policysnapshots`` for the periodic FleetConverged refresh).

Two settings, for tests only, turn it on (both empty in production: :func:`hit`
then costs one dictionary lookup):

- ``PKG_TEST_CRASH_AT=<point>:<n>``: at the ``n``-th hit of ``<point>`` the process
  calls ``os._exit(137)`` before the write happens; no clean-up runs, as with SIGKILL.
  Dying before write ``k+1`` is the same as dying right after write ``k``.
- ``PKG_TEST_CRASH_RECORD=<file>``: append every hit's point name to ``<file>``, one a
  line, in order (the recording run that lists the points).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

__all__ = ["CRASH_EXIT_CODE", "CrashingProxy", "configure", "hit", "parse_crash_at"]

#: What a process killed by SIGKILL reports to a shell (128 + 9).
CRASH_EXIT_CODE = 137

log = logging.getLogger(__name__)


class _State:
    target: tuple[str, int] | None = None
    record: str = ""
    hits: ClassVar[Counter[str]] = Counter()


def parse_crash_at(value: str) -> tuple[str, int] | None:
    """``"<point>:<n>"`` as (point, n); None for the empty string; ValueError otherwise."""
    if not value:
        return None
    point, sep, count = value.rpartition(":")
    if not sep or not point or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{value!r} is not <point>:<n> with n >= 1 (e.g. pg:append_audit:2)")
    return point, int(count)


def configure(*, crash_at: str, record: str) -> None:
    """Arm the crash points from the settings (PKG_TEST_CRASH_AT, PKG_TEST_CRASH_RECORD)."""
    _State.target = parse_crash_at(crash_at)
    _State.record = record
    _State.hits.clear()
    if _State.target or record:
        log.warning(
            "test-only crash points are armed (crash at %s, recording to %s): never in production",
            crash_at or "-",
            record or "-",
        )


def enabled() -> bool:
    return _State.target is not None or bool(_State.record)


def hit(point: str) -> None:
    """Count one hit of ``point``; record it, and die here when it is the chosen one."""
    if _State.target is None and not _State.record:
        return
    _State.hits[point] += 1
    if _State.record:
        with open(_State.record, "a", encoding="utf-8") as out:
            out.write(point + "\n")
    if _State.target == (point, _State.hits[point]):
        log.warning("crash point %s:%d reached: exiting as if killed", point, _State.hits[point])
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(CRASH_EXIT_CODE)


class CrashingProxy:
    """Wraps a client so that each of its write methods first calls :func:`hit`.

    Everything else passes through unchanged; only installed when crash points are armed.
    """

    def __init__(self, inner: Any, *, prefix: str, writes: Iterable[str]) -> None:
        self._inner = inner
        self._prefix = prefix
        self._writes = frozenset(writes)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._writes or not callable(value):
            return value
        return _wrap(value, f"{self._prefix}:{name}")


def _wrap(method: Callable[..., Any], point: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            hit(point)
            return await method(*args, **kwargs)

        return wrapped_async

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        hit(point)
        return method(*args, **kwargs)

    return wrapped
