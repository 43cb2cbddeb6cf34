"""Which rollout levels in Redis no PolicyDeployment owns, and what replaces them (pure).

A rollout level (``pkg:desired:{env}:{target}:{region}``) belongs to the
PolicyDeployment of that environment, target and region. One that none owns
(its deployment was deleted, or someone wrote it by hand) would steer the
target's sidecars forever, outside PostgreSQL's and the operator's record: the
reconciler withdraws it (a rollout level naming nothing, which sends the
sidecars back to the environment's level) and then removes the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from evaluator_sidecar.signals.keys import rollout_key
from pkg_operator.levels.decide import Level

__all__ = ["owned_key", "unowned", "withdrawal"]


def owned_key(spec: Mapping[str, object]) -> str | None:
    """The rollout level a PolicyDeployment's spec owns; None for a spec without a place."""
    env, target = spec.get("env"), spec.get("target")
    region = spec.get("region") or "global"
    if not isinstance(env, str) or not isinstance(target, str) or not isinstance(region, str):
        return None
    try:
        return rollout_key(env, target, region)
    except ValueError:
        return None


def unowned(found: Mapping[str, Level | None], owned: Iterable[str]) -> list[Level]:
    """The rollout levels found (Redis key -> level) that no owner's key names, by key.

    Only well-formed rollout levels stored under their own key are considered:
    anything else under the prefix is not a rollout level and is left alone.
    A withdrawal already written (naming nothing) still counts: its key goes.
    """
    keep = set(owned)
    out = [
        level
        for key, level in found.items()
        if level is not None and level.is_rollout and level.key == key and key not in keep
    ]
    return sorted(out, key=lambda lv: lv.key)


def withdrawal(level: Level) -> Level:
    """The level that withdraws ``level``: same place, naming no snapshot.

    Sidecars resolve a rollout level that names nothing to their environment's
    level, whatever their version (this needs no sidecar that knows removals).
    """
    return replace(level, stable=None, canary=None, canary_percent=0.0, epoch=0)
