"""Helpers the end-to-end and chaos tests share: the cluster handle, polling, conditions."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.product import kubectl

__all__ = ["Cluster", "condition", "snapshot_doc", "wait_for"]


@dataclass
class Cluster:
    kube: KubeControlPlane
    database_url: str
    redis_url: str
    workdir: Path

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(
            self.kube.kubectl_bin, self.kube.kubeconfig, *args, stdin=stdin, check=check
        ).stdout

    def kubectl_result(self, *args: str, stdin: str | None = None) -> Any:
        return kubectl(self.kube.kubectl_bin, self.kube.kubeconfig, *args, stdin=stdin, check=False)

    def apply(self, namespace: str, document: str) -> str:
        """``kubectl apply -n NAMESPACE -f -`` of a YAML document."""
        return self.kubectl("apply", "-n", namespace, "-f", "-", stdin=document)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        data = json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json"))
        assert isinstance(data, dict)
        return data

    def operator_env(self, **extra: str) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "PKG_DATABASE_URL": self.database_url,
            "PKG_REDIS_URL": self.redis_url,
            "PKG_ROLLOUT_INTERVAL_SECONDS": "0.5",
            "PKG_LOG_LEVEL": "DEBUG" if os.environ.get("PKG_E2E_DEBUG") else "INFO",
            **extra,
        }


def wait_for(check: Callable[[], Any], *, timeout: float = 60, what: str) -> Any:
    """Poll until ``check()`` returns something truthy; fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def snapshot_doc(
    name: str,
    version: str,
    *,
    env: str = "prod",
    expect: str = "escalate_vip",
    checksum: str | None = None,
    auto: bool = False,
) -> str:
    spec: dict[str, Any] = {
        "version": version,
        "env": env,
        "engine": "native",
        "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low"}}],
        "rules": [
            {
                "rule_id": "rule-001",
                "rule_name": "high_priority_vip",
                "priority": 10,
                "conditions": [
                    {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}
                ],
                "emissions": [
                    {
                        "subtask_type": "escalate",
                        "subtask_name": "escalate_vip",
                        "params": {"level": "high"},
                    }
                ],
            }
        ],
        "fixtures": [{"name": "vip", "input": {"tags": ["vip"]}, "expect": {"subtasks": [expect]}}],
    }
    if checksum:
        spec["checksum"] = checksum
    if auto:
        spec["autoPromote"] = True
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": spec,
        }
    )
