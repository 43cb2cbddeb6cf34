"""The OCI image `make image` builds: unpacked and run as a container runtime would run it.

The archive (dist/pkg-operator-VERSION.oci.tar) is built by `make image` when it is
missing or was built from another commit (a cold build takes minutes, a warm one
about two). Its one layer is unpacked, then each entry point runs in it with
``unshare --mount --pid --fork chroot``: as user 10001, with the root file system
mounted read-only and only /tmp writable (the emptyDir of a pod), the image's own
environment, and the host's network (loopback). No container engine runs on this
machine (FIELD-NOTES.md), so this is the closest honest run of the image here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
ARCHIVE = REPO / "dist" / f"pkg-operator-{VERSION}.oci.tar"
SBOM = REPO / "dist" / f"pkg-operator-{VERSION}.cdx.json"
SNAPSHOT = REPO / "manifests" / "samples" / "policysnapshot-native.yaml"
ENTRY_POINTS = ["pkg-operator", "pkg-sidecar", "pkg-migrate", "pkg"]


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":")
    return layout / "blobs" / algorithm / hexdigest


class Image:
    """The unpacked archive: its manifest, config and root file system."""

    def __init__(self, layout: Path, rootfs: Path) -> None:
        index = json.loads((layout / "index.json").read_text())
        (entry,) = index["manifests"]
        self.tag = entry["annotations"]["org.opencontainers.image.ref.name"]
        self.manifest: dict[str, Any] = json.loads(_blob(layout, entry["digest"]).read_text())
        self.config: dict[str, Any] = json.loads(
            _blob(layout, self.manifest["config"]["digest"]).read_text()
        )
        self.rootfs = rootfs
        self.env = dict(item.split("=", 1) for item in self.config["config"]["Env"])


def _require_root_tools() -> None:
    missing = [tool for tool in ("unshare", "chroot", "mount") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(
            "the image test runs the image's file system with unshare and chroot, which needs "
            f"root (euid {os.geteuid()}) and unshare, chroot, mount (missing: {missing}); "
            "run `make test` as root, as CI does"
        )


@pytest.fixture(scope="module")
def archive() -> Path:
    _require_root_tools()
    revision = None
    if ARCHIVE.exists():
        with tarfile.open(ARCHIVE) as tar:
            layout_index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            digest = layout_index["manifests"][0]["digest"].replace(":", "/")
            manifest = json.load(tar.extractfile(f"blobs/{digest}"))  # type: ignore[arg-type]
        revision = manifest.get("annotations", {}).get("org.opencontainers.image.revision")
    if revision != _head():
        started = time.monotonic()
        done = subprocess.run(
            ["make", "--no-print-directory", "image"],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, f"make image failed:\n{done.stdout}\n{done.stderr}"
        print(f"make image took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return ARCHIVE


@pytest.fixture(scope="module")
def image(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    layout = root / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    rootfs = root / "rootfs"
    rootfs.mkdir()
    probe = Image(layout, rootfs)
    (layer,) = probe.manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # GNU tar as root keeps owners, modes and special files exactly as a runtime unpacks them.
    subprocess.run(
        [
            "tar",
            "-xz",
            "--numeric-owner",
            "-C",
            str(rootfs),
            "-f",
            str(_blob(layout, layer["digest"])),
        ],
        check=True,
    )
    (rootfs / "etc" / "pkg-policy").mkdir()
    return probe


def _run_argv(
    image: Image, command: list[str], *, mounts: dict[Path, str] | None = None
) -> list[str]:
    """`unshare ... chroot` as user 10001, root read-only, /tmp a fresh tmpfs."""
    binds = "".join(
        f'mount --bind -o ro "{src}" "$R{dst}"; ' for src, dst in (mounts or {}).items()
    )
    script = (
        "set -e; R=$1; shift; "
        'mount --bind "$R" "$R"; mount -o remount,bind,ro "$R"; '
        'mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; '
        'mount -t tmpfs -o mode=1777,size=64m tmpfs "$R/tmp"; '
        f"{binds}"
        'exec chroot --userspec=10001:10001 "$R" "$@"'
    )
    env = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in image.env.items())]
    return [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child=SIGTERM",
        "sh",
        "-c",
        script,
        "run-in-image",
        str(image.rootfs),
        *env,
        *command,
    ]


def _run(image: Image, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _run_argv(image, command), check=False, capture_output=True, text=True, timeout=120
    )


def test_the_image_is_described_by_its_config_and_annotations(image: Image) -> None:
    config = image.config["config"]
    assert image.tag == VERSION
    assert config["User"] == "10001:10001"
    assert image.env["PATH"].startswith("/opt/pkg/bin:")
    annotations = image.manifest["annotations"]
    assert annotations["org.opencontainers.image.version"] == VERSION
    assert annotations["org.opencontainers.image.revision"] == _head()
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION


def test_the_image_holds_no_compiler_pip_or_package_cache(image: Image) -> None:
    root = image.rootfs
    for compiler in ("usr/bin/gcc", "usr/bin/cc", "usr/bin/g++", "usr/bin/clang", "usr/bin/ld"):
        assert not (root / compiler).exists(), compiler
    assert not list((root / "opt/pkg/bin").glob("pip*"))
    assert not list((root / "opt/pkg/lib").glob("python3*/site-packages/pip"))
    assert not any((root / "var/cache/apt").glob("**/*.deb"))
    assert not any(p.is_file() for p in (root / "var/lib/apt/lists").glob("*"))
    assert not (root / "usr/share/python-wheels").exists()
    assert not (root / "etc/resolv.conf").exists()  # the runtime's, not the build machine's
    passwd = (root / "etc/passwd").read_text()
    assert "pkg:x:10001:10001:" in passwd


def test_every_file_carries_the_builds_source_date(image: Image) -> None:
    created = image.config["created"]
    times = {int(path.lstat().st_mtime) for path in image.rootfs.joinpath("opt", "pkg").rglob("*")}
    assert len(times) == 1, f"{len(times)} different file times under /opt/pkg"
    (when,) = times
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) == created


def test_an_sbom_of_the_python_packages_lies_beside_the_archive(image: Image) -> None:
    sbom = json.loads(SBOM.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c["name"].lower(): c["version"] for c in sbom["components"]}
    assert names["pkg-operator"] == VERSION
    for dependency in ("kopf", "asyncpg", "redis", "wasmtime", "pydantic", "cryptography"):
        assert dependency in names, dependency
    installed = {
        p.name.split("-")[0].lower().replace("_", "-")
        for p in image.rootfs.glob("opt/pkg/lib/python3*/site-packages/*.dist-info")
    }
    assert installed == {n.replace("_", "-").replace(".", "-") for n in names}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_each_entry_point_runs_as_user_10001_on_a_read_only_root(
    image: Image, entry_point: str
) -> None:
    done = _run(image, [entry_point, "--help"])
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_the_processes_run_as_10001_and_cannot_write_the_root(image: Image) -> None:
    script = (
        "import os, tempfile\n"
        "print(os.getuid(), os.getgid())\n"
        "tempfile.NamedTemporaryFile(dir='/tmp').close()\n"
        "try:\n    open('/opt/pkg/x', 'w')\nexcept OSError as exc:\n    print(exc.errno)\n"
    )
    done = _run(image, ["python", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10001", "10001", "30"]  # 30: EROFS


@pytest.fixture
def served(image: Image, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    policy = tmp_path / "policy"
    policy.mkdir()
    shutil.copy(SNAPSHOT, policy / "snapshot.yaml")
    argv = _run_argv(
        image,
        ["pkg", "serve", "/etc/pkg-policy/snapshot.yaml", "--port", "0"],
        mounts={policy: "/etc/pkg-policy"},
    )
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    port = None
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if '"sidecar_listening"' in line:
            port = int(json.loads(line)["port"])
            break
    try:
        assert port is not None, "pkg serve did not listen in the image:\n" + "".join(lines)
        yield process, port
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the image's process (unshare --fork ignores it while it waits), as a
    kubelet stops a container; then unshare returns with the child's exit status."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    for pid in children.read_text().split() if children.exists() else []:
        os.kill(int(pid), signal.SIGTERM)
    try:
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_the_sidecar_in_the_image_answers_from_a_mounted_snapshot_file(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = served
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/evaluate",
        data=json.dumps({"tags": ["vip"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result = json.loads(response.read())
    assert result["snapshot"] == "rules@1.4.0"
    assert [s["name"] for s in result["subtasks"]] == ["escalate_vip"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
        assert json.loads(response.read())["ready"] is True
