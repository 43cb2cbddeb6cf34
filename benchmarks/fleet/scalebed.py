"""What the operator-at-scale benchmarks share: the test bed, the API, /proc, the results.

:class:`Bed` starts PostgreSQL, Redis and a kube-apiserver (``pkg_testbed.stack.Stack``)
in a temporary folder, applies the CRDs and one namespace, and starts the real operator
process (``pkg_testbed.product.OperatorProcess``, standalone, production defaults
unless told otherwise). :class:`Api` speaks to the API server directly (GET, LIST and
WATCH over HTTPS with the test bed's token), which costs the measured machine far less
than a kubectl process per poll and gives the exact moment a status was stored.
:func:`cpu_seconds`, :func:`tree_cpu_seconds` and :func:`memory` read /proc.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import platform
import queue
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT / "testbed") not in sys.path:  # the test bed is not installed; tests add it too
    sys.path.insert(0, str(_ROOT / "testbed"))

from pkg_testbed.cluster import snapshot_doc  # noqa: E402 - importable only after the insert
from pkg_testbed.product import ROOT, OperatorProcess, kubectl, wait_established  # noqa: E402
from pkg_testbed.stack import Stack  # noqa: E402

__all__ = [
    "GROUP",
    "RESULTS",
    "Api",
    "Bed",
    "cpu_seconds",
    "machine",
    "memory",
    "now_iso",
    "snapshot_doc",
    "tree_cpu_seconds",
    "write_result",
]

RESULTS = ROOT / "benchmarks" / "results"
GROUP = "/apis/pkg.seedcore.io/v1alpha1"
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces: the fields start after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and of its children it waited for)."""
    fields = _stat_fields(pid)
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a live server process and its live children (PostgreSQL's backends each
    start a session of their own, so the session id does not find them)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, ValueError):
            continue  # it ended meanwhile
        if int(entry.name) == pid or int(fields[1]) == pid:  # ppid(1)
            total += sum(int(fields[i]) for i in (11, 12)) / _TICK
    return total


def memory(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def machine(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "python": platform.python_version(),
    }


def write_result(result: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Api:
    """The API server over HTTPS with the test bed's admin token (no client library)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = json.loads(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.context = ssl.create_default_context(cadata=ca)

    def _open(self, path: str, timeout: float) -> Any:
        request = urllib.request.Request(
            f"{self.server}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)

    def get(self, path: str, timeout: float = 30) -> Any:
        with self._open(path, timeout) as response:
            return json.loads(response.read())

    @contextmanager
    def watch(self, path: str) -> Iterator[queue.Queue[tuple[float, dict[str, Any]]]]:
        """Events of a WATCH of ``path``, each with the wall time it arrived, on a queue."""
        events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        sep = "&" if "?" in path else "?"
        response = self._open(f"{path}{sep}watch=1&timeoutSeconds=600", timeout=660)
        stop = threading.Event()

        def pump() -> None:
            try:
                for line in response:
                    if stop.is_set():
                        return
                    events.put((time.time(), json.loads(line)["object"]))
            except (OSError, ValueError, AttributeError):
                return  # closed by the context's exit (http.client then reads from None)

        thread = threading.Thread(target=pump, name="watch", daemon=True)
        thread.start()
        try:
            yield events
        finally:
            stop.set()
            response.close()


class Bed:
    """The test bed with the CRDs, one namespace and the operator; stop() ends all of it."""

    def __init__(self, name: str, namespace: str = "bench") -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pkg-{name}-"))
        self.workdir.chmod(0o755)  # PostgreSQL runs as its own user and must reach its folder
        self.stack = Stack(self.workdir / "stack")
        self.namespace = namespace
        self.operator: OperatorProcess | None = None
        self.api: Api | None = None

    def start(self) -> None:
        # A SIGTERM (make's or a person's) must still run stop(): the servers run in
        # sessions of their own and would outlive this process.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.stack.start()
        kube = self.stack.kube
        assert kube is not None
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "crds.yaml"))
        wait_established(
            kube.kubectl_bin,
            kube.kubeconfig,
            ["policysnapshots.pkg.seedcore.io", "policydeployments.pkg.seedcore.io"],
        )
        self.kubectl("create", "namespace", self.namespace)
        self.api = Api(kube.kubeconfig)

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        kube = self.stack.kube
        assert kube is not None
        return kubectl(
            kube.kubectl_bin, kube.kubeconfig, *args, stdin=stdin, timeout=timeout
        ).stdout

    def start_operator(self, **env: str) -> OperatorProcess:
        full = {
            **self.stack.env(),
            "PKG_STANDALONE": "true",
            "PKG_NAMESPACES": self.namespace,
            "PKG_LOG_LEVEL": "WARNING",
            **env,
        }
        self.operator = OperatorProcess(self.workdir / "operator", full)
        self.operator.start(timeout=120)
        return self.operator

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None
        pid = self.operator.proc.pid
        assert pid is not None
        return pid

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.stack.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
