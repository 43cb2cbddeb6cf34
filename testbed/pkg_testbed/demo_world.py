"""What the demo drives: the cluster (kubectl, object reads) and a fleet of sidecar processes.

:class:`DemoWorld` names a running test bed (a kubeconfig, PostgreSQL and
Redis URLs, a folder for logs, a namespace): ``make demo`` builds one from a
fresh :class:`~pkg_testbed.stack.Stack`, the end-to-end test from its session
fixtures. :class:`DemoError` is how every expectation of the scenario fails:
it says what did not happen and carries the tails of the logs that explain it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from pkg_testbed.procs import TestbedError
from pkg_testbed.product import SidecarProcess, kubectl

__all__ = [
    "GROUP",
    "VERSION",
    "DemoCluster",
    "DemoError",
    "DemoWorld",
    "DeviceSpec",
    "Fleet",
    "InterruptGuard",
    "LiveTraffic",
    "processes_using",
    "wait_for",
]

GROUP, VERSION = "pkg.seedcore.io", "v1alpha1"

T = TypeVar("T")


class DemoError(RuntimeError):
    """A step of the demo did not turn out as expected; ``logs`` holds (name, log tail) pairs."""

    def __init__(self, message: str, logs: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.logs = list(logs)


LogSource = Callable[[], Sequence[tuple[str, str]]]


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    logs: LogSource | None = None,
    interval: float = 0.25,
) -> T:
    """Poll ``check`` until it returns something truthy; else DemoError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise DemoError(
                f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})",
                logs() if logs else (),
            )
        time.sleep(interval)


@dataclass(frozen=True)
class DemoWorld:
    """A running test bed the demo plays on."""

    kubectl_bin: Path
    kubeconfig: Path
    database_url: str
    redis_url: str
    workdir: Path
    namespace: str

    def product_env(self) -> dict[str, str]:
        """What the operator and the sidecars need to reach the test bed."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PKG_DATABASE_URL": self.database_url,
            "PKG_REDIS_URL": self.redis_url,
        }


class DemoCluster:
    """kubectl for what a person would type; the Kubernetes client for the many reads."""

    def __init__(self, world: DemoWorld) -> None:
        self.world = world
        self._api: Any = None

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        try:
            result = kubectl(
                self.world.kubectl_bin,
                self.world.kubeconfig,
                *args,
                stdin=stdin,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoError(f"kubectl {' '.join(args[:2])} did not finish: {exc}") from exc
        if result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def annotate(self, plural: str, name: str, key: str, value: Mapping[str, Any]) -> None:
        self.kubectl(
            "annotate",
            plural,
            name,
            "-n",
            self.world.namespace,
            "--overwrite",
            f"{key}={json.dumps(dict(value))}",
        )

    def _custom(self) -> Any:
        if self._api is None:
            client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.world.kubeconfig)
            )
            self._api = kubernetes.client.CustomObjectsApi(client)
        return self._api

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """The object as a dict, or None while it does not exist."""
        try:
            obj = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.world.namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DemoError(f"reading {plural}/{name} failed: {exc.status} {exc.reason}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DemoError(
                f"the API server did not answer a read of {plural}/{name}: {exc}"
            ) from exc
        return dict(obj)


@dataclass(frozen=True)
class DeviceSpec:
    """One sidecar of the fleet: where it sits in the rollout's terms."""

    device_id: str
    target: str
    region: str
    device_type: str

    @property
    def group(self) -> str:
        return f"{self.target}/{self.region}"


class InterruptGuard:
    """Holds Ctrl-C (SIGINT) and SIGTERM back while a process is being started.

    A signal that arrives between ``Popen`` returning and the process being
    recorded would leave it running with nobody to stop it; inside
    ``deferred()`` the signal is remembered and raised as KeyboardInterrupt
    when the block ends. Installed only by the demo's command (never in tests).
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        self._stopping = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handler)
        signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        if self._stopping:
            return  # a second Ctrl-C while stopping: clean-up carries on regardless
        if self._depth:
            self._pending = True
            return
        self._stopping = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending:
                self._pending = False
                self._stopping = True
                raise KeyboardInterrupt

    def stopping(self) -> None:
        """From now on, ignore further signals (the clean-up must finish)."""
        self._stopping = True


_NO_GUARD = InterruptGuard()


@dataclass
class Fleet:
    """Sidecar processes standing in for pods: one ``pkg-sidecar`` per device."""

    world: DemoWorld
    devices: Sequence[DeviceSpec]
    env: str = "prod"
    guard: InterruptGuard = field(default_factory=lambda: _NO_GUARD)
    sidecars: dict[str, SidecarProcess] = field(default_factory=dict)

    def start(self) -> None:
        """Start every sidecar at once, then wait until each serves HTTP."""
        base = self.world.product_env()
        for device in self.devices:
            proc = SidecarProcess(
                self.world.workdir / "sidecars",
                {
                    **base,
                    "PKG_ENV": self.env,
                    "PKG_TARGET": device.target,
                    "PKG_REGION": device.region,
                    "PKG_DEVICE_TYPE": device.device_type,
                    # Quick heartbeats and resyncs, so the demo moves at a watchable pace.
                    "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                    "PKG_RESYNC_INTERVAL_SECONDS": "2",
                    "PKG_LOG_LEVEL": "WARNING",
                },
                device_id=device.device_id,
            )
            with self.guard.deferred():
                proc.proc.start()
                self.sidecars[device.device_id] = proc
        for proc in self.sidecars.values():
            try:
                proc.start_wait()
            except TestbedError as exc:
                raise DemoError(str(exc)) from exc

    def groups(self) -> dict[str, list[DeviceSpec]]:
        """Devices by ``target/region``, in the fleet's order."""
        result: dict[str, list[DeviceSpec]] = {}
        for device in self.devices:
            result.setdefault(device.group, []).append(device)
        return result

    def in_group(self, group: str) -> list[DeviceSpec]:
        return self.groups()[group]

    def version(self, device_id: str) -> str | None:
        """The version the sidecar reports in ``GET /v1/metadata`` (None: none, or no answer)."""
        try:
            value = self.sidecars[device_id].metadata().get("version")
        except (OSError, ValueError):
            return None  # not answering this instant: shown as "-" and polled again
        return value if isinstance(value, str) else None

    def versions(self) -> dict[str, str | None]:
        return {device.device_id: self.version(device.device_id) for device in self.devices}

    def evaluate(self, device_id: str, task_facts: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.sidecars[device_id].evaluate(task_facts)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise DemoError(
                f"POST /v1/evaluate on {device_id} answered {exc.code}: {body}",
                self.logs([device_id]),
            ) from exc
        except OSError as exc:
            raise DemoError(
                f"POST /v1/evaluate on {device_id} failed: {exc}", self.logs([device_id])
            ) from exc

    def logs(self, device_ids: Sequence[str] | None = None) -> list[tuple[str, str]]:
        ids = list(device_ids) if device_ids is not None else list(self.sidecars)[:2]
        return [(f"sidecar {d}", self.sidecars[d].proc.log_tail(20)) for d in ids]

    def stop(self) -> None:
        """Stop every sidecar (in parallel: each waits for its process to exit)."""
        procs = list(self.sidecars.values())
        if not procs:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(procs))) as pool:
            list(pool.map(lambda p: p.stop(), procs))


class LiveTraffic:
    """Applications' requests in the background: each case in turn on each device, until
    stopped (a shadow step samples this live traffic).

    The first failed request stops it; ``stop`` raises it (a DemoError naming the device).
    """

    def __init__(
        self, fleet: Fleet, device_ids: Sequence[str], cases: Sequence[Mapping[str, Any]]
    ) -> None:
        self.fleet, self.device_ids, self.cases = fleet, list(device_ids), list(cases)
        self.sent = 0
        self._stop = threading.Event()
        self._error: DemoError | None = None
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for facts in self.cases:
                    for device_id in self.device_ids:
                        self.fleet.evaluate(device_id, facts)
                        self.sent += 1
                self._stop.wait(0.05)  # a steady trickle, not a load test
        except DemoError as exc:
            self._error = exc

    def start(self) -> LiveTraffic:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sending; how many requests were answered (raises the first failure)."""
        self._stop.set()
        self._thread.join(timeout=30)
        if self._error is not None:
            raise self._error
        return self.sent


def processes_using(folder: Path) -> list[tuple[int, str]]:
    """Processes (pid, command line) that use ``folder``: as working directory, in argv
    or environ, or through an open file (their log).

    Every process the demo starts writes its log there, so an empty answer after
    clean-up means nothing was left behind. Processes that cannot be read
    (gone meanwhile, or not ours to read) are skipped.
    """
    needle = str(folder)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = (
                Path(f"/proc/{entry}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
            environ = Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        paths = [cwd, *_open_files(entry)]
        if needle in argv or needle in environ or any(_inside(p, needle) for p in paths):
            found.append((int(entry), argv.strip()))
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def _open_files(pid: str) -> list[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    paths = []
    for fd in fds:
        with contextlib.suppress(OSError):  # closed since the listing
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return paths
