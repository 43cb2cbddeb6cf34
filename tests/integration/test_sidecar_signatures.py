"""A pkg-sidecar that requires signatures verifies the one stored in PostgreSQL before
activating: an unsigned row, a signature replayed from another snapshot and a key it
does not trust are refused; a key added to its mounted folder is trusted without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sidecar_fixtures import (
    Sidecar,
    clear_protocol_keys,
    create_database,
    drop_database,
    run,
    spec,
    wait_for,
    with_signals,
)

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.resource import content_checksum
from evaluator_sidecar.signals import DesiredState, RedisSignals, SnapshotRef
from evaluator_sidecar.store.client import PKGClient
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

ENV = "staging"
KEY, ROTATED = signing.generate_private_key(), signing.generate_private_key()


def _signature(key: signing.Ed25519PrivateKey, s: dict[str, Any]) -> dict[str, str]:
    return signing.sign(key, version=s["version"], env=ENV, checksum=content_checksum(s))


def _store(dsn: str) -> dict[str, int]:
    """Rows as something other than the operator might write them (the client directly)."""
    good, unsigned = spec("good@1.0.0", env=ENV), spec("unsigned@1.0.0", env=ENV)
    replayed, rotated = spec("replayed@1.0.0", env=ENV), spec("rotated@1.0.0", env=ENV)
    rows = [
        (good, {"signature": _signature(KEY, good)}),
        (unsigned, None),
        # good@1.0.0's valid signature copied onto another row.
        (replayed, {"signature": _signature(KEY, good)}),
        (rotated, {"signature": _signature(ROTATED, rotated)}),
    ]

    async def go() -> dict[str, int]:
        async with PKGClient(dsn, env=ENV, max_size=2) as client:
            return {
                s["version"]: await client.store_snapshot_spec(s, metadata=metadata)
                for s, metadata in rows
            }

    return run(go())


def _publish(redis: RedisServer, version: str, snapshot_id: int) -> None:
    state = DesiredState(epoch=0, env=ENV, stable=SnapshotRef(version, snapshot_id), reason="test")

    async def go(signals: RedisSignals) -> None:
        await signals.publish_new_desired(state, announce=True)

    run(with_signals(redis.url(), go))


def _write_key(folder: Path, key: signing.Ed25519PrivateKey) -> None:
    name = signing.key_id_of(key.public_key())
    (folder / f"{name}.pub").write_bytes(signing.public_key_pem(key.public_key()))


@pytest.fixture
def setup(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path: Path,
) -> Iterator[tuple[Sidecar, dict[str, int], Path]]:
    dsn = create_database(postgres_server, pkg_template_db)
    ids = _store(dsn)
    clear_protocol_keys(redis_server.url())
    keys = tmp_path / "trusted"
    keys.mkdir()
    _write_key(keys, KEY)
    sidecar = Sidecar(
        tmp_path,
        device_id="signed-1",
        database_url=dsn,
        redis_url=redis_server.url(),
        env=ENV,
        extra={"PKG_REQUIRE_SIGNATURES": "true", "PKG_TRUSTED_KEYS_DIR": str(keys)},
    )
    try:
        yield sidecar.start(), ids, keys
    finally:
        sidecar.stop()
        drop_database(postgres_server, dsn)


def _refused(sidecar: Sidecar, error_type: str) -> bool:
    return error_type in sidecar.log() and sidecar.version() == "good@1.0.0"


def test_a_sidecar_requiring_signatures_activates_only_rows_with_a_valid_stored_signature(
    setup: tuple[Sidecar, dict[str, int], Path], redis_server: RedisServer
) -> None:
    sidecar, ids, keys = setup
    _publish(redis_server, "good@1.0.0", ids["good@1.0.0"])
    wait_for(lambda: sidecar.version() == "good@1.0.0", timeout=10, what="good@1.0.0 active")

    _publish(redis_server, "unsigned@1.0.0", ids["unsigned@1.0.0"])
    wait_for(
        lambda: _refused(sidecar, "signature_required"),
        timeout=10,
        what=f"unsigned@1.0.0 refused:\n{sidecar.log()}",
    )
    assert "pkg sign" in (sidecar.health()["last_error"] or "")

    _publish(redis_server, "replayed@1.0.0", ids["replayed@1.0.0"])
    wait_for(
        lambda: _refused(sidecar, "signature_invalid"),
        timeout=10,
        what=f"replayed@1.0.0 refused:\n{sidecar.log()}",
    )

    _publish(redis_server, "rotated@1.0.0", ids["rotated@1.0.0"])
    wait_for(
        lambda: _refused(sidecar, "unknown_signing_key"),
        timeout=10,
        what=f"rotated@1.0.0 refused for its key:\n{sidecar.log()}",
    )
    pid = sidecar.proc.pid if sidecar.proc else None
    _write_key(keys, ROTATED)  # as the kubelet updates a mounted ConfigMap
    wait_for(
        lambda: sidecar.version() == "rotated@1.0.0",
        timeout=15,
        what=f"rotated@1.0.0 active once its key is trusted:\n{sidecar.log()}",
    )
    assert sidecar.proc is not None
    assert sidecar.proc.pid == pid
