"""kopf's settings under this project's names: storage, finalizer, peering, events.

kopf's bookkeeping lives in ``kopf.pkg.seedcore.io/*`` annotations and the finalizer
``pkg.seedcore.io/finalizer`` (see :mod:`pkg_operator.api`), never under kopf's own
defaults; handlers return nothing, so kopf writes nothing under ``status`` itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from pkg_operator.api import FINALIZER, KOPF_PREFIX
from pkg_operator.settings import OperatorSettings

__all__ = ["MAX_KEPT_ANNOTATION_CHARS", "DiffBaseStorage", "configure_kopf"]

#: Annotations longer than this are kept in the diff base as their digest. kopf copies an
#: object's annotations into its own, and all of them share the API server's 256 KiB: a
#: 150 KiB annotation copied once makes every patch kopf writes fail (422), so the object's
#: status, progress and finalizer were never written again.
MAX_KEPT_ANNOTATION_CHARS = 4096


class DiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base in annotations, with every long annotation value replaced by its
    sha256: a changed value still changes the essence (so update handlers run), and the
    copy stays small."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations: dict[str, Any] = dict(essence.get("metadata", {}).get("annotations", {}))
        for key, value in annotations.items():
            if isinstance(value, str) and len(value) > MAX_KEPT_ANNOTATION_CHARS:
                digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
                annotations[key] = f"sha256:{digest} ({len(value)} characters)"
        if annotations:
            essence["metadata"]["annotations"] = annotations
        return essence


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings: our annotation prefix and finalizer, peering, event posting."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # The diff base leaves out spec: a PolicySnapshot's spec is immutable (so its diff is
    # never needed) and can hold thousands of rules or an inline WASM module, far more
    # than the API server's 256 KiB limit for all of an object's annotations.
    settings.persistence.diffbase_storage = DiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration", ignored_fields=["spec"]
    )
    settings.peering.clusterwide = True
    settings.peering.mandatory = not ours.standalone
    settings.peering.standalone = ours.standalone
    settings.peering.lifetime = ours.peering_lifetime_seconds
    # Only the operator's explicit events and warnings reach `kubectl describe`.
    settings.posting.level = logging.WARNING
