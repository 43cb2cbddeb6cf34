"""What GitOps tools read as a resource's health, computed by their own means.

- Argo CD: the repository's resource-health Lua (deploy/gitops/argocd/) run by a real
  Lua 5.1 interpreter (Debian's lua5.1; Argo CD embeds gopher-lua, a Lua 5.1), with the
  object as the global ``obj``, as Argo CD passes it.
- Flux: cli-utils' kstatus, through the test bed's small Go program (testbed/kstatus).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pkg_testbed.binaries import ensure
from pkg_testbed.procs import TestbedError
from pkg_testbed.system import lua51

__all__ = ["argo_health", "kstatus", "lua_literal", "recordable"]


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua 5.1 table constructor (null fields left out, as Argo CD does)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped.replace(chr(13), chr(92) + "r")}"'
    if isinstance(value, Sequence):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, Mapping):
        items = [
            f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None
        ]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def argo_health(script: Path, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) that the Lua health script returns for ``obj``."""
    harness = (
        f"obj = {lua_literal(obj)}\n"
        f"local check = assert(loadfile({lua_literal(str(script))}))\n"
        "local hs = check()\n"
        'io.write(tostring(hs.status), "\\t", tostring(hs.message or ""))\n'
    )
    result = subprocess.run(
        [str(lua51()), "-"], input=harness, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise TestbedError(f"lua5.1 {script.name} failed: {result.stderr.strip()}")
    status, _, message = result.stdout.partition("\t")
    return status, message


def kstatus(objs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(status, message) that kstatus computes for each object, in order."""
    with tempfile.TemporaryDirectory(prefix="pkg-kstatus-") as folder:
        paths = []
        for index, obj in enumerate(objs):
            path = Path(folder) / f"{index}.json"
            path.write_text(json.dumps(obj))
            paths.append(str(path))
        result = subprocess.run(
            [str(ensure("kstatus")), *paths],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if result.returncode != 0:
        raise TestbedError(f"kstatus failed: {result.stderr.strip()}")
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    return [(line[1], line[2] if len(line) > 2 else "") for line in lines]


def recordable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as test data: what health depends on, without server bookkeeping."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace", "generation") if k in meta},
        "spec": obj.get("spec"),
        **({"status": obj["status"]} if "status" in obj else {}),
    }
