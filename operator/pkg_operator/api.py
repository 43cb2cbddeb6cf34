"""The API group's names in one place: group, version, resources, annotations, finalizer.

Everything the operator writes into or reads from Kubernetes objects under its own
name comes from here, so a rename is one edit and a reader finds every name at once.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTION_ANNOTATION",
    "DEPLOYMENTS",
    "FINALIZER",
    "GROUP",
    "KOPF_PREFIX",
    "PREFIX",
    "SNAPSHOTS",
    "VERSION",
]

GROUP: Final = "pkg.seedcore.io"
VERSION: Final = "v1alpha1"
#: (group, version, plural) as kopf's decorators take them.
SNAPSHOTS: Final = (GROUP, VERSION, "policysnapshots")
DEPLOYMENTS: Final = (GROUP, VERSION, "policydeployments")

PREFIX: Final = GROUP
FINALIZER: Final = f"{PREFIX}/finalizer"
#: Where people put a one-time request (promote, abort, ...) as JSON with a token.
ACTION_ANNOTATION: Final = f"{PREFIX}/action"
#: kopf ignores changes to annotations under its own storage prefix, so its
#: bookkeeping gets a sub-prefix of ours and people's actions stay visible to it.
KOPF_PREFIX: Final = f"kopf.{PREFIX}"
