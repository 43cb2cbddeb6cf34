"""How stale a sidecar's view of its desired level is, and what to do past the limit.

A sidecar that cannot hear from Redis keeps answering with the snapshot it has,
which may no longer be the one it should run (a rollback it never heard of).
:class:`Staleness` remembers when the device last *confirmed* its desired level:
a successful read of the levels from Redis (at start, on every resync and
reconnect) or a desired-state message for this device. Its staleness is the
time since then (since the process started, when it never confirmed one).

Past ``max_seconds`` (``PKG_MAX_STALENESS_SECONDS``; 0 turns the policy off) the
device is *stale*, and the policy (``PKG_STALENESS_POLICY``) says what happens:

- ``serve``: keep answering, and say so (``PKG-Stale: true`` on every answer,
  ``stale`` in ``/readyz``, ``/metrics`` and heartbeats);
- ``fail-closed``: refuse evaluations with 503 and the error code
  ``stale_policy`` (README.md, "The sidecar's HTTP API"), and fail ``/readyz``,
  so the application can act (deny, retry elsewhere) instead of trusting a
  decision made with a policy that may have been withdrawn.

A sidecar without Redis has no level to confirm and is never stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

__all__ = ["STALE_ERROR_CODE", "Staleness", "StalenessMode"]

StalenessMode = Literal["serve", "fail-closed"]

#: The ``error.code`` of an answer refused because the sidecar is stale (fail-closed).
STALE_ERROR_CODE = "stale_policy"


class Staleness:
    """When the desired level was last confirmed, and whether that is too long ago."""

    def __init__(
        self,
        *,
        max_seconds: float = 0.0,
        mode: StalenessMode = "serve",
        applies: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_seconds = max_seconds
        self.mode: StalenessMode = mode
        #: False without Redis: there is no level to confirm.
        self.applies = applies
        self._clock = clock
        self.started_at = clock()
        self.confirmed_at: float | None = None

    def confirm(self) -> None:
        """The desired level was just read from Redis or received in a message."""
        self.confirmed_at = self._clock()

    def seconds(self) -> float | None:
        """Seconds since the level was last confirmed (since start if never); None: n/a."""
        if not self.applies:
            return None
        since = self.confirmed_at if self.confirmed_at is not None else self.started_at
        return max(0.0, self._clock() - since)

    def stale(self) -> bool:
        if self.max_seconds <= 0 or not self.applies:
            return False
        age = self.seconds()
        return age is not None and age > self.max_seconds

    def refuses(self) -> bool:
        """Whether an evaluation must be refused now (fail-closed and stale)."""
        return self.mode == "fail-closed" and self.stale()

    def status(self) -> dict[str, object]:
        """The fields /healthz, /readyz, /v1/metadata and heartbeats report."""
        age = self.seconds()
        return {
            "stale": self.stale(),
            "staleness_seconds": None if age is None else round(age, 3),
            "level_confirmed_at": self.confirmed_at,
            "max_staleness_seconds": self.max_seconds or None,
            "staleness_policy": self.mode,
        }
