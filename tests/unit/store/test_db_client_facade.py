"""PKGClient offers its DAOs' methods under their names (pure: the pool is never opened)."""

from __future__ import annotations

import inspect

import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.forwarding import Forward, Part

# Every method called on a PKGClient somewhere in the repository (operator, testbed,
# benchmarks, tests, evaluator_sidecar): none may disappear from the facade.
USED_ON_THE_CLIENT = {
    "append_audit",
    "archive_snapshot",
    "check_integrity",
    "create_promotion",
    "create_temporal_fact",
    "create_validation_run",
    "delete_temporal_fact",
    "environment_facts",
    "expire_temporal_fact",
    "facts_version",
    "facts_versions",
    "finish_validation_run",
    "get_active_artifact",
    "get_active_snapshot",
    "get_audit_log",
    "get_deployment_coverage",
    "get_deployments",
    "get_device_versions",
    "get_promotions",
    "get_snapshot_by_id",
    "get_snapshot_by_version",
    "get_snapshot_info",
    "get_temporal_facts",
    "get_validation_fixtures",
    "get_validation_runs",
    "list_snapshots",
    "newer_snapshot_promoted",
    "promote_snapshot",
    "restore_snapshot",
    "rollback_snapshot",
    "snapshot_resource",
    "store_snapshot",
    "store_snapshot_spec",
    "update_device_heartbeat",
    "update_device_heartbeats",
    "upsert_deployment",
    "validate_snapshot",
    "verify_audit_chain",
    "was_ever_active",
}


@pytest.fixture
def client() -> PKGClient:
    # Database creates its pool on first use: nothing here connects.
    return PKGClient("postgresql://pkg@127.0.0.1:1/pkg")


def _forwarders() -> dict[str, Forward[..., object]]:
    return {name: value for name, value in vars(PKGClient).items() if isinstance(value, Forward)}


def test_every_method_the_repository_uses_is_on_the_client(client: PKGClient) -> None:
    missing = {name for name in USED_ON_THE_CLIENT if not callable(getattr(client, name, None))}
    assert not missing


@pytest.mark.parametrize("name", sorted(_forwarders()))
def test_a_forwarder_is_the_bound_method_of_its_dao(client: PKGClient, name: str) -> None:
    forward = _forwarders()[name]
    dao = getattr(client, forward.part.name)
    assert isinstance(dao, forward.part.kind)
    assert getattr(client, name) == getattr(dao, name)
    # Same parameters and docstring as the DAO's method, hence as before on the client.
    assert inspect.signature(getattr(client, name)) == inspect.signature(getattr(dao, name))
    assert forward.__doc__ == getattr(type(dao), name).__doc__


def test_a_method_replaced_on_a_dao_instance_is_the_one_called(client: PKGClient) -> None:
    async def fake(env: str | None = None) -> None:
        return None

    client.snapshots.get_active_snapshot = fake  # type: ignore[method-assign]
    assert client.get_active_snapshot is fake


def test_a_forwarder_keeps_the_name_of_the_method_it_forwards() -> None:
    class Dao:
        async def ping(self) -> int:
            return 1

    # Python 3.11 wraps an error of __set_name__ in a RuntimeError; 3.12 raises it as is.
    with pytest.raises((TypeError, RuntimeError)) as raised:

        class Facade:
            dao = Part(Dao)
            pong = dao.forward(Dao.ping)

    error = raised.value if isinstance(raised.value, TypeError) else raised.value.__cause__
    assert isinstance(error, TypeError)
    assert "Facade.pong forwards" in str(error)
    assert "name it ping" in str(error)


def test_a_part_read_before_it_is_set_says_so() -> None:
    class Dao:
        pass

    class Facade:
        dao = Part(Dao)

    with pytest.raises(AttributeError, match=r"Facade\.dao \(Dao\) is not set yet"):
        _ = Facade().dao
