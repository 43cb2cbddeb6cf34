"""kopf's settings under this project's names: storage, finalizer, peering, events.

kopf's bookkeeping lives in ``kopf.pkg.seedcore.io/*`` annotations and the finalizer
``pkg.seedcore.io/finalizer`` (see :mod:`pkg_operator.api`), never under kopf's own
defaults; handlers return nothing, so kopf writes nothing under ``status`` itself.
"""

from __future__ import annotations

import logging

import kopf

from pkg_operator.api import FINALIZER, KOPF_PREFIX
from pkg_operator.settings import OperatorSettings

__all__ = ["configure_kopf"]


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings: our annotation prefix and finalizer, peering, event posting."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # The diff base leaves out spec: a PolicySnapshot's spec is immutable (so its diff is
    # never needed) and can hold thousands of rules or an inline WASM module, far more
    # than the API server's 256 KiB limit for all of an object's annotations.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration", ignored_fields=["spec"]
    )
    settings.peering.clusterwide = True
    settings.peering.mandatory = not ours.standalone
    settings.peering.standalone = ours.standalone
    settings.peering.lifetime = ours.peering_lifetime_seconds
    # Only the operator's explicit events and warnings reach `kubectl describe`.
    settings.posting.level = logging.WARNING
