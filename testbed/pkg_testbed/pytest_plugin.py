"""pytest fixtures (session scope) for the test bed's real servers.

Each server starts the first time a test asks for it and stops when the session
ends. A server that cannot start fails the tests that need it, loudly, with its
log; nothing is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkg_testbed.binaries import ensure
from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

__all__ = ["helm_bin", "kube", "opa_bin", "postgres_server", "redis_server", "testbed_dir"]


@pytest.fixture(scope="session")
def testbed_dir() -> Iterator[Path]:
    """A folder for the servers' data and logs, kept when PKG_TESTBED_KEEP=1 for debugging."""
    path = Path(tempfile.mkdtemp(prefix="pkg-testbed-"))
    # Servers may run as an unprivileged user (PostgreSQL refuses root): let it in.
    path.chmod(0o755)
    yield path
    if os.environ.get("PKG_TESTBED_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(testbed_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(testbed_dir / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(testbed_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(testbed_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kube(testbed_dir: Path) -> Iterator[KubeControlPlane]:
    """etcd + kube-apiserver; ``kube.kubeconfig`` for clients, ``kube.kubectl_bin`` for kubectl."""
    plane = KubeControlPlane(testbed_dir / "kube")
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def opa_bin() -> Path:
    return ensure("opa")


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return ensure("helm")


@pytest.fixture(scope="session")
def promtool_bin() -> Path:
    return ensure("promtool")
