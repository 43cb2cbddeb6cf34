"""The Redis protocol between the operator and the evaluator sidecars.

Redis carries a *level* and an *edge*:

- the level is the desired state, JSON under ``pkg:desired:{env}`` (environment
  wide) and ``pkg:desired:{env}:{target}:{region}`` (one rollout), each with an
  epoch drawn from the one global counter ``pkg:epoch``;
- the edge is a message on the channel ``pkg_updates`` telling sidecars to look
  now: either the seed's plain ``activate:<version>`` or a structured
  ``{"kind": "desired", "key": ..., "state": {...}}``.

Writers set a level with a Lua compare-and-set that writes only when the new
epoch is greater than the stored one, and publishes the structured message in
the same script, so a stale writer can never move state backwards. Sidecars
read the level on start, after every reconnect and on a periodic resync, so a
missed message delays a swap by at most one resync interval and never loses it.

Heartbeats go from sidecars to Redis only: a per-device key with a TTL
(liveness) and an entry in the stream ``pkg:heartbeats`` (history), which the
operator reads with the consumer group ``pkg-operator``.

The module is split in two: pure functions and value types (key names,
encode/decode with clear errors, desired-state resolution, back-off), and the
thin async class :class:`RedisSignals` that makes the Redis calls.

One addition to the written protocol: the compare-and-set script also raises
``pkg:epoch`` to at least the epoch it writes, and sidecars raise it to the
epoch they have applied (:meth:`RedisSignals.raise_epoch_floor`) whenever they
read the level. A Redis that restarts without persistence loses the counter;
without the floor, the operator's next ``INCR`` would hand out epochs that the
sidecars ignore as old.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import orjson
from redis.exceptions import ResponseError

from evaluator_sidecar.cohorts import bucket, in_canary

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = [
    "CHANNEL",
    "CONSUMER_GROUP",
    "DEFAULT_HEARTBEAT_TTL_FACTOR",
    "EPOCH_KEY",
    "HEARTBEAT_STREAM",
    "HEARTBEAT_STREAM_MAXLEN",
    "MAX_RECONNECT_BACKOFF",
    "ActivateMessage",
    "Cohort",
    "DesiredLevels",
    "DesiredMessage",
    "DesiredState",
    "Heartbeat",
    "MessageError",
    "RedisSignals",
    "Resolution",
    "SnapshotRef",
    "backoff_delay",
    "bucket",
    "decode_message",
    "desired_key",
    "encode_activate",
    "encode_desired_message",
    "env_key",
    "heartbeat_key",
    "in_canary",
    "resolve_desired",
    "rollout_key",
]

logger = logging.getLogger(__name__)

CHANNEL = "pkg_updates"
EPOCH_KEY = "pkg:epoch"
HEARTBEAT_STREAM = "pkg:heartbeats"
HEARTBEAT_STREAM_MAXLEN = 100_000
CONSUMER_GROUP = "pkg-operator"
MAX_RECONNECT_BACKOFF = 60.0
DEFAULT_HEARTBEAT_TTL_FACTOR = 3

_ACTIVATE_PREFIX = "activate:"
_KEY_PREFIX = "pkg:desired:"

Cohort = Literal["canary", "stable", "manual", "none"]


class MessageError(ValueError):
    """A message, level or heartbeat that breaks the protocol; the text says what is wrong."""


# --------------------------------------------------------------------------- keys


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


# --------------------------------------------------------------------------- value types


def _text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message is not UTF-8 text ({exc})") from exc
    return raw


def _req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MessageError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"{where}: '{key}' must be a string or null, got {value!r}")
    return value


def _req_int(obj: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MessageError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _opt_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{where}: '{key}' must be an integer or null, got {value!r}")
    return value


def _num(obj: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _obj(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise MessageError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class SnapshotRef:
    """Which snapshot to run: its version, and optionally its id and content checksum."""

    version: str
    snapshot_id: int | None = None
    checksum: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "snapshot_id": self.snapshot_id, "checksum": self.checksum}

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> SnapshotRef:
        if not isinstance(obj, Mapping):
            raise MessageError(f"{where} must be an object with 'version', got {obj!r}")
        return cls(
            version=_req_str(obj, "version", where),
            snapshot_id=_opt_int(obj, "snapshot_id", where),
            checksum=_opt_str(obj, "checksum", where),
        )


@dataclass(frozen=True)
class DesiredState:
    """A desired state (the level) for an environment, or for one rollout when ``target`` is set.

    Environment-wide states have ``target``, ``region`` and ``deployment`` unset
    and no canary. A rollout's ``stable`` may be ``None``: devices outside the
    canary then follow the environment-wide state.
    """

    epoch: int
    env: str
    stable: SnapshotRef | None
    updated_at: float = field(default_factory=time.time)
    reason: str = ""
    target: str | None = None
    region: str | None = None
    deployment: str | None = None
    canary: SnapshotRef | None = None
    canary_percent: float = 0.0

    def __post_init__(self) -> None:
        if (self.target is None) != (self.region is None):
            raise ValueError("a rollout state needs both target and region")
        if self.target is None and (self.canary is not None or self.deployment is not None):
            raise ValueError("an environment-wide state has no canary and no deployment")
        if self.target is not None and not self.deployment:
            raise ValueError("a rollout state needs its deployment uid (salts the cohorts)")
        if not 0.0 <= self.canary_percent <= 100.0:
            raise ValueError(f"canary_percent must be within 0..100, got {self.canary_percent}")

    @property
    def is_rollout(self) -> bool:
        return self.target is not None

    @property
    def key(self) -> str:
        return desired_key(self.env, self.target, self.region)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "env": self.env,
            "stable": self.stable.to_dict() if self.stable else None,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }
        if self.is_rollout:
            out.update(
                target=self.target,
                region=self.region,
                deployment=self.deployment,
                canary=self.canary.to_dict() if self.canary else None,
                canary_percent=self.canary_percent,
            )
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "desired state") -> DesiredState:
        epoch = _req_int(obj, "epoch", where)
        env = _req_str(obj, "env", where)
        stable_raw = obj.get("stable")
        stable = (
            None if stable_raw is None else SnapshotRef.from_dict(stable_raw, f"{where}.stable")
        )
        updated_at = _num(obj, "updated_at", where, default=0.0)
        reason = obj.get("reason") or ""
        if not isinstance(reason, str):
            raise MessageError(f"{where}: 'reason' must be a string, got {reason!r}")
        target = _opt_str(obj, "target", where)
        region = _opt_str(obj, "region", where)
        if (target is None) != (region is None):
            raise MessageError(f"{where}: give both 'target' and 'region' (a rollout) or neither")
        if target is None:
            return cls(epoch, env, stable, updated_at, reason)
        canary_raw = obj.get("canary")
        canary = (
            None if canary_raw is None else SnapshotRef.from_dict(canary_raw, f"{where}.canary")
        )
        percent = _num(obj, "canary_percent", where, default=0.0)
        if not 0.0 <= percent <= 100.0:
            raise MessageError(f"{where}: 'canary_percent' must be within 0..100, got {percent}")
        return cls(
            epoch,
            env,
            stable,
            updated_at,
            reason,
            target=target,
            region=region,
            deployment=_req_str(obj, "deployment", where),
            canary=canary,
            canary_percent=percent,
        )

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "desired state") -> DesiredState:
        return cls.from_dict(_obj(raw, where), where)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ActivateMessage:
    """The seed's plain ``activate:<version>``: swap to that version now (no epoch)."""

    version: str


@dataclass(frozen=True)
class DesiredMessage:
    """The structured edge: a desired state was written under ``key``."""

    key: str
    state: DesiredState


def encode_activate(version: str) -> str:
    """``activate:<version>``, the seed's hot-swap command."""
    if not version or version != version.strip():
        raise ValueError(f"version {version!r} must be non-empty without surrounding spaces")
    return f"{_ACTIVATE_PREFIX}{version}"


def encode_desired_message(state: DesiredState) -> bytes:
    """The structured message announcing ``state`` under its key."""
    return orjson.dumps({"kind": "desired", "key": state.key, "state": state.to_dict()})


def decode_message(raw: bytes | str) -> ActivateMessage | DesiredMessage:
    """Decode one message from ``pkg_updates``; raise :class:`MessageError` saying what is wrong."""
    text = _text(raw)
    stripped = text.strip()
    if stripped.startswith(_ACTIVATE_PREFIX):
        version = stripped[len(_ACTIVATE_PREFIX) :].strip()
        if not version:
            raise MessageError("'activate:' names no version: send 'activate:<version>'")
        return ActivateMessage(version)
    if not stripped.startswith("{"):
        raise MessageError(
            f"unknown message {text[:80]!r}: expected 'activate:<version>' or a JSON object "
            '{"kind": "desired", "key": ..., "state": {...}}'
        )
    obj = _obj(stripped, "structured message")
    if obj.get("kind") != "desired":
        raise MessageError(f"structured message has kind {obj.get('kind')!r}; expected 'desired'")
    key = _req_str(obj, "key", "structured message")
    state_raw = obj.get("state")
    if not isinstance(state_raw, dict):
        raise MessageError("structured message: 'state' must be an object")
    state = DesiredState.from_dict(state_raw, "structured message state")
    if state.key != key:
        raise MessageError(
            f"structured message: key {key!r} does not match its state's key {state.key!r}"
        )
    return DesiredMessage(key, state)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class DesiredLevels:
    """The two levels a sidecar reads: its environment's and its rollout's; either may be absent."""

    env_state: DesiredState | None = None
    rollout_state: DesiredState | None = None

    @property
    def epoch(self) -> int:
        """The newest epoch of the levels present (0 when none is)."""
        return max(
            (s.epoch for s in (self.env_state, self.rollout_state) if s is not None), default=0
        )

    def with_state(self, state: DesiredState) -> DesiredLevels:
        """These levels with ``state`` replacing the one of its kind when it is newer."""
        if state.is_rollout:
            if self.rollout_state is None or state.epoch > self.rollout_state.epoch:
                return replace(self, rollout_state=state)
            return self
        if self.env_state is None or state.epoch > self.env_state.epoch:
            return replace(self, env_state=state)
        return self


@dataclass(frozen=True)
class Resolution:
    """What one device should run, decided from the levels.

    ``ref`` is ``None`` when no level names a snapshot: the device then runs
    PostgreSQL's active snapshot for its environment (``source == "database"``).
    """

    ref: SnapshotRef | None
    cohort: Cohort
    epoch: int
    source: Literal["rollout", "env", "database", "manual"]


def resolve_desired(levels: DesiredLevels, *, device_id: str) -> Resolution:
    """A device's snapshot: the rollout level if present, else the environment's, else the DB.

    Within a rollout, a device whose bucket is below ``canary_percent`` runs the
    canary; the others run the rollout's stable, or the environment's stable when
    the rollout names none.
    """
    epoch = levels.epoch
    rollout = levels.rollout_state
    env_ref = levels.env_state.stable if levels.env_state else None
    if rollout is not None:
        if (
            rollout.canary is not None
            and rollout.deployment
            and in_canary(device_id, rollout.deployment, rollout.canary_percent)
        ):
            return Resolution(rollout.canary, "canary", epoch, "rollout")
        if rollout.stable is not None:
            return Resolution(rollout.stable, "stable", epoch, "rollout")
    if env_ref is not None:
        return Resolution(env_ref, "stable", epoch, "env")
    return Resolution(None, "stable", epoch, "database")


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


# --------------------------------------------------------------------------- heartbeats


@dataclass(frozen=True)
class Heartbeat:
    """One sidecar's report: what it runs, how it fares since its previous beat."""

    device_id: str
    device_type: str
    env: str
    target: str
    region: str
    version: str | None
    snapshot_id: int | None
    checksum: str | None
    epoch: int
    cohort: Cohort
    evaluations: int = 0
    errors: int = 0
    p99_ms: float | None = None
    activation_failures: int = 0
    last_error: str | None = None
    healthy: bool = True
    degraded: bool = False
    ts: float = field(default_factory=time.time)
    #: The newest desired epoch the sidecar has seen (``epoch`` is the one it runs).
    desired_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "device_type": self.device_type,
            "env": self.env,
            "target": self.target,
            "region": self.region,
            "version": self.version,
            "snapshot_id": self.snapshot_id,
            "checksum": self.checksum,
            "epoch": self.epoch,
            "desired_epoch": self.desired_epoch,
            "cohort": self.cohort,
            "evaluations": self.evaluations,
            "errors": self.errors,
            "p99_ms": self.p99_ms,
            "activation_failures": self.activation_failures,
            "last_error": self.last_error,
            "healthy": self.healthy,
            "degraded": self.degraded,
            "ts": self.ts,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Heartbeat:
        where = "heartbeat"
        obj = _obj(raw, where)
        cohort = obj.get("cohort")
        if cohort not in ("canary", "stable", "manual", "none"):
            raise MessageError(
                f"{where}: 'cohort' must be canary|stable|manual|none, got {cohort!r}"
            )
        p99 = obj.get("p99_ms")
        for flag in ("healthy", "degraded"):
            if not isinstance(obj.get(flag), bool):
                raise MessageError(f"{where}: '{flag}' must be true or false")
        return cls(
            device_id=_req_str(obj, "device_id", where),
            device_type=_req_str(obj, "device_type", where),
            env=_req_str(obj, "env", where),
            target=_req_str(obj, "target", where),
            region=_req_str(obj, "region", where),
            version=_opt_str(obj, "version", where),
            snapshot_id=_opt_int(obj, "snapshot_id", where),
            checksum=_opt_str(obj, "checksum", where),
            epoch=_req_int(obj, "epoch", where),
            cohort=cohort,
            evaluations=_req_int(obj, "evaluations", where),
            errors=_req_int(obj, "errors", where),
            p99_ms=None if p99 is None else _num(obj, "p99_ms", where),
            activation_failures=_req_int(obj, "activation_failures", where),
            last_error=_opt_str(obj, "last_error", where),
            healthy=bool(obj["healthy"]),
            degraded=bool(obj["degraded"]),
            ts=_num(obj, "ts", where),
            desired_epoch=int(obj.get("desired_epoch") or 0),
        )


# --------------------------------------------------------------------------- Redis calls

# KEYS[1] the level, KEYS[2] the epoch counter. ARGV: epoch, state JSON, channel,
# message, announce ("1" publishes). Returns 1 when written, 0 when refused as stale.
_CAS_SCRIPT = """
local new_epoch = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' then
    local stored = tonumber(decoded['epoch'])
    if stored and stored >= new_epoch then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if counter < new_epoch then
  redis.call('SET', KEYS[2], ARGV[1])
end
if ARGV[5] == '1' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
"""

# KEYS[1] the epoch counter; ARGV[1] the floor. Returns the counter afterwards.
_FLOOR_SCRIPT = """
local floor = tonumber(ARGV[1])
local counter = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if counter < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return counter
"""


class RedisSignals:
    """The protocol's Redis calls over one ``redis.asyncio.Redis`` client.

    Connection errors propagate (``redis.exceptions.ConnectionError`` and
    friends): callers decide whether to retry. Malformed data found in Redis is
    logged with its key and treated as absent.
    """

    def __init__(self, redis: Redis, *, channel: str = CHANNEL) -> None:
        self.redis = redis
        self.channel = channel
        self._cas = redis.register_script(_CAS_SCRIPT)
        self._floor = redis.register_script(_FLOOR_SCRIPT)

    # ---- levels

    async def next_epoch(self) -> int:
        """A new epoch from the global counter, greater than any handed out before."""
        return int(await self.redis.incr(EPOCH_KEY))

    async def publish_desired(self, state: DesiredState, *, announce: bool = True) -> bool:
        """Write ``state`` under its key if its epoch is newer, and announce it on the channel.

        Returns False (nothing written, nothing published) when the stored state's
        epoch is equal or newer. ``announce=False`` writes the level silently (tests
        use it to prove that a resync alone converges).
        """
        written = await self._cas(
            keys=[state.key, EPOCH_KEY],
            args=[
                state.epoch,
                state.to_json(),
                self.channel,
                encode_desired_message(state),
                "1" if announce else "0",
            ],
        )
        return int(written) == 1

    async def publish_new_desired(
        self, state: DesiredState, *, announce: bool = True
    ) -> DesiredState:
        """Allocate a fresh epoch, stamp ``state`` with it, write and announce it."""
        stamped = replace(state, epoch=await self.next_epoch(), updated_at=time.time())
        if not await self.publish_desired(stamped, announce=announce):
            # Only a writer that stored an epoch above the counter could cause this.
            raise RuntimeError(f"{stamped.key} holds an epoch above the counter {stamped.epoch}")
        return stamped

    async def publish_activate(self, version: str) -> int:
        """Publish the seed's ``activate:<version>``; returns the number of receivers."""
        return int(await self.redis.publish(self.channel, encode_activate(version)))

    async def read_state(self, key: str) -> DesiredState | None:
        raw = await self.redis.get(key)
        return self._parse_state(key, raw)

    async def read_levels(self, env: str, target: str, region: str) -> DesiredLevels:
        """The environment's and the rollout's desired states in one round trip."""
        ekey, rkey = env_key(env), rollout_key(env, target, region)
        env_raw, rollout_raw = await self.redis.mget([ekey, rkey])
        env_state = self._parse_state(ekey, env_raw)
        rollout_state = self._parse_state(rkey, rollout_raw)
        if env_state is not None and env_state.is_rollout:
            logger.error("level %s holds a rollout state; ignoring it", ekey)
            env_state = None
        if rollout_state is not None and not rollout_state.is_rollout:
            logger.error("level %s holds an environment-wide state; ignoring it", rkey)
            rollout_state = None
        return DesiredLevels(env_state, rollout_state)

    @staticmethod
    def _parse_state(key: str, raw: bytes | str | None) -> DesiredState | None:
        if raw is None:
            return None
        try:
            return DesiredState.from_json(raw, f"level {key}")
        except MessageError:
            logger.exception("level %s is malformed; treating it as absent", key)
            return None

    async def raise_epoch_floor(self, epoch: int) -> int:
        """Raise ``pkg:epoch`` to at least ``epoch``; returns the counter."""
        return int(await self._floor(keys=[EPOCH_KEY], args=[epoch]))

    # ---- the edge

    async def subscribe(self) -> PubSub:
        """A pub/sub connection subscribed to the channel (the caller closes it with ``aclose``)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        return pubsub

    async def messages(
        self, pubsub: PubSub, *, idle_seconds: float = 1.0
    ) -> AsyncIterator[ActivateMessage | DesiredMessage | None]:
        """Decoded messages from ``pubsub``; yields ``None`` after ``idle_seconds`` of silence.

        Malformed messages are logged with their text and skipped. Connection
        errors end the iteration by propagating.
        """
        while True:
            started = time.monotonic()
            raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=idle_seconds)
            if raw is None:
                # get_message also answers None for a (filtered) subscribe confirmation.
                if time.monotonic() - started >= idle_seconds * 0.9:
                    yield None
                continue
            if raw.get("type") != "message":
                continue
            data = raw.get("data")
            try:
                yield decode_message(data)
            except MessageError as exc:
                logger.warning(
                    "ignoring malformed message on %s: %s (message: %r)", self.channel, exc, data
                )

    # ---- heartbeats

    async def write_heartbeat(self, heartbeat: Heartbeat, *, ttl_seconds: int) -> None:
        """The per-device key (with TTL) and the stream entry, in one pipeline round trip."""
        body = heartbeat.to_json()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(heartbeat_key(heartbeat.env, heartbeat.device_id), body, ex=ttl_seconds)
            pipe.xadd(
                HEARTBEAT_STREAM, {"hb": body}, maxlen=HEARTBEAT_STREAM_MAXLEN, approximate=True
            )
            await pipe.execute()

    async def ensure_heartbeat_group(
        self, group: str = CONSUMER_GROUP, start_id: str = "0"
    ) -> None:
        """Create the consumer group (and the stream) unless it exists."""
        try:
            await self.redis.xgroup_create(HEARTBEAT_STREAM, group, id=start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_heartbeats(
        self,
        consumer: str,
        *,
        group: str = CONSUMER_GROUP,
        count: int = 1000,
        block_ms: int | None = 1000,
        pending: bool = False,
    ) -> list[tuple[str, Heartbeat]]:
        """Up to ``count`` heartbeats for ``consumer`` of ``group``: ``(entry id, heartbeat)``.

        ``pending=True`` re-reads this consumer's delivered but unacknowledged
        entries (after a restart) instead of new ones. Malformed entries are
        logged and acknowledged so they are not delivered again.
        """
        reply: Any = await self.redis.xreadgroup(
            group,
            consumer,
            {HEARTBEAT_STREAM: "0" if pending else ">"},
            count=count,
            block=None if pending else block_ms,
        )
        out: list[tuple[str, Heartbeat]] = []
        bad: list[str] = []
        # RESP2 replies are [[stream, entries]]; RESP3 replies are {stream: entries}.
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for _stream, entries in streams:
            for entry_id, fields in entries:
                eid = _text(entry_id)
                body = fields.get(b"hb", fields.get("hb")) if fields else None
                if body is None:
                    logger.warning("heartbeat entry %s has no 'hb' field; acknowledging it", eid)
                    bad.append(eid)
                    continue
                try:
                    out.append((eid, Heartbeat.from_json(body)))
                except MessageError as exc:
                    logger.warning(
                        "heartbeat entry %s is malformed (%s); acknowledging it", eid, exc
                    )
                    bad.append(eid)
        if bad:
            await self.ack_heartbeats(bad, group=group)
        return out

    async def ack_heartbeats(self, entry_ids: Sequence[str], *, group: str = CONSUMER_GROUP) -> int:
        if not entry_ids:
            return 0
        return int(await self.redis.xack(HEARTBEAT_STREAM, group, *entry_ids))

    async def live_heartbeats(self, env: str) -> list[Heartbeat]:
        """The last heartbeat of every device of ``env`` whose key has not expired."""
        keys = [k async for k in self.redis.scan_iter(match=f"pkg:hb:{env}:*", count=500)]
        if not keys:
            return []
        beats: list[Heartbeat] = []
        for key, raw in zip(keys, await self.redis.mget(keys), strict=True):
            if raw is None:
                continue  # expired between SCAN and MGET
            try:
                beats.append(Heartbeat.from_json(raw))
            except MessageError as exc:
                logger.warning("heartbeat key %r is malformed (%s); skipping it", key, exc)
        return beats

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
