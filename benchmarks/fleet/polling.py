"""Propagation by polling: OPA's bundle polling, and the standalone sidecar's file watch.

Owned by the sidecar-footprint benchmarks (``bench_vs_opa``). A policy change is
written at t0 (a new bundle on a small local HTTP server; a new snapshot file
renamed over the old), and the server is asked every 5 ms which revision it serves;
the propagation time is the first answer with the new one. Before each change a
random pause puts it at a random point of the poller's period.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.fleet.opa_rules import generate_rules, resource
from benchmarks.fleet.process_harness import (
    free_port,
    http_json,
    load,
    opa_binary,
    sidecar_command,
    stop,
    wait_http,
)

__all__ = ["BundleServer", "OpaPolling", "opa_polling", "sidecar_file_watch"]

OPA_DEFAULT_DELAYS = (60, 120)  # OPA's documented min/max_delay_seconds


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class BundleServer:
    """Serves ``folder`` over HTTP on loopback from a thread (the bundle service)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, name: str, revision: str) -> None:
        """Write bundle ``name`` at ``revision`` atomically (a new file renamed over the old)."""
        files = {
            "policy.rego": f'package fleet.{name}\n\nrev := "{revision}"\n'.encode(),
            ".manifest": json.dumps({"revision": revision, "roots": [f"fleet/{name}"]}).encode(),
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(f"/{path}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        tmp = self.folder / f".{name}.tar.gz"
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(self.folder / f"{name}.tar.gz")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class OpaPolling:
    """``opa run --server`` polling bundle ``name`` from a :class:`BundleServer`."""

    def __init__(
        self, bundles: BundleServer, work: Path, *, name: str, delays: tuple[int, int] | None
    ) -> None:
        self.bundles, self.name, self.delays = bundles, name, delays
        self.revision = 0
        bundles.publish(name, "0")
        bundle: dict[str, Any] = {"service": "s", "resource": f"{name}.tar.gz"}
        if delays is not None:
            bundle["polling"] = {"min_delay_seconds": delays[0], "max_delay_seconds": delays[1]}
        config = work / f"opa-{name}.json"
        config.write_text(json.dumps({
            "services": {"s": {"url": f"http://127.0.0.1:{bundles.port}"}},
            "bundles": {name: bundle},
        }))  # fmt: skip
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(opa_binary()), "run", "--server", "--addr", f"127.0.0.1:{self.port}",
             "--log-level", "error", "--config-file", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_http(self.port, "/health?bundles", self.proc)
        self._watch: threading.Thread | None = None
        self._seen: list[float] = []

    def serving(self) -> str | None:
        try:
            _, value = http_json(self.port, f"/v1/data/fleet/{self.name}/rev", timeout=2)
        except OSError:
            return None
        return value.get("result") if isinstance(value, dict) else None

    def _wait(self, revision: str, t0: float, step: float, timeout: float) -> float | None:
        while time.perf_counter() - t0 < timeout:
            if self.serving() == revision:
                return (time.perf_counter() - t0) * 1000
            time.sleep(step)
        return None

    def measure(self, swaps: int) -> dict[str, Any]:
        """``swaps`` changes at random points of the polling period; ms each."""
        assert self.delays is not None
        times, loads = [], []
        for _ in range(swaps):
            time.sleep(random.uniform(0, self.delays[1]))
            self.revision += 1
            loads.append(load()[0])
            t0 = time.perf_counter()
            self.bundles.publish(self.name, str(self.revision))
            took = self._wait(str(self.revision), t0, 0.005, self.delays[1] * 3 + 10)
            if took is None:
                raise TimeoutError(f"OPA did not load revision {self.revision}")
            times.append(took)
        stop(self.proc)
        return _row(f"OPA bundle polling, min/max_delay_seconds {self.delays[0]}/{self.delays[1]}",
                    times, loads)  # fmt: skip

    def start_swap(self) -> None:
        """One change, watched from a thread (every 50 ms) while other work runs."""
        self.revision += 1
        self._t0 = time.perf_counter()
        self._load = load()[0]
        self.bundles.publish(self.name, str(self.revision))

        def watch() -> None:
            took = self._wait(str(self.revision), self._t0, 0.05, OPA_DEFAULT_DELAYS[1] + 15)
            if took is not None:
                self._seen.append(took)

        self._watch = threading.Thread(target=watch, daemon=True)
        self._watch.start()

    def finish(self) -> dict[str, Any]:
        assert self._watch is not None
        self._watch.join(OPA_DEFAULT_DELAYS[1] + 20)
        stop(self.proc)
        if not self._seen:
            raise TimeoutError("OPA with default polling did not load the new bundle in 135 s")
        return _row("OPA bundle polling, its defaults (60/120 s); 1 swap", self._seen,
                    [self._load])  # fmt: skip

    def close(self) -> None:
        stop(self.proc)


def opa_polling(
    bundles: BundleServer, work: Path, *, name: str, delays: tuple[int, int] | None
) -> OpaPolling:
    return OpaPolling(bundles, work, name=name, delays=delays)


def _row(what: str, times: list[float], loads: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "what": what,
        "swaps": len(times),
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "max_ms": round(ordered[-1], 1),
        "load": max(loads),
    }


def sidecar_file_watch(work: Path, swaps: int, poll_seconds: float = 1.0) -> dict[str, Any]:
    """The standalone sidecar's file watch (``PKG_SNAPSHOT_POLL_SECONDS``) on a 13-rule file."""
    file = work / "watched.json"

    def write(n: int) -> str:
        spec = generate_rules(13, seed=5000 + n, version=f"watch@1.{n}.0")
        tmp = work / "watched.json.tmp"
        tmp.write_text(json.dumps(resource(spec)))
        tmp.replace(file)
        return str(spec["version"])

    write(0)
    port = free_port()
    env = {**os.environ, "PKG_SNAPSHOT_FILE": str(file), "PKG_HTTP_PORT": str(port),
           "PKG_ENV": "dev", "PKG_LOG_LEVEL": "WARNING",
           "PKG_SNAPSHOT_POLL_SECONDS": str(poll_seconds)}  # fmt: skip
    proc = subprocess.Popen(
        sidecar_command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    times, loads = [], []
    try:
        wait_http(port, "/readyz", proc)
        for n in range(1, swaps + 1):
            time.sleep(random.uniform(0, poll_seconds))
            loads.append(load()[0])
            t0 = time.perf_counter()
            version = write(n)
            while time.perf_counter() - t0 < poll_seconds * 3 + 10:
                _, meta = http_json(port, "/v1/metadata")
                if isinstance(meta, dict) and meta.get("version") == version:
                    times.append((time.perf_counter() - t0) * 1000)
                    break
                time.sleep(0.005)
            else:
                raise TimeoutError(f"the sidecar did not serve {version}")
    finally:
        stop(proc)
    return _row(f"sidecar file watch, PKG_SNAPSHOT_POLL_SECONDS {poll_seconds:g}", times, loads)
