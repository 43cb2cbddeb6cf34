"""kopf's diff base keeps long annotations as their digest, so that it fits beside them.

Found by the chaos scenario input/bad-manifests (tests/chaos/test_bad_input.py): a
PolicyDeployment with a 150 KiB action annotation made kopf copy it into its own
``last-handled-configuration`` annotation; the two together passed the API server's
256 KiB for all annotations, every patch kopf wrote was refused (422), and the object's
status and finalizer were never handled again.
"""

from __future__ import annotations

import json
from typing import Any

import kopf

from pkg_operator.api import ACTION_ANNOTATION, KOPF_PREFIX
from pkg_operator.kopf_config import MAX_KEPT_ANNOTATION_CHARS, DiffBaseStorage

STORAGE = DiffBaseStorage(
    prefix=KOPF_PREFIX, key="last-handled-configuration", ignored_fields=["spec"]
)


def body(annotations: dict[str, str]) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicyDeployment",
        "metadata": {"name": "d", "namespace": "n", "annotations": annotations},
        "spec": {"target": "router"},
    }
    return kopf.Body(raw)


def stored_size(annotations: dict[str, str]) -> int:
    essence = STORAGE.build(body=body(annotations))
    return len(json.dumps(essence))


def test_a_long_annotation_is_kept_as_its_digest() -> None:
    value = '{"a":' * 30_000
    essence = STORAGE.build(body=body({ACTION_ANNOTATION: value}))
    kept = essence["metadata"]["annotations"][ACTION_ANNOTATION]
    assert kept.startswith("sha256:")
    assert kept.endswith("(150000 characters)")
    assert stored_size({ACTION_ANNOTATION: value}) < 1_000


def test_a_changed_long_annotation_still_changes_the_essence() -> None:
    first = STORAGE.build(body=body({ACTION_ANNOTATION: "[" * 100_000}))
    second = STORAGE.build(body=body({ACTION_ANNOTATION: "[" * 100_001}))
    assert first != second


def test_short_annotations_and_the_rest_are_kept_as_they_are() -> None:
    action = json.dumps({"action": "promote", "token": "t-1"})
    short = "x" * MAX_KEPT_ANNOTATION_CHARS
    essence = STORAGE.build(body=body({ACTION_ANNOTATION: action, "team": short}))
    assert essence["metadata"]["annotations"] == {ACTION_ANNOTATION: action, "team": short}
    assert "spec" not in essence


def test_an_object_without_annotations_has_none_in_its_essence() -> None:
    essence = STORAGE.build(body=body({}))
    assert "annotations" not in essence.get("metadata", {})
