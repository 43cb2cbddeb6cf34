"""The operator's trusted signing keys: read from a ConfigMap or Secret, cached briefly.

``PKG_TRUSTED_KEYS`` names ``namespace/name`` of a ConfigMap (or, when there is no
ConfigMap of that name, a Secret) whose keys are key ids (``ID`` or ``ID.pub``) and
whose values are public keys (PEM, or base64 of the 32 raw bytes). It is re-read at
most every :data:`CACHE_SECONDS`, so adding a key (rotation) takes effect without a
restart. Verifying a snapshot is :func:`evaluator_sidecar.policy.signing.verify`.
"""

from __future__ import annotations

import logging
import time

from evaluator_sidecar.policy.signing import TrustStore
from pkg_operator import kube

__all__ = ["CACHE_SECONDS", "KubeError", "trusted_keys"]

log = logging.getLogger(__name__)

#: How long one read of the trusted keys is reused.
CACHE_SECONDS = 5.0

KubeError = kube.KubeError

_cache: dict[tuple[str, str], tuple[float, TrustStore]] = {}


async def trusted_keys(ref: tuple[str, str] | None) -> TrustStore:
    """The trusted keys named by ``ref`` (empty when None); KubeError when unreadable."""
    if ref is None:
        return TrustStore()
    now = time.monotonic()
    cached = _cache.get(ref)
    if cached is not None and cached[0] > now:
        return cached[1]
    texts = await kube.read_trusted_keys(*ref)
    store, problems = TrustStore.from_texts(texts)
    for problem in problems:
        log.warning("trusted keys %s/%s: %s; that key is not trusted", *ref, problem)
    _cache[ref] = (now + CACHE_SECONDS, store)
    return store
