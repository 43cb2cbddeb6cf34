"""The sidecar's on-disk cache of the last good snapshots, for a PostgreSQL outage.

Each snapshot the sidecar activated is kept as one JSON file (no pickle: a
file the sidecar reads back can only ever be data), and ``active.json`` names
the one that was active last. Files are written atomically (a temporary file
in the same folder, fsync, rename) and carry the sha256 of their canonical
content, checked on every read: a torn or tampered file is reported and
ignored, never loaded.

Layout under the cache folder::

    snapshots/<sha256(version)[:32]>.json   {"format": 1, "sha256": ..., "snapshot": {...}}
    active.json                             {"format": 1, "sha256": ..., "active": {...}}

The WASM artifact is stored as base64 text inside the snapshot's JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["CachedActive", "SnapshotDiskCache"]

logger = logging.getLogger(__name__)

FORMAT = 1
_FIELDS = {f.name for f in dataclasses.fields(PKGSnapshotData)}


def _digest(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def snapshot_to_dict(snapshot: PKGSnapshotData) -> dict[str, Any]:
    """Every field of the snapshot, JSON-ready (the artifact as base64)."""
    out = {name: getattr(snapshot, name) for name in sorted(_FIELDS)}
    artifact = snapshot.wasm_artifact
    out["wasm_artifact"] = None if artifact is None else base64.b64encode(artifact).decode("ascii")
    return out


def snapshot_from_dict(obj: dict[str, Any]) -> PKGSnapshotData:
    """The inverse of :func:`snapshot_to_dict`; keys this version does not know are ignored."""
    fields = {k: v for k, v in obj.items() if k in _FIELDS}
    artifact = fields.get("wasm_artifact")
    fields["wasm_artifact"] = None if artifact is None else base64.b64decode(artifact)
    return PKGSnapshotData(**fields)


@dataclasses.dataclass(frozen=True)
class CachedActive:
    """The snapshot that was active last, and when the sidecar last confirmed it."""

    snapshot: PKGSnapshotData
    activated_at: float
    epoch: int
    cohort: str


class SnapshotDiskCache:
    """Keeps up to ``keep`` snapshots under ``root``; every method blocks (call it in a thread)."""

    def __init__(self, root: Path, *, keep: int = 5) -> None:
        self.root = root
        self.keep = keep
        self._snapshots = root / "snapshots"
        #: Why the latest ``load``/``load_active`` refused a file that was there (torn,
        #: altered, unreadable); None when it found nothing or loaded it.
        self.last_refusal: str | None = None
        #: Its kind, as ``pkg_activation_failures_total`` counts it.
        self.refusal_reason = "load_error"

    def _path(self, version: str) -> Path:
        name = hashlib.sha256(version.encode()).hexdigest()[:32]
        return self._snapshots / f"{name}.json"

    def _write(self, path: Path, body: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(body))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _read(self, path: Path, key: str) -> Any | None:
        try:
            body = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            self._refuse(f"snapshot cache file {path} cannot be read ({exc})")
            return None
        if not isinstance(body, dict) or body.get("format") != FORMAT or key not in body:
            self._refuse(f"snapshot cache file {path} has an unknown layout")
            return None
        actual = _digest(body[key])
        if actual != body.get("sha256"):
            self._refuse(
                f"snapshot cache file {path} fails its checksum (torn or altered: its content "
                f"hashes to {actual}, the file records {body.get('sha256')})",
                reason="checksum_mismatch",
            )
            return None
        return body[key]

    def _refuse(self, why: str, *, reason: str = "load_error") -> None:
        self.last_refusal, self.refusal_reason = why, reason
        logger.error("%s; ignoring it", why)

    def store(
        self,
        snapshot: PKGSnapshotData,
        *,
        active: bool = True,
        epoch: int = 0,
        cohort: str = "none",
        activated_at: float | None = None,
    ) -> Path:
        """Write the snapshot's file (and, when ``active``, the pointer to it); prune old files."""
        payload = snapshot_to_dict(snapshot)
        path = self._path(snapshot.version)
        self._write(path, {"format": FORMAT, "sha256": _digest(payload), "snapshot": payload})
        if active:
            self.mark_active(snapshot.version, epoch=epoch, cohort=cohort, at=activated_at)
        self._prune(keep_path=path)
        return path

    def mark_active(
        self, version: str, *, epoch: int = 0, cohort: str = "none", at: float | None = None
    ) -> None:
        """Record ``version`` (already stored) as the active one, confirmed at ``at``."""
        stored = self._path(version)
        if stored.exists():
            # Pruning goes by modification time: the active snapshot must look newest.
            os.utime(stored)
        pointer = {
            "version": version,
            "activated_at": time.time() if at is None else at,
            "epoch": epoch,
            "cohort": cohort,
        }
        self._write(
            self.root / "active.json",
            {"format": FORMAT, "sha256": _digest(pointer), "active": pointer},
        )

    def load(self, version: str) -> PKGSnapshotData | None:
        """The cached snapshot of ``version``, or None when absent or not intact."""
        self.last_refusal = None
        payload = self._read(self._path(version), "snapshot")
        if payload is None:
            return None
        try:
            snapshot = snapshot_from_dict(payload)
        except (TypeError, ValueError) as exc:
            self._refuse(f"cached snapshot {version!r} cannot be rebuilt ({exc})")
            return None
        if snapshot.version != version:
            self._refuse(f"cache file for {version!r} holds {snapshot.version!r}")
            return None
        return snapshot

    def load_active(self) -> CachedActive | None:
        """The snapshot that was active last, or None (``last_refusal`` says why, if refused)."""
        self.last_refusal = None
        pointer = self._read(self.root / "active.json", "active")
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
            return None
        snapshot = self.load(pointer["version"])  # sets last_refusal
        if snapshot is None:
            return None
        return CachedActive(
            snapshot=snapshot,
            activated_at=float(pointer.get("activated_at") or 0.0),
            epoch=int(pointer.get("epoch") or 0),
            cohort=str(pointer.get("cohort") or "none"),
        )

    def _prune(self, keep_path: Path) -> None:
        files = sorted(
            self._snapshots.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in files[self.keep :]:
            if old != keep_path:
                old.unlink(missing_ok=True)
