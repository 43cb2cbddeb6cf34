"""The test bed gives real servers: each smoke test talks to the real thing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tarfile
from pathlib import Path

import asyncpg
import kubernetes
import pytest
import redis.asyncio as aioredis
import wasmtime

from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "tests" / "data" / "smoke"
CHART = ROOT / "helm" / "pkg-operator"
WIDGET = (
    "apiVersion: smoke.testbed.io/v1\nkind: Widget\n"
    "metadata: {{name: {name}, namespace: default}}\nspec: {{size: {size}}}\n"
)

pytestmark = pytest.mark.integration


async def test_asyncpg_runs_a_query_on_a_real_postgresql(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
        assert version >= 140000
        assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
    finally:
        await conn.close()


async def test_a_redis_subscriber_receives_what_is_published(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url())
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("smoke")
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        assert await client.publish("smoke", "hello") == 1
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        assert message is not None
        assert message["data"] == b"hello"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_redis_comes_back_on_the_same_port_after_a_restart(redis_server: RedisServer) -> None:
    redis_server.stop()
    redis_server.start()
    client = aioredis.from_url(redis_server.url())
    try:
        assert await asyncio.wait_for(client.ping(), 5)
    finally:
        await client.aclose()


def _kubectl(kube: KubeControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(kube.kubectl_bin), "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def _apply_smoke_crd(kube: KubeControlPlane) -> None:
    _kubectl(kube, "apply", "-f", str(SMOKE / "widget-crd.yaml"))
    _kubectl(
        kube, "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.smoke.testbed.io"
    )


def test_kubectl_applies_a_crd_and_a_custom_object_and_reads_them_back(
    kube: KubeControlPlane,
) -> None:
    _apply_smoke_crd(kube)
    _kubectl(
        kube,
        "apply",
        "-f",
        "-",
        stdin=WIDGET.format(name="by-kubectl", size=3),
    )
    widget = json.loads(_kubectl(kube, "get", "widget", "by-kubectl", "-o", "json"))
    assert widget["spec"] == {"size": 3}
    # The real API server validates against the schema: size must be >= 1.
    bad = subprocess.run(
        [str(kube.kubectl_bin), "--kubeconfig", str(kube.kubeconfig), "apply", "-f", "-"],
        input=WIDGET.format(name="bad", size=0),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr


def test_the_python_kubernetes_client_creates_and_reads_a_custom_object(
    kube: KubeControlPlane,
) -> None:
    _apply_smoke_crd(kube)
    api_client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))
    try:
        api = kubernetes.client.CustomObjectsApi(api_client)
        body = {
            "apiVersion": "smoke.testbed.io/v1",
            "kind": "Widget",
            "metadata": {"name": "by-python"},
            "spec": {"size": 7},
        }
        api.create_namespaced_custom_object("smoke.testbed.io", "v1", "default", "widgets", body)
        got = api.get_namespaced_custom_object(
            "smoke.testbed.io", "v1", "default", "widgets", "by-python"
        )
        assert got["spec"]["size"] == 7
        assert got["metadata"]["uid"]
        version = kubernetes.client.VersionApi(api_client).get_code()
        assert version.git_version.startswith("v1.")
    finally:
        api_client.close()


def test_opa_compiles_rego_to_wasm_and_the_module_instantiates_under_wasmtime(
    opa_bin: Path,
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle.tar.gz"
    subprocess.run(
        [
            str(opa_bin),
            "build",
            "-t",
            "wasm",
            "-e",
            "smoke/allow",
            "-o",
            str(bundle),
            str(SMOKE / "smoke.rego"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        wasm_bytes = member.read()
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wasm_bytes)
    exports = {export.name for export in module.exports}
    assert {"opa_eval", "opa_wasm_abi_version", "entrypoints"} <= exports
    store = wasmtime.Store(engine)
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(2, None)))
    linker = wasmtime.Linker(engine)
    linker.define(store, "env", "memory", memory)
    for name in ("opa_abort", "opa_println"):
        linker.define_func(
            "env", name, wasmtime.FuncType([wasmtime.ValType.i32()], []), lambda _addr: None
        )
    for arity in range(5):
        params = [wasmtime.ValType.i32()] * (arity + 2)
        linker.define_func(
            "env",
            f"opa_builtin{arity}",
            wasmtime.FuncType(params, [wasmtime.ValType.i32()]),
            lambda *_args: 0,
        )
    instance = linker.instantiate(store, module)
    abi_version = instance.exports(store)["opa_wasm_abi_version"]
    assert isinstance(abi_version, wasmtime.Global)
    assert abi_version.value(store) == 1


def test_helm_lints_the_chart(helm_bin: Path) -> None:
    result = subprocess.run(
        [str(helm_bin), "lint", str(CHART)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
