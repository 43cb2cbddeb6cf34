"""Canary cohorts: which devices of a rollout run the canary snapshot.

A device's bucket is a stable hash of the rollout (deployment uid) and the
device id, scaled to ``[0, 100)``; the device runs the canary when its bucket
is below the rollout's canary percentage. Cohorts are therefore:

- deterministic: every sidecar, and the operator predicting cohort sizes,
  computes the same answer with no coordination;
- monotonic: raising the percentage only adds devices (a device in the 10 %
  cohort is in the 50 % cohort), because the bucket never changes;
- independent across rollouts: the deployment id salts the hash, so the same
  devices are not always the first to get every canary.

The hash is sha256 of ``f"{deployment_id}\\x00{device_id}"``; its first 8 bytes,
read as a big-endian unsigned integer, give the position. Only the top 53 bits
are used so that the scaling to a float is exact and can never round up to 100.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["bucket", "cohort_size", "in_canary"]

_MANTISSA_BITS = 53


def bucket(device_id: str, deployment_id: str) -> float:
    """The device's position in ``[0, 100)`` for one rollout, with sub-percent resolution."""
    digest = hashlib.sha256(f"{deployment_id}\x00{device_id}".encode()).digest()
    top = int.from_bytes(digest[:8], "big") >> (64 - _MANTISSA_BITS)
    # top / 2**53 is exact and < 1; times 100 stays below 100 (the nearest float to
    # 100 * (1 - 2**-53) is 99.99999999999999).
    return (top / float(1 << _MANTISSA_BITS)) * 100.0


def in_canary(device_id: str, deployment_id: str, canary_percent: float) -> bool:
    """True when the device belongs to the rollout's canary cohort at ``canary_percent``.

    0 selects no device and 100 selects every device.
    """
    if canary_percent <= 0:
        return False
    return bucket(device_id, deployment_id) < canary_percent


def cohort_size(device_ids: Iterable[str], deployment_id: str, canary_percent: float) -> int:
    """How many of ``device_ids`` run the canary: what the operator expects to see."""
    return sum(1 for device in device_ids if in_canary(device, deployment_id, canary_percent))
