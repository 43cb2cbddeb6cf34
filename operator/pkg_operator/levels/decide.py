"""Which levels in Redis must be rewritten: wanted (from PostgreSQL) against found (pure).

A level is compared by content only: the snapshot(s) it names, the canary's
weight and the deployment that salts the cohorts. Its epoch, time stamp and
reason are not content. A level found with any other content, or not found (a
malformed one reads as not found), is rewritten with an epoch above the one
found, so the sidecars, which take only newer epochs, follow the rewrite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from evaluator_sidecar.signals.messages import PrepareSpec, ShadowSpec, SnapshotRef

#: A snapshot a level names: the one reference both sides use.
Ref = SnapshotRef

__all__ = ["Level", "Ref", "Repair", "decide", "differences"]


@dataclass(frozen=True)
class Level:
    """One desired state, an environment's (no target) or a rollout's."""

    key: str
    env: str
    stable: Ref | None
    target: str | None = None
    region: str | None = None
    deployment: str | None = None
    canary: Ref | None = None
    canary_percent: float = 0.0
    epoch: int = 0
    #: A rollout's shadow step, while one runs (content: a repair must keep it).
    shadow: ShadowSpec | None = None
    #: Phase one of a two-phase activation, while the devices prepare.
    prepare: PrepareSpec | None = None

    @property
    def is_rollout(self) -> bool:
        return self.target is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "epoch": self.epoch,
            "stable": None if self.stable is None else self.stable.to_dict(),
        }
        if self.is_rollout:
            out.update(
                deployment=self.deployment,
                canary=None if self.canary is None else self.canary.to_dict(),
                canary_percent=self.canary_percent,
            )
        return out


@dataclass(frozen=True)
class Repair:
    """A level to rewrite: what was found (None: nothing readable) and what must be written."""

    wanted: Level
    found: Level | None
    reason: Literal["missing", "different"]
    detail: str

    @property
    def floor(self) -> int:
        """The epoch the rewrite must exceed."""
        return 0 if self.found is None else self.found.epoch


def _ref_differs(name: str, wanted: Ref | None, found: Ref | None) -> str | None:
    if wanted is None and found is None:
        return None
    if wanted is not None and found is not None and wanted.matches(found):
        return None
    shown_w = "none" if wanted is None else wanted.describe()
    shown_f = "none" if found is None else found.describe()
    return f"{name} {shown_f}, wanted {shown_w}"


def _shadow_key(shadow: ShadowSpec | None) -> tuple[str, str | None, float, str] | None:
    if shadow is None:
        return None
    ref = shadow.snapshot
    return (ref.version, ref.checksum or None, shadow.sample_rate, shadow.step)


def differences(wanted: Level, found: Level) -> list[str]:
    """What differs between the two levels' content, for people; empty when they agree."""
    out = [
        d
        for d in (
            _ref_differs("stable", wanted.stable, found.stable),
            _ref_differs("canary", wanted.canary, found.canary),
        )
        if d is not None
    ]
    if (wanted.env, wanted.target, wanted.region) != (found.env, found.target, found.region):
        out.append(f"place {found.env}/{found.target}/{found.region}")
    if wanted.deployment != found.deployment:
        out.append(f"deployment {found.deployment}, wanted {wanted.deployment}")
    # Without a canary the weight selects nothing (the sidecars ignore it).
    has_canary = wanted.canary is not None or found.canary is not None
    if has_canary and abs(wanted.canary_percent - found.canary_percent) > 1e-9:
        out.append(f"canary weight {found.canary_percent:g}, wanted {wanted.canary_percent:g}")
    if _shadow_key(wanted.shadow) != _shadow_key(found.shadow):
        shown_w = wanted.shadow.snapshot.version if wanted.shadow else "none"
        shown_f = found.shadow.snapshot.version if found.shadow else "none"
        out.append(f"shadow {shown_f}, wanted {shown_w}")
    if _prepare_key(wanted.prepare) != _prepare_key(found.prepare):
        out.append("two-phase preparation differs")
    return out


def _prepare_key(prepare: PrepareSpec | None) -> tuple[str, str | None, float] | None:
    if prepare is None:
        return None
    return (prepare.snapshot.version, prepare.snapshot.checksum or None, prepare.canary_percent)


def decide(wanted: Iterable[Level], found: Mapping[str, Level | None]) -> list[Repair]:
    """The repairs that make ``found`` (by key) agree with ``wanted``, in ``wanted``'s order.

    A wanted level that names no snapshot at all (an environment with nothing
    active) is never written: there is nothing for a sidecar to load.
    """
    repairs: list[Repair] = []
    for level in wanted:
        if level.stable is None and level.canary is None:
            continue
        seen = found.get(level.key)
        if seen is None:
            repairs.append(Repair(level, None, "missing", "no readable level in Redis"))
            continue
        diff = differences(level, seen)
        if diff:
            repairs.append(Repair(level, seen, "different", "; ".join(diff)))
    return repairs
