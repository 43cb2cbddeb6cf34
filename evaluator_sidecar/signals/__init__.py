"""The signals layer: the Redis protocol between the operator and the evaluator sidecars.

Redis carries a *level* and an *edge*:

- the level is the desired state, JSON under ``pkg:desired:{env}`` (environment
  wide) and ``pkg:desired:{env}:{target}:{region}`` (one rollout), each with an
  epoch drawn from the one global counter ``pkg:epoch``;
- the edge is a message on the channel ``pkg_updates`` telling sidecars to look
  now: either the plain ``activate:<version>`` (the original command, still
  accepted; see the README's Concepts) or a structured
  ``{"kind": "desired", "key": ..., "state": {...}}``;
- beside them, the facts level ``pkg:facts:{env}`` (:class:`FactsLevel`: the
  version of the environment's fact set in PostgreSQL, with an epoch) and its
  message ``{"kind": "facts", "key": ..., "level": {...}}``, written with the same
  compare-and-set.

Writers set a level with a Lua compare-and-set that writes only when the new
epoch is greater than the stored one, and publishes the structured message in
the same script, so a stale writer can never move state backwards. Sidecars
read the level on start, after every reconnect and on a periodic resync, so a
missed message delays a swap by at most one resync interval and never loses it.

Heartbeats go from sidecars to Redis only: a per-device key with a TTL
(liveness) and an entry in the stream ``pkg:heartbeats`` (history), which the
operator reads with the consumer group ``pkg-operator``.

The package is split by responsibility: pure functions and value types (``keys``:
key names; ``messages``: encode/decode with clear errors; ``resolution``:
desired-state resolution; ``cohorts``: canary cohorts; ``backoff``: reconnect
back-off), and the thin async class :class:`RedisSignals` (``client``) that makes
the Redis calls. Every public name is importable from here. Beside them, and
imported by their own module path: ``connect`` builds the one Redis client of each
process (plain URL, ``rediss://`` with CA/client files, or Sentinel's master), and
``acl`` holds the ACL rules of the sidecar's least-privilege Redis user.

It may import only itself, the standard library, redis and orjson: never the
policy core, the store (PostgreSQL), the sidecar's runtime or the operator
(import-linter contracts hold this).

One addition to the written protocol: the compare-and-set script also raises
``pkg:epoch`` to at least the epoch it writes, and sidecars raise it to the
epoch they have applied (:meth:`RedisSignals.raise_epoch_floor`) whenever they
read the level. A Redis that restarts without persistence loses the counter;
without the floor, the operator's next ``INCR`` would hand out epochs that the
sidecars ignore as old.
"""

from evaluator_sidecar.signals.backoff import MAX_RECONNECT_BACKOFF, backoff_delay
from evaluator_sidecar.signals.client import RedisSignals
from evaluator_sidecar.signals.cohorts import bucket, in_canary
from evaluator_sidecar.signals.heartbeat import Heartbeat, Totals
from evaluator_sidecar.signals.keys import (
    CHANNEL,
    CONSUMER_GROUP,
    DEFAULT_HEARTBEAT_TTL_FACTOR,
    EPOCH_KEY,
    HEARTBEAT_STREAM,
    HEARTBEAT_STREAM_MAXLEN,
    desired_key,
    env_key,
    facts_key,
    heartbeat_key,
    rollout_key,
)
from evaluator_sidecar.signals.messages import (
    ActivateMessage,
    Cohort,
    DesiredMessage,
    DesiredState,
    FactsLevel,
    FactsMessage,
    MessageError,
    PrepareSpec,
    ShadowSpec,
    SnapshotRef,
    decode_message,
    encode_activate,
    encode_desired_message,
    encode_facts_message,
)
from evaluator_sidecar.signals.resolution import DesiredLevels, Resolution, resolve_desired

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
    "FactsLevel",
    "FactsMessage",
    "Heartbeat",
    "MessageError",
    "PrepareSpec",
    "RedisSignals",
    "Resolution",
    "ShadowSpec",
    "SnapshotRef",
    "Totals",
    "backoff_delay",
    "bucket",
    "decode_message",
    "desired_key",
    "encode_activate",
    "encode_desired_message",
    "encode_facts_message",
    "env_key",
    "facts_key",
    "heartbeat_key",
    "in_canary",
    "resolve_desired",
    "rollout_key",
]
