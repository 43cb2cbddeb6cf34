"""`pkg serve FILE` and `pkg-sidecar` with PKG_SNAPSHOT_FILE: the real process, no PostgreSQL
or Redis, serving a PolicySnapshot file laid out as a mounted ConfigMap.

A ConfigMap volume holds the file behind two symlinks (``snapshot.yaml ->
..data/snapshot.yaml``, ``..data -> ..2026_...``); an update writes a new
timestamped folder and renames a new ``..data`` link over the old one. The
tests do exactly that and read the answers of the real HTTP API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
V1 = REPO / "manifests" / "samples" / "policysnapshot-native.yaml"  # rules@1.4.0, checksummed
V2 = REPO / "docs" / "examples" / "policysnapshot-1-5-0.yaml"  # rules@1.5.0, with fixtures
VIP = {"tags": ["vip"]}


class ConfigMapVolume:
    """A folder laid out as the kubelet lays out a ConfigMap volume with one key."""

    def __init__(self, root: Path, key: str = "snapshot.yaml") -> None:
        self.root = root
        self.key = key
        self.updates = 0
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / self.key

    def publish(self, text: str) -> None:
        self.updates += 1
        folder = self.root / f"..2026_12_04_00_00_{self.updates:02d}"
        folder.mkdir()
        (folder / self.key).write_text(text)
        link = self.root / "..data_tmp"
        link.symlink_to(folder.name)
        os.replace(link, self.root / "..data")  # the atomic swap
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.key}")


def _doc(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _text(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _version(doc: dict[str, Any], version: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(doc))
    copy["spec"]["version"] = version
    copy["spec"].pop("checksum", None)
    for fixture in copy["spec"].get("fixtures", []):
        if "snapshot" in fixture.get("expect", {}):
            fixture["expect"]["snapshot"] = version
    return copy


class Served:
    """One `pkg serve` / `pkg-sidecar` process and its HTTP API."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if '"sidecar_listening"' in line:
                return int(json.loads(line)["port"])
        self.stop()
        raise AssertionError("the process did not listen; it said:\n" + "".join(self.lines))

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self._call(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}"))

    def evaluate(self, facts: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/evaluate",
            data=json.dumps(facts).encode(),
            headers={"Content-Type": "application/json"},
        )
        return self._call(request)

    @staticmethod
    def _call(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_for(self, what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            _, health = self.get("/healthz")
            if check(health):
                return health
            time.sleep(0.1)
        raise AssertionError(f"{what} did not happen within 20 s; /healthz says {health}")

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKG_")}
    env.update(PKG_LOG_FORMAT="json", PKG_LOG_LEVEL="INFO", **extra)
    return env


@pytest.fixture
def volume(tmp_path: Path) -> ConfigMapVolume:
    volume = ConfigMapVolume(tmp_path / "policy")
    volume.publish(V1.read_text())
    return volume


@pytest.fixture
def served(volume: ConfigMapVolume) -> Iterator[Served]:
    command = [str(BIN / "pkg"), "serve", str(volume.path), "--port", "0", "--poll", "0.1"]
    server = Served(command, _env())
    yield server
    assert server.stop() == 0, "".join(server.lines)


def test_pkg_serve_answers_from_the_file_and_follows_the_configmaps_updates(
    served: Served, volume: ConfigMapVolume
) -> None:
    status, result = served.evaluate(VIP)
    assert status == 200, result
    assert result["snapshot"] == "rules@1.4.0"
    assert [s["name"] for s in result["subtasks"]] == ["escalate_vip"]
    status, ready = served.get("/readyz")
    assert status == 200, ready

    volume.publish(V2.read_text())
    served.wait_for("rules@1.5.0 active", lambda h: h["active_version"] == "rules@1.5.0")
    status, result = served.evaluate(VIP)
    assert status == 200, result
    assert result["snapshot"] == "rules@1.5.0"
    assert [s["name"] for s in result["subtasks"]] == ["escalate_vip", "notify_front_desk"]
    health = served.get("/healthz")[1]
    assert health["degraded_mode"] is False
    assert health["last_error"] is None


@pytest.mark.parametrize(
    ("name", "bad_text", "error_says"),
    [
        ("not YAML", "spec: [\n", "not valid YAML"),
        (
            "tampered (checksum)",
            _text({**_doc(V1), "spec": {**_doc(V1)["spec"], "rules": []}}),
            "checksum",
        ),
        (
            "fixture fails (self-test)",
            _text(
                {
                    **_version(_doc(V2), "rules@1.5.1"),
                    "spec": {
                        **_version(_doc(V2), "rules@1.5.1")["spec"],
                        "fixtures": [
                            {"name": "wrong", "input": VIP, "expect": {"subtasks": ["nobody"]}}
                        ],
                    },
                }
            ),
            "wrong",
        ),
        (
            "another environment",
            _text({**_doc(V2), "spec": {**_doc(V2)["spec"], "env": "dev"}}),
            "env",
        ),
        ("not a PolicySnapshot", "kind: ConfigMap\napiVersion: v1\n", "PolicySnapshot"),
    ],
)
def test_a_bad_file_keeps_the_last_good_snapshot_serving_and_says_why(
    served: Served, volume: ConfigMapVolume, name: str, bad_text: str, error_says: str
) -> None:
    volume.publish(V2.read_text())
    served.wait_for("rules@1.5.0 active", lambda h: h["active_version"] == "rules@1.5.0")

    volume.publish(bad_text)
    health = served.wait_for(f"{name} reported", lambda h: h["last_error"] is not None)
    assert error_says in health["last_error"], health
    assert health["degraded_mode"] is True
    assert health["active_version"] == "rules@1.5.0"
    status, result = served.evaluate(VIP)
    assert status == 200, result
    assert result["snapshot"] == "rules@1.5.0"

    volume.publish(_text(_version(_doc(V2), "rules@1.6.0")))
    health = served.wait_for("rules@1.6.0 active", lambda h: h["active_version"] == "rules@1.6.0")
    assert health["last_error"] is None
    assert health["degraded_mode"] is False


def test_pkg_serve_without_a_readable_file_answers_503_until_one_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.yaml"
    command = [str(BIN / "pkg"), "serve", str(path), "--port", "0", "--poll", "0.1"]
    server = Served(command, _env())
    try:
        status, body = server.evaluate(VIP)
        assert status == 503, body
        health = server.get("/healthz")[1]
        assert "later.yaml" in health["last_error"]
        path.write_text(V1.read_text())
        server.wait_for("the file's snapshot active", lambda h: h["active_version"] is not None)
        assert server.evaluate(VIP)[1]["snapshot"] == "rules@1.4.0"
    finally:
        assert server.stop() == 0, "".join(server.lines)


def test_pkg_sidecar_runs_from_a_snapshot_file_with_no_database_or_redis(
    volume: ConfigMapVolume,
) -> None:
    env = _env(
        PKG_SNAPSHOT_FILE=str(volume.path), PKG_HTTP_PORT="0", PKG_SNAPSHOT_POLL_SECONDS="0.1"
    )
    server = Served([str(BIN / "pkg-sidecar")], env)
    try:
        status, result = server.evaluate(VIP)
        assert status == 200, result
        assert result["snapshot"] == "rules@1.4.0"
        volume.publish(V2.read_text())
        server.wait_for("rules@1.5.0 active", lambda h: h["active_version"] == "rules@1.5.0")
    finally:
        assert server.stop() == 0, "".join(server.lines)


def test_pkg_sidecar_without_a_database_redis_or_file_says_what_to_set() -> None:
    done = subprocess.run(
        [str(BIN / "pkg-sidecar")],
        check=False,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "PKG_SNAPSHOT_FILE" in done.stderr
    assert "PKG_DATABASE_URL" in done.stderr
