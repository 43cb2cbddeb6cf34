"""The sidecar's signature check before activation, with keys from a mounted folder.

``PKG_TRUSTED_KEYS_DIR`` is a folder of public keys, one file per key id (``ID`` or
``ID.pub``; dot files and ``*.key`` are skipped): the ConfigMap or Secret of trusted
keys mounted as a volume. The folder is re-read whenever a file in it changed (the
kubelet swaps a mounted ConfigMap's files when it is updated), so a rotated key is
trusted without a restart. ``PKG_REQUIRE_SIGNATURES`` decides whether the sidecar's
environment requires signatures.

The signature comes from PostgreSQL with the snapshot (``pkg_snapshots.metadata``),
so a row written there by hand cannot be activated where signatures are required.
The decision is :func:`evaluator_sidecar.policy.signing.refusal`, as in the operator.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event
from evaluator_sidecar.sidecar.snapshots import ActivationError

__all__ = ["KeyFolder", "SignatureCheck"]

logger = logging.getLogger(MANAGER_LOGGER)

#: ActivationError reasons (metrics label, logs) by outcome.
_REASONS = {
    signing.Outcome.UNSIGNED: "signature_required",
    signing.Outcome.UNKNOWN_KEY: "unknown_signing_key",
    signing.Outcome.BAD_SIGNATURE: "signature_invalid",
}


class KeyFolder:
    """The trusted keys in a folder, re-read when its files change. Blocking: use a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._store = signing.TrustStore()

    def _files(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.root))
        except OSError:
            return []
        return [
            self.root / name
            for name in names
            if not name.startswith(".")
            and not name.endswith(".key")
            and (self.root / name).is_file()
        ]

    def store(self) -> signing.TrustStore:
        with self._lock:
            files = self._files()
            seen = []
            for path in files:
                try:
                    st = path.stat()
                except OSError:
                    continue
                seen.append((path.name, st.st_mtime_ns, st.st_size))
            fingerprint = tuple(seen)
            if fingerprint == self._seen:
                return self._store
            texts: dict[str, bytes] = {}
            for path in files:
                try:
                    texts[path.name] = path.read_bytes()
                except OSError as exc:
                    logger.warning("cannot read trusted key %s: %s", path, exc)
            store, problems = signing.TrustStore.from_texts(texts)
            for problem in problems:
                logger.warning(
                    "trusted keys in %s: %s; that key is not trusted", self.root, problem
                )
            log_event(
                logger, logging.INFO, "trusted_keys_loaded", dir=str(self.root), keys=store.key_ids
            )
            self._seen, self._store = fingerprint, store
            return store


class SignatureCheck:
    """Refuses to activate a snapshot whose signature the sidecar's settings do not accept."""

    def __init__(self, *, required: bool, keys: KeyFolder | None) -> None:
        self.required = required
        self.keys = keys

    def check(self, snapshot: PKGSnapshotData) -> signing.Verification | None:
        """Raise ActivationError when refused; the verification (None when not checked)."""
        if snapshot.signature is None and not self.required:
            return None
        store = self.keys.store() if self.keys is not None else signing.TrustStore()
        result = signing.verify(
            snapshot.signature,
            store,
            version=snapshot.version,
            env=snapshot.env,
            checksum=str(snapshot.checksum),
        )
        refused = signing.refusal(result, required=self.required)
        if refused is not None:
            message = f"{refused.reason}: {refused.message}"
            if self.keys is None and result.outcome is signing.Outcome.UNKNOWN_KEY:
                message += " (no trusted keys: set PKG_TRUSTED_KEYS_DIR on the sidecar)"
            raise ActivationError(
                snapshot.version,
                _REASONS[result.outcome],
                message,
                # A key can be added to the mounted folder; the other refusals need a new row.
                transient=result.outcome is signing.Outcome.UNKNOWN_KEY,
            )
        return result
