"""The fleet benchmarks' test bed: a stack, the operator, N sidecar processes and their logs.

:class:`Bed` starts PostgreSQL, Redis and (optionally) a kube-apiserver with the
CRDs, migrates the database, and starts ``pkg-operator`` when asked.
:class:`Fleet` starts ``pkg-sidecar`` processes in batches and reads the
activation events they log as JSON (``snapshot_activated`` with the sidecar's own
``timestamp``): propagation times come from those, never from polling a sidecar.
Everything started is stopped by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "testbed") not in sys.path:
    sys.path.insert(0, str(ROOT / "testbed"))

from pkg_testbed.product import (  # noqa: E402 - the test bed is not an installed package
    OperatorProcess,
    SidecarProcess,
    kubectl,
    venv_command,
    wait_established,
)
from pkg_testbed.stack import Stack  # noqa: E402

__all__ = ["ROOT", "Bed", "Fleet", "cpu_seconds", "native_spec", "rss_mib", "snapshot_yaml"]

PEERING = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {name: pkg-operator}\n"


def native_spec(version: str, *, env: str = "prod", rules: int = 13) -> dict[str, Any]:
    """A native snapshot spec with ``rules`` rules whose params name ``version``."""
    rule_list = [
        {
            "rule_id": f"rule-{i:03d}",
            "rule_name": f"rule_{i}",
            "priority": 100 - i,
            "conditions": [
                {
                    "condition_type": "TAG",
                    "condition_key": "vip" if i == 0 else f"t{i}",
                    "operator": "EXISTS",
                }
            ],
            "emissions": [
                {
                    "subtask_type": "escalate",
                    "subtask_name": "escalate_vip" if i == 0 else f"task_{i}",
                    "params": {"version": version},
                }
            ],
        }
        for i in range(rules)
    ]
    return {
        "version": version,
        "env": env,
        "engine": "native",
        "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low"}}],
        "rules": rule_list,
        "fixtures": [
            {"name": "vip", "input": {"tags": ["vip"]}, "expect": {"subtasks": ["escalate_vip"]}}
        ],
    }


def snapshot_yaml(name: str, spec: Mapping[str, Any], *, auto: bool = False) -> str:
    body = {**spec, **({"autoPromote": True} if auto else {})}
    return json.dumps(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def rss_mib(pids: Iterable[int | None]) -> float:
    """The summed resident memory of ``pids`` in MiB (processes gone count as 0)."""
    total_kib = 0
    for pid in pids:
        if pid is None:
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
                    break
        except OSError:
            continue
    return round(total_kib / 1024, 1)


def cpu_seconds(pids: Iterable[int | None]) -> float:
    """The summed user + system CPU time of ``pids`` (their threads included), in seconds."""
    ticks = 0
    for pid in pids:
        if pid is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Bed:
    """The stack (and operator) one benchmark runs on; ``close()`` stops all of it."""

    kube: bool = True
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pkg-bench-fleet-")))
    stack: Stack | None = None
    operator: OperatorProcess | None = None
    namespace: str = "bench"

    def start(self) -> Bed:
        self.workdir.chmod(0o755)  # mkdtemp's 0700 would lock out the postgres user
        self.stack = Stack(self.workdir / "stack")
        self.stack.start(kube=self.kube)
        result = subprocess.run(
            [venv_command("pkg-migrate")],
            env={**os.environ, "PKG_DATABASE_URL": self.database_url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pkg-migrate failed: {result.stdout}{result.stderr}")
        if self.kube:
            self.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "crds.yaml"))
            assert self.stack.kube is not None
            wait_established(
                self.stack.kube.kubectl_bin,
                self.stack.kube.kubeconfig,
                [
                    "policysnapshots.pkg.seedcore.io",
                    "policydeployments.pkg.seedcore.io",
                    "clusterkopfpeerings.kopf.dev",
                ],
            )
            self.kubectl("apply", "-f", "-", stdin=PEERING)
            self.kubectl("create", "namespace", self.namespace)
        return self

    @property
    def database_url(self) -> str:
        assert self.stack is not None
        assert self.stack.postgres is not None
        return self.stack.postgres.dsn(self.stack.database)

    @property
    def redis_url(self) -> str:
        assert self.stack is not None
        assert self.stack.redis is not None
        return self.stack.redis.url()

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        assert self.stack is not None
        assert self.stack.kube is not None
        kube = self.stack.kube
        return kubectl(kube.kubectl_bin, kube.kubeconfig, *args, stdin=stdin).stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.kubectl("get", kind, name, "-n", self.namespace, "-o", "json")
        )
        return data

    def start_operator(self, **env: str) -> OperatorProcess:
        assert self.stack is not None
        assert self.stack.kube is not None
        full = {
            "KUBECONFIG": str(self.stack.kube.kubeconfig),
            "PKG_DATABASE_URL": self.database_url,
            "PKG_REDIS_URL": self.redis_url,
            "PKG_LOG_LEVEL": "INFO",
            **env,
        }
        self.operator = OperatorProcess(self.workdir / "operator", full)
        self.operator.start()
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def close(self) -> None:
        self.stop_operator()
        if self.stack is not None:
            self.stack.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- PostgreSQL, for the benchmarks that need no operator

    def store_snapshots(
        self, specs: list[dict[str, Any]], *, promote: str | None = None
    ) -> dict[str, int]:
        """Store (and validate) each spec with the client's write path; promote one; ids."""
        from evaluator_sidecar.store.client import PKGClient  # noqa: PLC0415 - heavy import

        async def go() -> dict[str, int]:
            async with PKGClient(self.database_url, env="prod", max_size=2) as client:
                ids: dict[str, int] = {}
                for spec in specs:
                    stored: Any = await client.store_snapshot_spec(spec)
                    ids[spec["version"]] = stored if isinstance(stored, int) else stored.id
                    outcome = await client.validate_snapshot(ids[spec["version"]])
                    if not outcome.success:
                        raise RuntimeError(f"{spec['version']} failed validation: {outcome}")
                if promote is not None:
                    await client.promote_snapshot(ids[promote], reason="benchmark baseline")
                return ids

        return asyncio.run(go())


class _LogReader:
    """Reads one sidecar's JSON log incrementally; keeps its activation events."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        #: (version, timestamp, source, swap ms) of every snapshot_activated, in order.
        self.activations: list[tuple[str, float, str, float]] = []

    def read(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b'"snapshot_activated"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.activations.append(
                (
                    str(event.get("version")),
                    float(event.get("timestamp") or event["ts"]),
                    str(event.get("source")),
                    float(event.get("swap_duration_ms") or 0.0),
                )
            )


class Fleet:
    """``pkg-sidecar`` processes of one environment/target/region, started in batches."""

    def __init__(
        self, bed: Bed, *, env: Mapping[str, str] | None = None, prefix: str = "dev"
    ) -> None:
        self.bed = bed
        self.env = {
            "PKG_DATABASE_URL": bed.database_url,
            "PKG_REDIS_URL": bed.redis_url,
            "PKG_ENV": "prod",
            "PKG_LOG_LEVEL": "INFO",
            "PKG_LOG_FORMAT": "json",
            **(env or {}),
        }
        self.prefix = prefix
        self.sidecars: list[SidecarProcess] = []
        self.readers: list[_LogReader] = []

    def grow(self, count: int, *, batch: int = 10, timeout: float = 120) -> float:
        """Start sidecars until there are ``count``, ``batch`` at a time; seconds it took."""
        started = time.monotonic()
        while len(self.sidecars) < count:
            group = []
            for _ in range(min(batch, count - len(self.sidecars))):
                device = f"{self.prefix}-{len(self.sidecars):03d}-{uuid.uuid4().hex[:4]}"
                sidecar = SidecarProcess(self.bed.workdir / "fleet", self.env, device_id=device)
                sidecar.proc.start()
                self.sidecars.append(sidecar)
                self.readers.append(_LogReader(sidecar.proc.log_path))
                group.append(sidecar)
            for sidecar in group:
                sidecar.start_wait(timeout)
        return time.monotonic() - started

    def rss_mib(self) -> float:
        return rss_mib(s.proc.pid for s in self.sidecars)

    def cpu_seconds(self) -> float:
        return cpu_seconds(s.proc.pid for s in self.sidecars)

    def read(self) -> None:
        for reader in self.readers:
            reader.read()

    def activation_times(self, version: str, since: float) -> list[float | None]:
        """Per sidecar: the first activation of ``version`` logged at or after ``since``."""
        self.read()
        out: list[float | None] = []
        for reader in self.readers:
            found = next(
                (ts for v, ts, _, _ in reader.activations if v == version and ts >= since), None
            )
            out.append(found)
        return out

    def swap_ms(self, version: str, since: float) -> list[float]:
        """The sidecars' own activation times (load, compile, self-test) of ``version``."""
        return [
            next(ms for v, ts, _, ms in reader.activations if v == version and ts >= since)
            for reader in self.readers
            if any(v == version and ts >= since for v, ts, _, _ in reader.activations)
        ]

    def wait_activated(
        self, version: str, since: float, *, timeout: float, every: float = 0.05
    ) -> list[float | None]:
        """Wait until every sidecar logged ``version`` activated after ``since`` (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            times = self.activation_times(version, since)
            if all(t is not None for t in times) or time.monotonic() > deadline:
                return times
            time.sleep(every)

    def close(self) -> None:
        # TERM to all first, then wait for each: a hundred sequential stops take long.
        for sidecar in self.sidecars:
            pid = sidecar.proc.pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
        for sidecar in self.sidecars:
            sidecar.proc.stop(timeout=10)


def run_timed(step: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock time (time.time(), the clock the sidecars log with) before ``step``, its value."""
    at = time.time()
    return at, step()
