"""The injection webhook's decisions and JSONPatch, on pods as the API server sends them.

Each patch is applied here (RFC 6902 ``add``, the only operation it uses) and the
resulting pod is checked as the kubelet would read it.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from pkg_operator.inject.patch import (
    CACHE_VOLUME,
    INJECTED_KEY,
    InjectionConfig,
    build_patch,
    read_options,
)
from pkg_operator.inject.review import decide, respond

CONFIG = InjectionConfig(
    image="pkg-operator:0.1.0",
    resources={"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
    version="0.1.0",
)


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` (with ``-`` and index insertion), strict about missing parents."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "add", op
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent: Any = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), op["value"])
        else:
            parent[last] = op["value"]
    return doc


def pod(**meta: Any) -> dict[str, Any]:
    spec = meta.pop("spec", None) or {"containers": [{"name": "app", "image": "app:1"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", **meta}, "spec": spec}


def injected(p: dict[str, Any], mode: str = "namespace") -> dict[str, Any]:
    outcome = decide(p, mode, CONFIG)  # type: ignore[arg-type]
    assert outcome.result == "injected", outcome.message
    assert outcome.patch is not None
    return apply_patch(p, outcome.patch)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_pod_in_an_opted_in_namespace_gets_a_native_sidecar_with_defaults() -> None:
    result = injected(pod())
    (sidecar,) = result["spec"]["initContainers"]
    assert sidecar["name"] == "pkg-sidecar"
    assert sidecar["restartPolicy"] == "Always"  # native sidecar: starts first, outlives the app
    assert sidecar["image"] == "pkg-operator:0.1.0"
    env = env_of(sidecar)
    assert env["PKG_ENV"] == "prod"
    assert env["PKG_TARGET"] == "default"
    assert env["PKG_REGION"] == "global"
    assert env["PKG_DEVICE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["PKG_HTTP_HOST"] == "127.0.0.1"
    assert env["PKG_CACHE_DIR"].startswith("/var/cache/pkg/")
    assert sidecar["envFrom"] == [{"secretRef": {"name": "pkg-sidecar"}}]
    assert result["spec"]["volumes"] == [{"name": CACHE_VOLUME, "emptyDir": {}}]
    assert sidecar["volumeMounts"] == [{"name": CACHE_VOLUME, "mountPath": "/var/cache/pkg"}]
    assert result["spec"]["containers"] == [{"name": "app", "image": "app:1"}]
    record = json.loads(result["metadata"]["annotations"][INJECTED_KEY])
    assert record["target"] == "default"
    assert record["version"] == "0.1.0"


def test_the_sidecar_runs_restricted() -> None:
    (sidecar,) = injected(pod())["spec"]["initContainers"]
    assert sidecar["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert sidecar["resources"]["requests"] == {"cpu": "50m", "memory": "96Mi"}
    assert sidecar["resources"]["limits"] == {"memory": "256Mi"}
    probe = sidecar["readinessProbe"]["exec"]["command"]
    assert probe[0] == "python3"
    assert "http://127.0.0.1:8080/readyz" in probe[2]
    assert "http://127.0.0.1:8080/healthz" in sidecar["startupProbe"]["exec"]["command"][2]


def test_waiting_for_a_snapshot_gates_the_application_on_readyz() -> None:
    config = InjectionConfig(image="i", wait_for_snapshot=True)
    options, _ = read_options(pod(), config)
    assert options is not None
    patch = build_patch(pod(), options, config)
    sidecar = patch[0]["value"][0]
    assert "/readyz" in sidecar["startupProbe"]["exec"]["command"][2]


def test_target_and_region_come_from_annotations_before_labels() -> None:
    p = pod(
        labels={"pkg.seedcore.io/target": "router", "pkg.seedcore.io/region": "us-east"},
        annotations={"pkg.seedcore.io/target": "edge:door", "pkg.seedcore.io/env": "staging"},
    )
    result = injected(p)
    env = env_of(result["spec"]["initContainers"][0])
    assert (env["PKG_ENV"], env["PKG_TARGET"], env["PKG_REGION"]) == (
        "staging",
        "edge:door",
        "us-east",
    )
    # Existing annotations are kept; ours is added beside them ("/" escaped as "~1").
    assert result["metadata"]["annotations"]["pkg.seedcore.io/target"] == "edge:door"
    assert INJECTED_KEY in result["metadata"]["annotations"]


def test_the_connection_secret_and_port_can_be_chosen_per_pod() -> None:
    p = pod(
        annotations={
            "pkg.seedcore.io/connection-secret": "tenant-a-pkg",
            "pkg.seedcore.io/port": "9090",
        }
    )
    sidecar = injected(p)["spec"]["initContainers"][0]
    assert sidecar["envFrom"] == [{"secretRef": {"name": "tenant-a-pkg"}}]
    assert env_of(sidecar)["PKG_HTTP_PORT"] == "9090"
    assert "127.0.0.1:9090/readyz" in sidecar["readinessProbe"]["exec"]["command"][2]


def test_existing_init_containers_and_volumes_are_kept_after_the_sidecar() -> None:
    spec = {
        "initContainers": [{"name": "setup", "image": "busybox"}],
        "containers": [{"name": "app", "image": "app:1"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    result = injected(pod(spec=spec))
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["pkg-sidecar", "setup"]
    assert [v["name"] for v in result["spec"]["volumes"]] == ["data", CACHE_VOLUME]


def test_a_pod_that_already_has_the_sidecar_is_left_alone() -> None:
    once = injected(pod())
    again = decide(once, "namespace", CONFIG)
    assert again.result == "skipped"
    assert again.patch is None
    assert "already" in again.message


def test_the_opt_out_annotation_wins_over_the_namespace() -> None:
    outcome = decide(pod(annotations={"pkg.seedcore.io/inject": "disabled"}), "namespace", CONFIG)
    assert outcome.result == "skipped"
    assert outcome.patch is None


def test_other_namespaces_inject_only_annotated_pods() -> None:
    assert decide(pod(), "annotated", CONFIG).result == "skipped"
    assert injected(pod(annotations={"pkg.seedcore.io/inject": "enabled"}), "annotated")


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({"annotations": {"pkg.seedcore.io/inject": "yes-please"}}, "'enabled' or 'disabled'"),
        ({"annotations": {"pkg.seedcore.io/env": "qa"}}, "pkg.seedcore.io/env='qa'"),
        ({"annotations": {"pkg.seedcore.io/region": "EU West"}}, "not a region"),
        ({"annotations": {"pkg.seedcore.io/target": "a:b:c"}}, "not a target"),
        ({"annotations": {"pkg.seedcore.io/port": "80000"}}, "not a port"),
        (
            {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]}},
            "container 'app' declares port 8080",
        ),
        (
            {"spec": {"hostNetwork": True, "containers": [{"name": "app"}]}},
            "hostNetwork",
        ),
    ],
)
def test_a_pod_that_cannot_get_a_sidecar_is_refused_saying_what_to_change(
    meta: dict[str, Any], words: str
) -> None:
    outcome = decide(pod(**meta), "namespace", CONFIG)
    assert outcome.result == "denied"
    assert words in outcome.message
    assert "pkg.seedcore.io/inject: disabled" in outcome.message or "enabled" in outcome.message


def test_every_problem_is_named_at_once() -> None:
    p = pod(annotations={"pkg.seedcore.io/env": "qa", "pkg.seedcore.io/region": "EU"})
    message = decide(p, "namespace", CONFIG).message
    assert "pkg.seedcore.io/env" in message
    assert "pkg.seedcore.io/region" in message


def review(obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": operation,
            "namespace": "shop",
            "object": obj,
        },
    }


def test_the_review_answer_carries_the_uid_and_a_base64_json_patch() -> None:
    answer = respond(review(pod()), "namespace", CONFIG)
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview"
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert apply_patch(pod(), ops)["spec"]["initContainers"][0]["name"] == "pkg-sidecar"


def test_a_refusal_is_a_403_with_the_message() -> None:
    bad = pod(annotations={"pkg.seedcore.io/env": "qa"})
    response = respond(review(bad), "namespace", CONFIG)["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "pkg.seedcore.io/env='qa'" in response["status"]["message"]
    assert "patch" not in response


def test_updates_and_skipped_pods_are_allowed_without_a_patch() -> None:
    for body in (
        review(pod(), "UPDATE"),
        review(pod(annotations={"pkg.seedcore.io/inject": "false"})),
    ):
        response = respond(body, "namespace", CONFIG)["response"]
        assert response["allowed"] is True
        assert "patch" not in response
