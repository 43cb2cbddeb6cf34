"""Reconnect back-off for the Redis clients (see :mod:`evaluator_sidecar.signals`)."""

from __future__ import annotations

import random

__all__ = ["MAX_RECONNECT_BACKOFF", "backoff_delay"]

MAX_RECONNECT_BACKOFF = 60.0


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = MAX_RECONNECT_BACKOFF,
    rng: random.Random | None = None,
) -> float:
    """Exponential back-off with full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``.

    Full jitter spreads a fleet's reconnects after a Redis restart instead of
    having every sidecar knock at the same instants.
    """
    ceiling = min(cap, base * (2.0 ** min(attempt, 62)))
    return (rng or random).uniform(0.0, ceiling)
