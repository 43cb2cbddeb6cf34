"""The whole test bed as one stack: what a person or the demo starts with one command."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

__all__ = ["Stack"]


@dataclass
class Stack:
    """PostgreSQL, Redis and a Kubernetes control plane in ``workdir``."""

    workdir: Path
    postgres: PostgresServer | None = None
    redis: RedisServer | None = None
    kube: KubeControlPlane | None = None
    database: str = "pkg"
    _started: list[object] = field(default_factory=list)

    def start(self, *, kube: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        try:
            self.postgres = PostgresServer(self.workdir / "postgres")
            self.postgres.start()
            self.postgres.create_database(self.database)
            self.redis = RedisServer(self.workdir / "redis")
            self.redis.start()
            if kube:
                self.kube = KubeControlPlane(self.workdir / "kube")
                self.kube.start()
        except BaseException:
            self.stop()
            raise

    def env(self) -> dict[str, str]:
        """The environment variables that point the product and its tools at this stack."""
        env: dict[str, str] = {}
        if self.postgres is not None:
            env["PKG_DATABASE_URL"] = self.postgres.dsn(self.database)
        if self.redis is not None:
            env["PKG_REDIS_URL"] = self.redis.url()
        if self.kube is not None:
            env["KUBECONFIG"] = str(self.kube.kubeconfig)
            env["PATH"] = f"{self.kube.kubectl_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return env

    def stop(self) -> None:
        for server in (self.kube, self.redis, self.postgres):
            if server is not None:
                server.stop()
