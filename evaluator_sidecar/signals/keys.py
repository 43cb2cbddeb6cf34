"""Key and channel names of the Redis protocol (see :mod:`evaluator_sidecar.signals`)."""

from __future__ import annotations

__all__ = [
    "CHANNEL",
    "CONSUMER_GROUP",
    "DEFAULT_HEARTBEAT_TTL_FACTOR",
    "EPOCH_KEY",
    "HEARTBEAT_STREAM",
    "HEARTBEAT_STREAM_MAXLEN",
    "desired_key",
    "env_key",
    "facts_key",
    "heartbeat_key",
    "rollout_key",
]

CHANNEL = "pkg_updates"
EPOCH_KEY = "pkg:epoch"
HEARTBEAT_STREAM = "pkg:heartbeats"
HEARTBEAT_STREAM_MAXLEN = 100_000
CONSUMER_GROUP = "pkg-operator"
DEFAULT_HEARTBEAT_TTL_FACTOR = 3

_KEY_PREFIX = "pkg:desired:"


def _check_part(name: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def env_key(env: str) -> str:
    """``pkg:desired:{env}``: the environment-wide desired state."""
    return f"{_KEY_PREFIX}{_check_part('env', env)}"


def rollout_key(env: str, target: str, region: str) -> str:
    """``pkg:desired:{env}:{target}:{region}``: one rollout's desired state.

    A target may itself contain ``:`` (``edge:door``); keys are only ever built,
    never parsed back into parts.
    """
    return (
        f"{_KEY_PREFIX}{_check_part('env', env)}:{_check_part('target', target)}"
        f":{_check_part('region', region)}"
    )


def desired_key(env: str, target: str | None = None, region: str | None = None) -> str:
    """The key for an environment (no target/region) or for one rollout."""
    if target is None and region is None:
        return env_key(env)
    if target is None or region is None:
        raise ValueError("give both target and region for a rollout key, or neither")
    return rollout_key(env, target, region)


def heartbeat_key(env: str, device_id: str) -> str:
    """``pkg:hb:{env}:{device_id}``: the device's last heartbeat, expiring with its TTL."""
    return f"pkg:hb:{_check_part('env', env)}:{_check_part('device_id', device_id)}"


def facts_key(env: str) -> str:
    """``pkg:facts:{env}``: the environment's facts level (its fact set's version)."""
    return f"pkg:facts:{_check_part('env', env)}"
