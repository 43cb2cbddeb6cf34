"""Temporal facts with one meaning (issue 14, item 4): environment facts on the test bed.

The operator and a fleet of ``pkg-sidecar`` processes run against the test bed. A
fact is added at run time through ``PKGClient.create_temporal_fact``; every
sidecar's answers change, carrying the new facts version, without a new policy
version. A fact whose ``valid_to`` passes stops matching with no message at all.
After FLUSHALL the operator writes the facts level again from PostgreSQL. The
figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import yaml
from test_levels import LevelFleet

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.models import TemporalFact
from pkg_testbed.cluster import Cluster, condition, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.e2e

LEVEL_RESYNC = 3.0
SIDECAR_RESYNC = 2.0
DEVICES = 4


def facts_snapshot(name: str, version: str, env: str, subject: str) -> str:
    """A snapshot whose rule opens the lounge while ``subject hasTemporaryAccess lounge``."""
    spec: dict[str, Any] = {
        "version": version,
        "env": env,
        "engine": "native",
        "autoPromote": True,
        "subtaskTypes": [{"name": "open", "default_params": {}}],
        "rules": [
            {
                "rule_id": "rule-lounge",
                "rule_name": "lounge_access",
                "priority": 10,
                "conditions": [
                    {
                        "condition_type": "FACT",
                        "condition_key": f"{subject} hasTemporaryAccess",
                        "operator": "=",
                        "value": "lounge",
                    }
                ],
                "emissions": [{"subtask_type": "open", "subtask_name": "open_lounge"}],
            }
        ],
        "fixtures": [
            {
                "name": "with the fact",
                "input": {
                    "facts": [
                        {"subject": subject, "predicate": "hasTemporaryAccess", "object": "lounge"}
                    ]
                },
                "expect": {"subtasks": ["open_lounge"]},
            },
            {"name": "without it", "input": {}, "expect": {"subtasks": []}},
        ],
    }
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def evaluate(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/v1/evaluate",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def answers(fleet: LevelFleet, ids: list[str]) -> dict[str, tuple[bool, int]]:
    """Per device: (does its answer open the lounge, the facts version it reports)."""
    out = {}
    for device in ids:
        body = evaluate(fleet.sidecars[device].url)
        opened = [s["name"] for s in body["subtasks"]] == ["open_lounge"]
        out[device] = (opened, int(body["facts_version"]))
    return out


def report(what: str, seconds: float) -> None:
    print(f"\n[facts] {what}: {seconds:.2f}s", flush=True)


@pytest.fixture
def facts_fleet(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., LevelFleet]]:
    fleets: list[LevelFleet] = []

    def make(env: str, resync: float = SIDECAR_RESYNC) -> LevelFleet:
        fleet = LevelFleet(
            cluster, cluster.workdir / request.node.name, env, f"facts-{uuid.uuid4().hex[:8]}"
        )
        fleet.resync = resync
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


_OPERATORS: dict[int, OperatorProcess] = {}


def operators(start_operator: Callable[..., OperatorProcess]) -> list[OperatorProcess]:
    """The operator this test started (the fixture stops it again at the end)."""
    proc = _OPERATORS.get(id(start_operator))
    return [] if proc is None else [proc]


def start(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    facts_fleet: Callable[..., LevelFleet],
    env: str,
    *,
    resync: float = SIDECAR_RESYNC,
) -> tuple[LevelFleet, list[str], str]:
    """The operator, a FACT snapshot active in ``env`` and a fleet running it; the subject."""
    _OPERATORS[id(start_operator)] = start_operator(
        PKG_LEVEL_RESYNC_SECONDS=str(LEVEL_RESYNC), PKG_STANDALONE="false"
    )
    subject = f"guest:{namespace}"
    version = f"rules@1.0.0-facts-{namespace}"
    cluster.apply(namespace, facts_snapshot("lounge", version, env, subject))
    wait_for(
        lambda: (
            condition(cluster.get("psnap", "lounge", namespace), "Active").get("status") == "True"
        ),
        what=f"{version} active",
    )
    fleet = facts_fleet(env, resync)
    ids = fleet.start("eu-west", DEVICES)
    wait_for(
        lambda: fleet.converged(dict.fromkeys(ids, version)),
        timeout=60,
        what=f"the fleet to run {version}",
    )
    return fleet, ids, subject


async def pg_version(cluster: Cluster, env: str) -> int:
    client = PKGClient(cluster.database_url, env=env, max_size=1)
    try:
        return await client.facts_version(env)
    finally:
        await client.close()


async def add_fact(cluster: Cluster, env: str, fact: TemporalFact) -> int:
    client = PKGClient(cluster.database_url, env=env, max_size=1)
    try:
        await client.create_temporal_fact(fact)
        return await client.facts_version(env)
    finally:
        await client.close()


async def test_a_fact_added_at_run_time_changes_every_sidecars_answers(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    facts_fleet: Callable[..., LevelFleet],
) -> None:
    env = "staging"
    fleet, ids, subject = start(cluster, namespace, start_operator, facts_fleet, env)
    before = answers(fleet, ids)
    assert not any(opened for opened, _ in before.values()), before

    started = time.monotonic()
    version = await add_fact(
        cluster,
        env,
        TemporalFact(subject, "hasTemporaryAccess", "lounge", created_by="front-desk"),
    )
    wait_for(
        lambda: answers(fleet, ids) == dict.fromkeys(ids, (True, version)),
        timeout=SIDECAR_RESYNC + 5,
        what=f"every sidecar to answer with the new fact (facts version {version})",
    )
    seconds = time.monotonic() - started
    report(
        f"fact added at run time: {DEVICES}/{DEVICES} sidecars answer with it "
        f"(sidecar resync {SIDECAR_RESYNC}s)",
        seconds,
    )
    assert seconds <= SIDECAR_RESYNC + 5
    # The policy version did not change, and every heartbeat reports the facts version.
    assert set(fleet.versions(ids).values()) == {f"rules@1.0.0-facts-{namespace}"}
    client = aioredis.from_url(cluster.redis_url)
    try:

        async def beats() -> dict[str, int]:
            out = {}
            for device in ids:
                raw = await client.get(f"pkg:hb:{env}:{device}")
                out[device] = json.loads(raw)["facts_version"] if raw else -1
            return out

        for _ in range(25):  # heartbeats come every second
            if await beats() == dict.fromkeys(ids, version):
                break
            await asyncio.sleep(0.2)
        assert await beats() == dict.fromkeys(ids, version)
        level = json.loads(await client.get(f"pkg:facts:{env}"))
        assert level["version"] == version
    finally:
        await client.aclose()


async def test_without_level_or_message_a_fact_arrives_by_the_resync(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    facts_fleet: Callable[..., LevelFleet],
) -> None:
    env = "dev"
    fleet, ids, subject = start(cluster, namespace, start_operator, facts_fleet, env)
    # No operator and no facts level: nothing announces the fact. The sidecars' periodic
    # resync finds no level and asks PostgreSQL for the version.
    for proc in list(operators(start_operator)):
        proc.stop()
    redis = aioredis.from_url(cluster.redis_url)
    try:
        await redis.delete(f"pkg:facts:{env}")
    finally:
        await redis.aclose()
    started = time.monotonic()
    version = await add_fact(cluster, env, TemporalFact(subject, "hasTemporaryAccess", "lounge"))
    wait_for(
        lambda: answers(fleet, ids) == dict.fromkeys(ids, (True, version)),
        timeout=SIDECAR_RESYNC + 5,
        what="every sidecar to answer with the fact by its resync alone",
    )
    seconds = time.monotonic() - started
    report(
        f"no level, no message: {DEVICES}/{DEVICES} sidecars answer with the fact by resync "
        f"(interval {SIDECAR_RESYNC}s)",
        seconds,
    )
    assert seconds <= SIDECAR_RESYNC + 5


async def test_an_expired_fact_stops_matching_without_any_signal(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    facts_fleet: Callable[..., LevelFleet],
) -> None:
    env = "staging"
    fleet, ids, subject = start(cluster, namespace, start_operator, facts_fleet, env)
    valid_to = datetime.now(UTC) + timedelta(seconds=6)
    version = await add_fact(
        cluster, env, TemporalFact(subject, "hasTemporaryAccess", "lounge", valid_to=valid_to)
    )
    wait_for(
        lambda: answers(fleet, ids) == dict.fromkeys(ids, (True, version)),
        timeout=SIDECAR_RESYNC + 5,
        what="every sidecar to answer with the fact while it is valid",
    )
    # From here on, nothing is sent: listen to the channel to prove it.
    redis = aioredis.from_url(cluster.redis_url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("pkg_updates")
    try:
        seen: list[Any] = []
        while datetime.now(UTC) < valid_to:
            message = await pubsub.get_message(timeout=0.2)
            if message is not None:
                seen.append(message["data"])
        expired_at = time.monotonic()
        # Other tests' environments may publish; none of it concerns this environment's facts.
        ours = [m for m in seen if f"pkg:facts:{env}".encode() in m]
        assert ours == [], ours
        after = answers(fleet, ids)
        stopped = time.monotonic() - expired_at
        report(f"fact expired: {DEVICES}/{DEVICES} sidecars stopped matching", stopped)
        assert after == dict.fromkeys(ids, (False, version)), after
        assert await pg_version(cluster, env) == version
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_the_facts_level_is_rebuilt_after_flushall(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    facts_fleet: Callable[..., LevelFleet],
) -> None:
    env = "prod"
    # The sidecars resync every 30 s: what reaches them in time is the operator's message.
    fleet, ids, subject = start(cluster, namespace, start_operator, facts_fleet, env, resync=30)
    client = aioredis.from_url(cluster.redis_url)
    try:
        await client.flushall()
        started = time.monotonic()
        raw = None
        while time.monotonic() - started < LEVEL_RESYNC + 3 and raw is None:
            raw = await client.get(f"pkg:facts:{env}")
            if raw is None:
                await asyncio.sleep(0.05)
        report("FLUSHALL: the facts level rewritten", time.monotonic() - started)
        assert raw is not None, "the operator did not rewrite the flushed facts level"
        assert json.loads(raw)["version"] == await pg_version(cluster, env)
        audits = await fetch_audits(cluster, f"pkg:facts:{env}")
        assert audits, "the repair of the facts level left no audit row"
        # A fact right after: its level's epoch must beat the rewritten one, and it reaches
        # the fleet by the message alone.
        started = time.monotonic()
        version = await add_fact(
            cluster, env, TemporalFact(subject, "hasTemporaryAccess", "lounge")
        )
        wait_for(
            lambda: answers(fleet, ids) == dict.fromkeys(ids, (True, version)),
            timeout=LEVEL_RESYNC + 5,
            what="every sidecar to answer with the fact added after FLUSHALL",
        )
        report(
            f"after FLUSHALL, a fact: {DEVICES}/{DEVICES} sidecars answer with it",
            time.monotonic() - started,
        )
    finally:
        await client.aclose()


async def fetch_audits(cluster: Cluster, key: str) -> list[Any]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT details FROM pkg_audit_log WHERE action = 'facts.repaired' "
                "AND entity_id = $1",
                key,
            )
        )
    finally:
        await conn.close()
