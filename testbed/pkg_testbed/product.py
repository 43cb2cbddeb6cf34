"""The product's own processes on the test bed: the operator and evaluator sidecars.

Each runs as a real process through its console command (``pkg-operator``,
``pkg-sidecar``) from the project's virtualenv, configured only by ``PKG_*``
environment variables, exactly as in a pod; its output goes to a log file that
a failing test prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from pkg_testbed.procs import ServerProcess, TestbedError, free_port, wait_until

__all__ = [
    "ROOT",
    "OperatorProcess",
    "SidecarProcess",
    "kubectl",
    "venv_command",
    "wait_established",
]

ROOT = Path(__file__).resolve().parents[2]


def venv_command(name: str) -> str:
    """A console script of the project: next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise TestbedError(f"{name} is not installed: run `make venv` (pip install -e '.[dev]')")
    return found


def kubectl(
    kubectl_bin: Path,
    kubeconfig: Path,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(kubectl_bin), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise TestbedError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


_ESTABLISHED = '{.status.conditions[?(@.type=="Established")].status}'


def wait_established(
    kubectl_bin: Path, kubeconfig: Path, crds: tuple[str, ...] | list[str], timeout: float = 60
) -> None:
    """Wait until every CRD in ``crds`` is Established.

    Polls instead of ``kubectl wait --for=condition=Established``: on a loaded machine that
    command can read a CRD the API server has stored but not yet given any status, and
    fails at once with ``.status.conditions accessor error`` instead of waiting.
    """
    deadline = time.monotonic() + timeout
    pending = list(crds)
    while pending:
        result = kubectl(
            kubectl_bin,
            kubeconfig,
            "get",
            "crd",
            pending[0],
            "-o",
            f"jsonpath={_ESTABLISHED}",
            check=False,
        )
        if result.returncode == 0 and result.stdout.strip() == "True":
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TestbedError(
                f"CRD {pending[0]} not Established after {timeout:g} s: "
                f"{(result.stderr or result.stdout).strip() or 'no status yet'}"
            )
        time.sleep(0.2)


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read() or b"null")


class OperatorProcess:
    """``pkg-operator`` against the test bed; ready once its liveness endpoint answers."""

    def __init__(self, workdir: Path, env: Mapping[str, str], *, name: str = "operator") -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        full_env = {
            **os.environ,
            **env,
            "PKG_LIVENESS_HOST": "127.0.0.1",
            "PKG_LIVENESS_PORT": str(self.liveness_port),
            "PKG_METRICS_HOST": "127.0.0.1",
            "PKG_METRICS_PORT": str(self.metrics_port),
        }
        self.proc = ServerProcess(
            name, [venv_command("pkg-operator")], workdir / f"{name}.log", env=full_env
        )

    def start(self, timeout: float = 60) -> None:
        self.proc.start()
        wait_until(
            lambda: _get_json(f"http://127.0.0.1:{self.liveness_port}/healthz") is not None,
            timeout=timeout,
            what="pkg-operator",
            proc=self.proc,
        )

    def stop(self) -> None:
        self.proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crashed pod: no clean-up handlers run."""
        self.proc.kill()

    def log(self) -> str:
        return self.proc.log_tail(200)


class SidecarProcess:
    """``pkg-sidecar`` for one device; ready once ``/healthz`` answers."""

    def __init__(self, workdir: Path, env: Mapping[str, str], *, device_id: str) -> None:
        self.port = free_port()
        self.device_id = device_id
        safe = device_id.replace(":", "_").replace("/", "_")
        folder = workdir / f"sidecar-{safe}"
        folder.mkdir(parents=True, exist_ok=True)
        full_env = {
            **os.environ,
            **env,
            "PKG_DEVICE_ID": device_id,
            "PKG_HTTP_HOST": "127.0.0.1",
            "PKG_HTTP_PORT": str(self.port),
            "PKG_CACHE_DIR": str(folder / "cache"),
        }
        self.proc = ServerProcess(
            f"sidecar {device_id}",
            [venv_command("pkg-sidecar")],
            folder / "sidecar.log",
            env=full_env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.proc.start()
        self.start_wait(timeout)

    def start_wait(self, timeout: float = 60) -> None:
        """Wait for a sidecar whose process was started (start many, then wait for all)."""
        wait_until(
            lambda: _get_json(f"{self.url}/healthz") is not None,
            timeout=timeout,
            what=f"pkg-sidecar {self.device_id}",
            proc=self.proc,
        )

    def stop(self) -> None:
        self.proc.stop()

    def metadata(self) -> dict[str, object]:
        data = _get_json(f"{self.url}/v1/metadata")
        assert isinstance(data, dict)
        return data

    def evaluate(self, task_facts: Mapping[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{self.url}/v1/evaluate",
            data=json.dumps(task_facts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            result = json.loads(response.read())
        assert isinstance(result, dict)
        return result
