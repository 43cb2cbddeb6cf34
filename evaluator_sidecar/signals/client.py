"""The thin async class :class:`RedisSignals` that makes the protocol's Redis calls."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from evaluator_sidecar.signals import errors as redis_errors
from evaluator_sidecar.signals.heartbeat import Heartbeat
from evaluator_sidecar.signals.keys import (
    CHANNEL,
    CONSUMER_GROUP,
    EPOCH_KEY,
    HEARTBEAT_STREAM,
    HEARTBEAT_STREAM_MAXLEN,
    env_key,
    facts_key,
    heartbeat_key,
    rollout_key,
)
from evaluator_sidecar.signals.messages import (
    ActivateMessage,
    DesiredMessage,
    DesiredState,
    FactsLevel,
    FactsMessage,
    MessageError,
    decode_message,
    encode_activate,
    encode_desired_message,
    encode_facts_message,
)
from evaluator_sidecar.signals.resolution import DesiredLevels
from evaluator_sidecar.signals.wire import as_text

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["RedisSignals"]

logger = logging.getLogger(__name__)

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

    async def publish_facts_level(self, level: FactsLevel, *, announce: bool = True) -> bool:
        """Write an environment's facts level if its epoch is newer, and announce it."""
        written = await self._cas(
            keys=[level.key, EPOCH_KEY],
            args=[
                level.epoch,
                level.to_json(),
                self.channel,
                encode_facts_message(level),
                "1" if announce else "0",
            ],
        )
        return int(written) == 1

    async def read_facts_level(self, env: str) -> FactsLevel | None:
        """The environment's facts level; None when missing or malformed (logged)."""
        key = facts_key(env)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        try:
            return FactsLevel.from_json(raw, f"facts level {key}")
        except MessageError:
            logger.exception("facts level %s is malformed; treating it as absent", key)
            return None

    async def publish_activate(self, version: str) -> int:
        """Publish the plain ``activate:<version>``; returns the number of receivers."""
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
    ) -> AsyncIterator[ActivateMessage | DesiredMessage | FactsMessage | None]:
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
        except redis_errors.ResponseError as exc:
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
                eid = as_text(entry_id)
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
