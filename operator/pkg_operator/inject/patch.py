"""The injected sidecar and the JSONPatch that adds it to a pod: pure, no I/O.

What a pod asks for comes from its annotations (else labels) under ``pkg.seedcore.io/``;
:func:`read_options` reads them with the operator's defaults and names every bad value,
and :func:`build_patch` returns RFC 6902 operations that add the sidecar as a native
sidecar (an init container with ``restartPolicy: Always``), its cache volume and an
annotation recording what was injected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pkg_operator.api import PREFIX
from pkg_operator.settings import REGION_PATTERN, SECRET_NAME_PATTERN, TARGET_PATTERN

__all__ = [
    "CACHE_MOUNT",
    "CACHE_VOLUME",
    "CONTAINER_NAME",
    "ENV_KEY",
    "INJECTED_KEY",
    "INJECT_KEY",
    "PORT_KEY",
    "REGION_KEY",
    "SECRET_KEY",
    "TARGET_KEY",
    "InjectionConfig",
    "PodOptions",
    "already_injected",
    "build_patch",
    "read_options",
    "sidecar_container",
]

CONTAINER_NAME: Final = "pkg-sidecar"
CACHE_VOLUME: Final = "pkg-sidecar-cache"
CACHE_MOUNT: Final = "/var/cache/pkg"
#: Opt in (``enabled``) or out (``disabled``): a pod annotation.
INJECT_KEY: Final = f"{PREFIX}/inject"
#: Written on injected pods: what the sidecar was configured with (JSON).
INJECTED_KEY: Final = f"{PREFIX}/injected"
ENV_KEY: Final = f"{PREFIX}/env"
TARGET_KEY: Final = f"{PREFIX}/target"
REGION_KEY: Final = f"{PREFIX}/region"
SECRET_KEY: Final = f"{PREFIX}/connection-secret"
PORT_KEY: Final = f"{PREFIX}/port"
ENVS: Final = ("prod", "staging", "dev")
#: The sidecar's user, as the image creates it.
SIDECAR_UID: Final = 10001


@dataclass(frozen=True)
class InjectionConfig:
    """The operator's defaults for every injected sidecar (from PKG_INJECT_*)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    env: str = "prod"
    target: str = "default"
    region: str = "global"
    secret: str = "pkg-sidecar"
    http_port: int = 8080
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    wait_for_snapshot: bool = False
    version: str = ""


@dataclass(frozen=True)
class PodOptions:
    """What one pod's sidecar runs as."""

    env: str
    target: str
    region: str
    secret: str
    http_port: int


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = pod.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = pod.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = _spec(pod)
    found: list[Mapping[str, Any]] = []
    for key in ("initContainers", "containers"):
        found.extend(c for c in spec.get(key) or [] if isinstance(c, Mapping))
    return found


def already_injected(pod: Mapping[str, Any]) -> bool:
    """The pod carries a container named ``pkg-sidecar`` (injected or written by hand)."""
    return any(c.get("name") == CONTAINER_NAME for c in _containers(pod))


def _lookup(pod: Mapping[str, Any], key: str) -> str | None:
    """The pod's annotation ``key``, else its label: labels cannot hold ``edge:door``."""
    meta = _meta(pod)
    for where in ("annotations", "labels"):
        values = meta.get(where) or {}
        if key in values:
            return str(values[key]).strip()
    return None


def read_options(
    pod: Mapping[str, Any], config: InjectionConfig
) -> tuple[PodOptions | None, list[str]]:
    """The pod's options with the defaults filled in, or None and what is wrong."""
    problems: list[str] = []
    env = _lookup(pod, ENV_KEY) or config.env
    if env not in ENVS:
        problems.append(f"{ENV_KEY}={env!r} is not one of {', '.join(ENVS)}")
    target = _lookup(pod, TARGET_KEY) or config.target
    if not re.match(TARGET_PATTERN, target):
        problems.append(
            f"{TARGET_KEY}={target!r} is not a target (letters, digits, '.', '_', '-', "
            "optionally NAME:NAME like edge:door; put a ':' in an annotation, labels refuse it)"
        )
    region = _lookup(pod, REGION_KEY) or config.region
    if not re.match(REGION_PATTERN, region):
        problems.append(
            f"{REGION_KEY}={region!r} is not a region (lower-case letters, digits, '-')"
        )
    secret = _lookup(pod, SECRET_KEY) or config.secret
    if not re.match(SECRET_NAME_PATTERN, secret):
        problems.append(f"{SECRET_KEY}={secret!r} is not a Secret name")
    port_text = _lookup(pod, PORT_KEY)
    port = config.http_port
    if port_text is not None:
        if port_text.isdigit() and 1 <= int(port_text) <= 65535:
            port = int(port_text)
        else:
            problems.append(f"{PORT_KEY}={port_text!r} is not a port (1 to 65535)")
    problems.extend(_conflicts(pod, port, explicit_port=port_text is not None))
    if problems:
        return None, problems
    return PodOptions(env, target, region, secret, port), []


def _conflicts(pod: Mapping[str, Any], port: int, *, explicit_port: bool) -> list[str]:
    problems = []
    spec = _spec(pod)
    if spec.get("hostNetwork"):
        problems.append(
            "the pod uses hostNetwork: its sidecar would share the node's loopback with every "
            f"other such pod; set {INJECT_KEY}: disabled on it"
        )
    for container in _containers(pod):
        ports = {p.get("containerPort") for p in container.get("ports") or []}
        if port in ports:
            hint = "choose another" if explicit_port else "set the annotation"
            problems.append(
                f"container {container.get('name')!r} declares port {port}, where the sidecar "
                f"listens on 127.0.0.1: {hint} {PORT_KEY}: <free port>"
            )
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, Mapping)}
    if CACHE_VOLUME in volumes:
        problems.append(f"the pod already has a volume named {CACHE_VOLUME!r}; rename it")
    return problems


def _probe(url: str, period: int, failures: int) -> dict[str, Any]:
    # The API listens on loopback only, which the kubelet cannot reach: the probe runs
    # inside the container, with the standard library only.
    check = f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"
    return {
        "exec": {"command": ["python3", "-c", check]},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def sidecar_container(options: PodOptions, config: InjectionConfig) -> dict[str, Any]:
    """The ``pkg-sidecar`` container for one pod: a native sidecar (restartPolicy Always)."""
    base = f"http://127.0.0.1:{options.http_port}"
    startup_path = "/readyz" if config.wait_for_snapshot else "/healthz"
    env: list[dict[str, Any]] = [
        {"name": "PKG_ENV", "value": options.env},
        {"name": "PKG_TARGET", "value": options.target},
        {"name": "PKG_REGION", "value": options.region},
        # The pod's final name (generateName is resolved after admission): one device
        # per pod, and a restarted sidecar keeps its cohort.
        {"name": "PKG_DEVICE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PKG_HTTP_HOST", "value": "127.0.0.1"},
        {"name": "PKG_HTTP_PORT", "value": str(options.http_port)},
        {"name": "PKG_CACHE_DIR", "value": f"{CACHE_MOUNT}/snapshots"},
        {"name": "PKG_WASM_CACHE_DIR", "value": f"{CACHE_MOUNT}/wasm"},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["pkg-sidecar"],
        "restartPolicy": "Always",
        "env": env,
        "envFrom": [{"secretRef": {"name": options.secret}}],
        # The application starts once this passes (native sidecars gate the containers
        # after them on their startup probe).
        "startupProbe": _probe(f"{base}{startup_path}", 1, 120),
        "readinessProbe": _probe(f"{base}/readyz", 10, 3),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT}],
    }
    if config.resources:
        container["resources"] = {k: dict(v) for k, v in config.resources.items()}
    return container


def _pointer(token: str) -> str:
    """One JSON Pointer token (RFC 6901): ``~`` and ``/`` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


def build_patch(
    pod: Mapping[str, Any], options: PodOptions, config: InjectionConfig
) -> list[dict[str, Any]]:
    """RFC 6902 operations adding the sidecar (first init container), its cache volume and
    the ``pkg.seedcore.io/injected`` annotation to ``pod``."""
    spec = _spec(pod)
    ops: list[dict[str, Any]] = []
    container = sidecar_container(options, config)
    if spec.get("initContainers"):
        # First: it then runs beside the pod's other init containers as well.
        ops.append({"op": "add", "path": "/spec/initContainers/0", "value": container})
    else:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": [container]})
    volume = {"name": CACHE_VOLUME, "emptyDir": {}}
    if spec.get("volumes"):
        ops.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
    record = json.dumps(
        {
            "version": config.version,
            "env": options.env,
            "target": options.target,
            "region": options.region,
            "secret": options.secret,
            "port": options.http_port,
        },
        sort_keys=True,
    )
    if _meta(pod).get("annotations"):
        path = f"/metadata/annotations/{_pointer(INJECTED_KEY)}"
        ops.append({"op": "add", "path": path, "value": record})
    else:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {INJECTED_KEY: record}})
    return ops
