"""End-to-end fixtures, shared by tests/e2e and tests/chaos: the operator as a real process.

One session-wide stack (PostgreSQL, Redis, etcd + kube-apiserver) with the CRDs
applied and the peering object created; each test gets its own namespace, and
the operator process(es) it needs. Loaded as a plugin by the tests' root conftest;
the fixtures cost nothing until a test asks for them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pkg_testbed.cluster import Cluster
from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.product import ROOT, OperatorProcess, wait_established
from pkg_testbed.redis import RedisServer

__all__ = ["cluster", "namespace", "start_operator"]

_names = itertools.count(1)


@pytest.fixture(scope="session")
def cluster(
    kube: KubeControlPlane,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    testbed_dir: Path,
) -> Cluster:
    database_url = postgres_server.create_database("e2e")
    # Its own Redis database: keys left by the integration tests (db 0) never leak in.
    result = Cluster(kube, database_url, redis_server.url(1), testbed_dir / "e2e")
    result.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "crds.yaml"))
    wait_established(
        kube.kubectl_bin,
        kube.kubeconfig,
        [
            "policysnapshots.pkg.seedcore.io",
            "policydeployments.pkg.seedcore.io",
            "clusterkopfpeerings.kopf.dev",
        ],
    )
    result.kubectl(
        "apply",
        "-f",
        "-",
        stdin=(
            "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {name: pkg-operator}\n"
        ),
    )
    return result


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    name = f"e2e-{next(_names)}-{os.getpid()}"
    cluster.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def start_operator(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start ``pkg-operator`` processes; all are stopped (and their logs shown on failure)."""
    started: list[OperatorProcess] = []

    def start(name: str = "operator", **env: str) -> OperatorProcess:
        proc = OperatorProcess(
            cluster.workdir / request.node.name, cluster.operator_env(**env), name=name
        )
        proc.start()
        started.append(proc)
        return proc

    yield start
    failed = getattr(request.node, "rep_call", None)
    for proc in started:
        if failed is not None and failed.failed:
            print(f"\n===== {proc.proc.name} log =====\n{proc.log()}")
        proc.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
