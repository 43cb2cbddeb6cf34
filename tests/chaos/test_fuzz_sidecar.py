"""Property-based fuzz of what a sidecar accepts: ``POST /v1/evaluate`` and its Redis messages.

Four targets share ``PKG_FUZZ_CASES`` (default 2,000 for the quick subset; ``make chaos``
sets 100,000):

- ``/v1/evaluate`` in process (55 %): the sidecar's own request handler
  (``SidecarAPI``) over a ``PKGManager`` with a real snapshot loaded, native and WASM,
  called directly with each body: the volume, without the loopback's cost;
- ``/v1/evaluate`` over HTTP (10 %): a real ``pkg-sidecar`` process (standalone, on a
  PolicySnapshot file) on a loopback port, through its HTTP parser, keep-alive and body
  limit;
- Redis messages decoded in process (25 %): ``decode_message`` and the level readers
  (``DesiredState.from_json``, ``FactsLevel.from_json``) on garbage: each answers a
  message or raises ``MessageError``, nothing else;
- Redis messages to a real sidecar (10 %): a ``pkg-sidecar`` process in full mode
  (PostgreSQL + a Redis of its own) gets every garbage message on ``pkg_updates`` and
  garbage in its level keys (``pkg:desired:...``, ``pkg:facts:...``); it must keep
  running its snapshot and giving the same answers.

Bodies: arbitrary JSON values, task facts with wrong types, huge and deeply nested
values, invalid UTF-8. Zero 5xx, zero crashes, bounded latency (p99 recorded).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator_sidecar.policy.resource import snapshot_from_resource
from evaluator_sidecar.sidecar.http import SidecarAPI
from evaluator_sidecar.sidecar.http.protocol import Request
from evaluator_sidecar.sidecar.manager import PKGManager
from evaluator_sidecar.signals import (
    CHANNEL,
    DesiredMessage,
    DesiredState,
    FactsLevel,
    FactsMessage,
    MessageError,
    SnapshotRef,
    decode_message,
    env_key,
    facts_key,
    rollout_key,
)
from pkg_testbed.chaos.corpus_base import base_native
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, condition, wait_for
from pkg_testbed.product import ROOT, OperatorProcess, SidecarProcess
from pkg_testbed.redis import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_quick]

CASES = int(os.environ.get("PKG_FUZZ_CASES", "2000"))
SHARES = {"http-inprocess": 0.55, "http-process": 0.10, "redis-decode": 0.25, "redis-process": 0.10}
#: The sidecar's default body limit: bodies over it never reach the handler over HTTP.
BODY_LIMIT = 65536
#: Bounds on one answer: p99 and the slowest, in process and over loopback.
P99_BOUND_S = {"inprocess": 0.05, "process": 0.25}
#: The slowest single answer: a hang, not an outlier (a GC pause on a loaded machine took
#: one decode 5.7 s once); the p99 bounds above judge latency.
MAX_BOUND_S = 10.0
FACTS = {"tags": ["vip"], "signals": {"score": 0.9}, "context": {"domain": "hotel"}}
SEED_WASM = ROOT / "policies" / "seed" / "policy.wasm"


def cases(target: str) -> int:
    return max(50, int(CASES * SHARES[target]))


#: Cases per hypothesis example: a batch amortises the engine's cost per example, which
#: dominates a run of small cases (measured: ~10 ms per example, ~1.5 ms per extra case).
PER_EXAMPLE = 10


def fuzz_settings(count: int) -> settings:
    return settings(
        max_examples=max(1, -(-count // PER_EXAMPLE)),
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )


# ---- what the fuzz sends ---------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
facts_keys = st.sampled_from(["tags", "signals", "context", "facts", "now", "tag", "env", ""])
task_facts = st.dictionaries(facts_keys, json_values, max_size=5)
typed_facts = st.fixed_dictionaries(
    {},
    optional={
        "tags": st.lists(st.text(max_size=10) | scalars, max_size=5),
        "signals": st.dictionaries(st.text(max_size=10), scalars | json_values, max_size=4),
        "context": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
        "facts": st.lists(
            st.fixed_dictionaries(
                {"subject": scalars, "predicate": scalars},
                optional={"object": json_values, "valid_from": scalars, "valid_to": scalars},
            ),
            max_size=3,
        ),
        "now": scalars,
    },
)


def dumps(value: Any) -> bytes:
    """JSON text of ``value``; Python's encoder, as orjson refuses integers past 64 bits."""
    return json.dumps(value).encode()


def _deep(depth: int, kind: int) -> bytes:
    opener, closer = (b"[", b"]") if kind == 0 else (b'{"a":', b"}")
    return opener * depth + b"1" + closer * depth


json_text = st.one_of(
    json_values.map(dumps),
    task_facts.map(dumps),
    typed_facts.map(dumps),
    st.tuples(st.integers(1, 5000), st.integers(0, 1)).map(lambda t: _deep(*t)),
    st.integers(1, BODY_LIMIT - 32).map(lambda n: b'{"tags": ["' + b"x" * n + b'"]}'),
    st.integers(1, 4000).map(lambda n: b'{"signals": {' + b'"s": 1,' * n + b'"s": 2}}'),
    st.sampled_from([b"1e400", b"NaN", b'{"tags": [1e999]}', b'{"a": 1}{', b"\xef\xbb\xbf{}"]),
)
bodies = json_text | st.binary(max_size=512) | st.text(max_size=200).map(str.encode)
# Mostly none: a query or content type the API refuses is a 4xx before the evaluator runs.
queries = st.one_of(
    st.just(b""),
    st.just(b""),
    st.just(b""),
    st.text(max_size=30).map(lambda t: ("version=" + t).encode("utf-8", "surrogatepass")),
    st.binary(max_size=30),
)
content_types = st.sampled_from(
    [b"application/json"] * 4 + [b"APPLICATION/JSON; charset=utf-8", b"text/plain", b"", None]
)


def batch_of(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """``PER_EXAMPLE`` cases per example, each a dict of the fields' values."""
    return st.lists(st.fixed_dictionaries(fields), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE)


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def fuzz_record(name: str, *, sent: int, failures: list[str], latencies: list[float],
                notes: str, **extra: Any) -> None:  # fmt: skip
    record(
        ScenarioRecord(
            scenario=f"fuzz/{name}",
            group="fuzz",
            faults=sent,
            passes=sent - len(failures),
            failures=failures[:20],
            notes=notes,
            extra={
                "cases": sent,
                "bad_outcomes": len(failures),
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
                "max_ms": round(max(latencies, default=0.0) * 1000, 3),
                **extra,
            },
        )
    )


# ---- /v1/evaluate in process -----------------------------------------------------------


def wasm_doc(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicySnapshot",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "env": "dev",
            "engine": "wasm",
            "wasm": {
                "entrypoint": "pkg/seed/result",
                "inline": base64.b64encode(SEED_WASM.read_bytes()).decode(),
            },
        },
    }


async def loaded_api(document: dict[str, Any]) -> SidecarAPI:
    manager = PKGManager(None, None, env="dev", device_id="fuzz-inprocess")
    await manager.activate_snapshot(snapshot_from_resource(document), source="file")
    return SidecarAPI(manager)


def test_evaluate_in_process_answers_every_body_without_a_5xx() -> None:
    apis = {
        "native": asyncio.run(loaded_api(base_native("fuzz", "fuzz@1.0.0"))),
        "wasm": asyncio.run(loaded_api(wasm_doc("fuzz-wasm", "fuzz-wasm@1.0.0"))),
    }
    statuses: dict[int, int] = {}
    failures: list[str] = []
    latencies: list[float] = []
    count = cases("http-inprocess")

    def send(body: bytes, query: bytes, content_type: bytes | None, engine: bool) -> None:
        headers = {} if content_type is None else {b"content-type": content_type}
        request = Request("POST", "/v1/evaluate", query, headers, body)
        api = apis["wasm" if engine else "native"]
        started = time.perf_counter()
        try:
            response = api(request)
        except Exception as exc:  # noqa: BLE001 - a crash of the handler: counted, run goes on
            failures.append(f"{type(exc).__name__}: {exc} on body {body[:120]!r}")
            return
        latencies.append(time.perf_counter() - started)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status >= 500:
            failures.append(f"{response.status} on body {body[:120]!r}: {response.body[:200]!r}")
        elif response.status != 200:
            orjson.loads(response.body)  # an error body is JSON too

    @fuzz_settings(count)
    @given(batch=batch_of(body=bodies, query=queries, content_type=content_types,
                          engine=st.booleans()))  # fmt: skip
    def one(batch: list[dict[str, Any]]) -> None:
        for case in batch:
            send(**case)

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    sent = len(latencies) + len(failures)
    p99 = percentile(latencies, 0.99)
    fuzz_record(
        "evaluate-in-process",
        sent=sent,
        failures=failures,
        latencies=latencies,
        notes="SidecarAPI called directly (native and WASM snapshots loaded), hypothesis bodies",
        statuses={str(k): v for k, v in sorted(statuses.items())},
        seconds=round(elapsed, 1),
    )
    print(f"\nevaluate in process: {sent} cases in {elapsed:.1f} s, statuses {statuses}, "
          f"p99 {p99 * 1000:.2f} ms")  # fmt: skip
    assert failures == []
    assert p99 < P99_BOUND_S["inprocess"]
    assert max(latencies) < MAX_BOUND_S
    assert statuses.get(200, 0) > 0
    assert statuses.get(400, 0) > 0


# ---- /v1/evaluate over HTTP, a real process --------------------------------------------


class Connection:
    """One keep-alive connection to the sidecar, opened again when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str, body: bytes, content_type: bytes | None) -> tuple[int, bytes]:
        headers = {} if content_type is None else {"Content-Type": content_type.decode()}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status, payload
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def test_evaluate_over_http_on_a_real_sidecar_process_answers_every_body(tmp_path: Path) -> None:
    snapshot_file = tmp_path / "snapshot.json"
    snapshot_file.write_text(json.dumps(base_native("fuzz-http", "fuzz-http@1.0.0")))
    sidecar = SidecarProcess(
        tmp_path, {"PKG_SNAPSHOT_FILE": str(snapshot_file), "PKG_LOG_LEVEL": "WARNING"},
        device_id="fuzz-http",
    )  # fmt: skip
    sidecar.start()
    expected = sidecar.evaluate(FACTS)
    conn = Connection(sidecar.port)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    latencies: list[float] = []
    count = cases("http-process")
    try:

        def send(body: bytes, query: str, content_type: bytes | None) -> None:
            path = "/v1/evaluate" + (f"?{query}" if query else "")
            path = "".join(c if 32 < ord(c) < 127 else f"%{ord(c) % 256:02X}" for c in path)
            started = time.perf_counter()
            try:
                status, payload = conn.post(path, body, content_type)
            except (http.client.HTTPException, OSError) as exc:
                failures.append(f"no answer ({exc!r}) to body {body[:120]!r}")
                return
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                failures.append(f"{status} on body {body[:120]!r}: {payload[:200]!r}")

        @fuzz_settings(count)
        @given(batch=batch_of(body=bodies, query=st.text(max_size=20), content_type=content_types))
        def one(batch: list[dict[str, Any]]) -> None:
            for case in batch:
                send(**case)

        started = time.monotonic()
        one()
        elapsed = time.monotonic() - started
        alive = sidecar.proc.running
        after = sidecar.evaluate(FACTS) if alive else None
    finally:
        sidecar.stop()
    sent = len(latencies) + len(failures)
    p99 = percentile(latencies, 0.99)
    if not alive:
        failures.append("the sidecar process exited")
    elif after != expected:
        failures.append(f"answers changed: {expected} -> {after}")
    fuzz_record(
        "evaluate-http-process",
        sent=sent,
        failures=failures,
        latencies=latencies,
        notes="a real pkg-sidecar process (standalone, on a snapshot file) over loopback HTTP",
        statuses={str(k): v for k, v in sorted(statuses.items())},
        seconds=round(elapsed, 1),
    )
    print(f"\nevaluate over HTTP: {sent} cases in {elapsed:.1f} s, statuses {statuses}, "
          f"p99 {p99 * 1000:.2f} ms")  # fmt: skip
    assert failures == []
    assert p99 < P99_BOUND_S["process"]
    assert max(latencies) < MAX_BOUND_S


# ---- Redis messages --------------------------------------------------------------------

ENV = "dev"
REGION = "chaos"
refs = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"version": scalars}, optional={"snapshot_id": scalars, "checksum": scalars}
    ),
)
states = st.fixed_dictionaries(
    {},
    optional={
        "epoch": scalars,
        "env": st.sampled_from([ENV, "prod", ""]) | scalars,
        "stable": refs,
        "updated_at": scalars,
        "reason": scalars,
        "target": scalars,
        "region": scalars,
        "deployment": scalars,
        "canary": refs,
        "canary_percent": scalars,
        "shadow": json_values,
        "prepare": json_values,
    },
)
structured = st.fixed_dictionaries(
    {"kind": st.sampled_from(["desired", "facts", "other"]) | scalars},
    optional={"key": scalars, "state": states | json_values, "level": states | json_values},
)
messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    st.text(max_size=60).map(lambda t: f"activate:{t}".encode("utf-8", "surrogatepass")),
    structured.map(dumps),
    st.tuples(st.integers(1, 3000), st.integers(0, 1)).map(lambda t: _deep(*t)),
)


def test_redis_messages_and_levels_decode_or_are_refused_with_a_message_error() -> None:
    failures: list[str] = []
    outcomes = {"decoded": 0, "refused": 0}
    latencies: list[float] = []
    slowest = (0.0, b"")

    def decode_all(raw: bytes) -> None:
        for decode in (decode_message, DesiredState.from_json, FactsLevel.from_json):
            try:
                decode(raw)
                outcomes["decoded"] += 1
            except MessageError:
                outcomes["refused"] += 1
            except Exception as exc:  # noqa: BLE001 - anything else ends a listener's read
                failures.append(
                    f"{decode.__qualname__}: {type(exc).__name__}: {exc} on {raw[:120]!r}"
                )

    def send(raw: bytes) -> None:
        nonlocal slowest
        started = time.perf_counter()
        decode_all(raw)
        took = time.perf_counter() - started
        latencies.append(took)
        slowest = max(slowest, (took, raw))

    @fuzz_settings(cases("redis-decode"))
    @given(batch=batch_of(raw=messages))
    def one(batch: list[dict[str, Any]]) -> None:
        for case in batch:
            send(**case)

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    # The slowest case once more, alone: slow again is the decoder's doing, fast is the
    # machine's (a pause of the process under load, a garbage collection).
    again = time.perf_counter()
    decode_all(slowest[1])
    slowest_again_ms = round((time.perf_counter() - again) * 1000, 3)
    fuzz_record(
        "redis-decode",
        sent=len(latencies),
        failures=failures,
        latencies=latencies,
        notes="decode_message, DesiredState.from_json and FactsLevel.from_json on each message",
        seconds=round(elapsed, 1),
        slowest_again_ms=slowest_again_ms,
        **outcomes,
    )
    print(
        f"\nredis decode: {len(latencies)} cases in {elapsed:.1f} s, {outcomes}; slowest "
        f"{slowest[0] * 1000:.1f} ms, {slowest_again_ms} ms again alone ({slowest[1][:60]!r})"
    )
    assert failures == []
    assert slowest_again_ms < 100


def meant_for_the_sidecar(raw: bytes) -> bool:
    """True for a well-formed level or message of the sidecar's environment: not garbage,
    it may rightly change what the sidecar runs (a newer level without a snapshot sends it
    to PostgreSQL's active one; a facts level changes ``facts_version``)."""
    try:
        message = decode_message(raw)
    except MessageError:
        message = None
    if isinstance(message, DesiredMessage) and message.state.env == ENV:
        return True
    if isinstance(message, FactsMessage) and message.level.env == ENV:
        return True
    for level in (DesiredState.from_json, FactsLevel.from_json):
        try:
            if level(raw).env == ENV:
                return True
        except MessageError:
            continue
    return False


def stored_snapshot(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> SnapshotRef:
    """A snapshot stored and validated in PostgreSQL by a real operator (not promoted)."""
    version = f"fuzz-redis@1.0.0-{namespace}"
    operator = start_operator()
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=json.dumps(base_native("fuzz-redis", version)),
    )  # fmt: skip
    obj = wait_for(
        lambda: (
            (o := cluster.get("psnap", "fuzz-redis", namespace))
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
        what="the fuzz snapshot Ready",
    )
    operator.stop()
    status = obj["status"]
    return SnapshotRef(version, int(status["snapshotId"]), str(status["checksum"]))


def state_problem(sidecar: SidecarProcess, version: str, expected: Any) -> str | None:
    """What changed in the sidecar (exited, another version, other answers), or None."""
    if not sidecar.proc.running:
        return "the sidecar exited"
    running = sidecar.metadata().get("version")
    answer = sidecar.evaluate(FACTS)
    if running != version or answer != expected:
        return f"state changed: {running}, {answer}"
    return None


def full_sidecar(cluster: Cluster, workdir: Path, *, redis_url: str, target: str) -> SidecarProcess:
    """A sidecar in full mode: snapshots from PostgreSQL, levels and messages from Redis."""
    return SidecarProcess(
        workdir,
        {
            "PKG_DATABASE_URL": cluster.database_url,
            "PKG_REDIS_URL": redis_url,
            "PKG_ENV": ENV,
            "PKG_TARGET": target,
            "PKG_REGION": REGION,
            # Garbage written into a level key is read within half a second.
            "PKG_RESYNC_INTERVAL_SECONDS": "0.5",
            "PKG_LOG_LEVEL": "ERROR",
        },
        device_id=f"{target}:0",
    )


def test_garbage_on_a_sidecars_redis_changes_neither_its_snapshot_nor_its_answers(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    ref = stored_snapshot(cluster, namespace, start_operator)
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url())
    target = f"fuzz-{namespace}"
    keys = [env_key(ENV), rollout_key(ENV, target, REGION), facts_key(ENV)]
    client.set(keys[0], DesiredState(epoch=1, env=ENV, stable=ref, reason="baseline").to_json())
    sidecar = full_sidecar(cluster, tmp_path, redis_url=server.url(), target=target)
    failures: list[str] = []
    latencies: list[float] = []
    sent = skipped = 0
    rng = random.Random(19)
    try:
        sidecar.start()
        wait_for(lambda: sidecar.metadata().get("version") == ref.version, what="the baseline")
        expected = sidecar.evaluate(FACTS)

        def unchanged(where: str) -> None:
            problem = state_problem(sidecar, ref.version, expected)
            if problem:
                failures.append(f"{problem} ({where})")

        def send(raw: bytes) -> None:
            nonlocal sent, skipped
            if meant_for_the_sidecar(raw):
                skipped += 1
                return
            started = time.perf_counter()
            if rng.random() < 0.2:
                client.set(rng.choice(keys), raw)  # garbage in a level key
            client.publish(CHANNEL, raw)
            latencies.append(time.perf_counter() - started)
            sent += 1
            if sent % 250 == 0:
                unchanged(f"after {sent} messages")

        @fuzz_settings(cases("redis-process"))
        @given(batch=batch_of(raw=messages))
        def one(batch: list[dict[str, Any]]) -> None:
            for case in batch:
                send(**case)

        started = time.monotonic()
        one()
        elapsed = time.monotonic() - started
        time.sleep(1.5)  # the last messages handled, and a resync read the last garbage keys
        unchanged("at the end")
    finally:
        sidecar.stop()
        client.close()
        server.stop()
    fuzz_record(
        "redis-process",
        sent=sent,
        failures=failures,
        latencies=latencies,
        notes=(
            "garbage published on pkg_updates to a real sidecar (full mode, a Redis of its "
            "own), one in five also written into a level key; version and answers checked "
            "every 250 messages"
        ),
        seconds=round(elapsed, 1),
        skipped_well_formed=skipped,
    )
    print(f"\nredis to a real sidecar: {sent} messages in {elapsed:.1f} s ({skipped} skipped)")
    assert failures == []
    assert sent >= cases("redis-process") // 2
