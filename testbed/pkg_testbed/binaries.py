"""Find the test bed's binaries, or build them from their Go modules and cache them.

Order of preference for each tool:

1. ``$KUBEBUILDER_ASSETS/<tool>`` (etcd, kube-apiserver, kubectl), when its
   version is supported;
2. ``<tool>`` on ``PATH``, when its version is supported;
3. the cache, ``$PKG_TESTBED_CACHE/bin/<tool>-<version>/<tool>`` (default
   ``~/.cache/pkg-operator``), filled by ``testbed/build-go-tools.sh``;
4. a build through ``testbed/build-go-tools.sh`` (unless ``PKG_TESTBED_NO_BUILD=1``).

Pinned versions live in ``testbed/versions.env``, the one source the shell
build script reads too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TOOLS",
    "BinaryError",
    "cache_dir",
    "ensure",
    "pinned_versions",
    "prometheus_release",
]

TESTBED_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = TESTBED_DIR / "build-go-tools.sh"
VERSIONS_FILE = TESTBED_DIR / "versions.env"


class BinaryError(RuntimeError):
    """A tool could be neither found nor built; the message says what to do."""


def pinned_versions() -> dict[str, str]:
    """``{"KUBERNETES_VERSION": "v1.34.4", ...}`` from versions.env."""
    versions: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("PKG_TESTBED_CACHE", Path.home() / ".cache" / "pkg-operator"))


def prometheus_release(module_version: str) -> str:
    """Prometheus's release for its Go module version: v0.316.0 is 3.16.0, v0.305.1 is 3.5.1.

    promtool prints the release; versions.env pins the module version ``go install`` needs.
    """
    match = re.fullmatch(r"v0\.(\d)(\d\d)\.(\d+)", module_version)
    if match is None:
        return module_version.lstrip("v")
    major, minor, patch = match.groups()
    return f"{major}.{int(minor)}.{patch}"


def _minor(version: str) -> tuple[int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.\d+)?", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class Tool:
    name: str
    version_key: str
    version_args: tuple[str, ...]
    from_kubebuilder_assets: bool = False

    def pinned(self) -> str:
        return pinned_versions()[self.version_key]

    def read_version(self, path: Path) -> str | None:
        try:
            out = subprocess.run(
                [str(path), *self.version_args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = out.stdout + out.stderr
        if self.name == "kubectl":
            try:
                return str(json.loads(out.stdout)["clientVersion"]["gitVersion"])
            except (ValueError, KeyError):
                return None
        match = re.search(r"v?\d+\.\d+\.\d+", text)
        return match.group(0) if match else None

    def supports(self, found: str) -> bool:
        """Whether a found binary's version works with the pinned one.

        The API server and etcd must be recent enough for the CRD features the
        project uses (CEL transition rules, GA since 1.29); kubectl must be within
        the supported skew of one minor version of the API server.
        """
        pinned = self.pinned()
        if self.name == "promtool":  # rule files are checked with promtool 3.x's syntax
            pinned = prometheus_release(pinned)
        want, got = _minor(pinned), _minor(found)
        if want is None or got is None or want[0] != got[0]:
            return False
        if self.name == "kube-apiserver":
            return got[1] >= 30
        if self.name == "kubectl":
            kube = _minor(pinned_versions()["KUBERNETES_VERSION"])
            return kube is not None and abs(got[1] - kube[1]) <= 1
        if self.name == "etcd":
            return got[1] >= 5
        return True  # opa v1.x, helm v3.x, promtool 3.x: same major is enough


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("etcd", "ETCD_VERSION", ("--version",), from_kubebuilder_assets=True),
        Tool("kube-apiserver", "KUBERNETES_VERSION", ("--version",), from_kubebuilder_assets=True),
        Tool(
            "kubectl",
            "KUBERNETES_VERSION",
            ("version", "--client", "-o", "json"),
            from_kubebuilder_assets=True,
        ),
        Tool("opa", "OPA_VERSION", ("version",)),
        Tool("helm", "HELM_VERSION", ("version", "--short")),
        # Our own small program over cli-utils' kstatus (testbed/kstatus/main.go): only
        # ever the cached build, never a binary of that name on PATH.
        Tool("kstatus", "KSTATUS_VERSION", ("--version",)),
        # Ours too (testbed/opa-wasm-query/main.go): compiles a query to wasm as OPA's wasm
        # SDK harness does, for the conformance runner; built against the pinned OPA.
        Tool("opa-wasm-query", "OPA_VERSION", ("--version",)),
        # Checks and unit-tests deploy/monitoring's alert rules; built from cmd/promtool only.
        Tool("promtool", "PROMETHEUS_VERSION", ("--version",)),
    )
}


#: Our own programs: only ever the cached build of this checkout's source, never one on PATH.
_OURS = frozenset({"kstatus", "opa-wasm-query"})


def _candidates(tool: Tool) -> list[Path]:
    found: list[Path] = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if tool.from_kubebuilder_assets and assets:
        found.append(Path(assets) / tool.name)
    on_path = shutil.which(tool.name) if tool.name not in _OURS else None
    if on_path:
        found.append(Path(on_path))
    return found


def cached_path(name: str) -> Path:
    tool = TOOLS[name]
    return cache_dir() / "bin" / f"{name}-{tool.pinned()}" / name


def ensure(name: str, *, build: bool | None = None) -> Path:
    """The path of a working ``name`` binary, building and caching it if needed."""
    if name not in TOOLS:
        raise BinaryError(f"unknown tool {name!r}; the test bed knows {sorted(TOOLS)}")
    tool = TOOLS[name]
    for path in _candidates(tool):
        if path.is_file() and os.access(path, os.X_OK):
            version = tool.read_version(path)
            if version and tool.supports(version):
                return path
    cached = cached_path(name)
    if cached.is_file():
        return cached
    if build is None:
        build = os.environ.get("PKG_TESTBED_NO_BUILD", "") not in ("1", "true", "yes")
    if not build:
        raise BinaryError(
            f"{name} {tool.pinned()} is not on PATH, in KUBEBUILDER_ASSETS or in the cache "
            f"({cached}); run `make testbed-bins` to build it from its Go module"
        )
    print(f"[pkg_testbed] building {name} {tool.pinned()} from its Go module ...", file=sys.stderr)
    result = subprocess.run([str(BUILD_SCRIPT), name], check=False)
    if result.returncode != 0 or not cached.is_file():
        raise BinaryError(
            f"building {name} {tool.pinned()} failed (exit {result.returncode}); see the output "
            f"above. The build needs Go >= 1.24 on PATH and the Go module proxy."
        )
    return cached
