"""Compiled modules, cached: in the process by checksum, on disk by (sha256, wasmtime, config).

Compiling an OPA module takes ~100 ms; deserializing a compiled one ~0.5 ms.
Each module is compiled once per process (an LRU of :data:`MEMORY_ENTRIES`
modules) and its compiled form is written to a disk cache so the next process
(a restarted sidecar, the operator's next validation run) skips compiling.

Deserializing trusts its bytes completely (they are machine code), so the disk
cache only ever loads files this project wrote:

* the directory must be owned by the current user and not writable by group
  or others (otherwise the disk cache is not used, with one warning);
* a 32-byte key (``.hmac-key``, mode 0600) is created once in the directory;
* each entry is a pair ``<sha256>-<tag>.cwasm`` and ``.json``: the manifest
  names the module's sha256, the tag (wasmtime version and engine config), the
  sha256 and size of the serialized bytes, and an HMAC-SHA256 of all that under
  the key. An entry whose manifest, HMAC, size or hash does not match is
  ignored (and overwritten by a fresh compile);
* files are written to a temporary name, fsynced and renamed: readers see a
  whole file or none.

The directory is ``$PKG_WASM_CACHE_DIR``, else ``$XDG_CACHE_HOME/pkg-operator/wasm``,
else ``~/.cache/pkg-operator/wasm``; ``PKG_WASM_CACHE_DIR=off`` disables the
disk cache. At most :data:`DISK_ENTRIES` entries and ``$PKG_WASM_CACHE_MAX_MB``
MiB (default :data:`DEFAULT_MAX_MB`) are kept: the least recently used are
removed. A tool that compiles thousands of modules (the conformance runner)
registers its own directory and bounds with :func:`register_disk_cache`.
Summarised for operators in docs/wasm-engine.md.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import wasmtime

    from evaluator_sidecar.policy.engines.wasm.runtime import Runtime

__all__ = [
    "DEFAULT_MAX_MB",
    "DISK_ENTRIES",
    "MEMORY_ENTRIES",
    "DiskCache",
    "cache_key",
    "compiled_module",
    "default_cache_dir",
    "make_manifest",
    "max_bytes_from_env",
    "register_disk_cache",
    "verify_manifest",
]

log = logging.getLogger(__name__)

MEMORY_ENTRIES = 16
DISK_ENTRIES = 64
#: A compiled OPA module is ~0.5 MiB: 256 MiB holds the 64 entries with room to spare.
DEFAULT_MAX_MB = 256
#: Stores between two scans of the directory (other processes may have added entries).
_PRUNE_EVERY = 32
_FORMAT = 1
_KEY_FILE = ".hmac-key"
_KEY_BYTES = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9._-]{1,100}")


def default_cache_dir(
    env: Mapping[str, str] | None = None, home: Path | None = None
) -> Path | None:
    """Where compiled modules are cached on disk; None when ``PKG_WASM_CACHE_DIR=off``."""
    source = os.environ if env is None else env
    explicit = source.get("PKG_WASM_CACHE_DIR", "").strip()
    if explicit.lower() in ("off", "none", "0", "false"):
        return None
    if explicit:
        return Path(explicit).expanduser()
    xdg = source.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg) / "pkg-operator" / "wasm"
    return (home or Path.home()) / ".cache" / "pkg-operator" / "wasm"


def max_bytes_from_env(env: Mapping[str, str] | None = None) -> int:
    """The disk cache's size bound in bytes (``PKG_WASM_CACHE_MAX_MB``, default 256)."""
    source = os.environ if env is None else env
    text = source.get("PKG_WASM_CACHE_MAX_MB", "").strip()
    if not text:
        return DEFAULT_MAX_MB << 20
    try:
        megabytes = int(text)
    except ValueError:
        raise ValueError(
            f"PKG_WASM_CACHE_MAX_MB must be a whole number of MiB, got {text!r}"
        ) from None
    if megabytes < 1:
        raise ValueError(f"PKG_WASM_CACHE_MAX_MB must be at least 1, got {megabytes}")
    return megabytes << 20


def cache_key(module_sha256: str, tag: str) -> str:
    """The file stem of one cache entry: the module's sha256 and the compile tag."""
    if not _HEX64.fullmatch(module_sha256):
        raise ValueError(
            f"module_sha256 must be 64 lowercase hex characters, got {module_sha256!r}"
        )
    if not _TAG.fullmatch(tag):
        raise ValueError(f"cache tag {tag!r} must be 1-100 characters of A-Z a-z 0-9 . _ -")
    return f"{module_sha256}-{tag}"


def _mac(secret: bytes, fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(fields), sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def make_manifest(module_sha256: str, tag: str, serialized: bytes, secret: bytes) -> dict[str, Any]:
    """The manifest written beside a serialized module, authenticated with ``secret``."""
    fields: dict[str, Any] = {
        "format": _FORMAT,
        "module_sha256": module_sha256,
        "tag": tag,
        "serialized_sha256": hashlib.sha256(serialized).hexdigest(),
        "serialized_size": len(serialized),
    }
    return {**fields, "mac": _mac(secret, fields)}


def verify_manifest(
    manifest: Mapping[str, Any], module_sha256: str, tag: str, serialized: bytes, secret: bytes
) -> str | None:
    """None when ``serialized`` is what this project wrote for (sha256, tag); else what is wrong."""
    fields = {k: v for k, v in manifest.items() if k != "mac"}
    mac = manifest.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(secret, fields)):
        return "manifest not authenticated by this cache's key"
    if fields.get("format") != _FORMAT:
        return f"manifest format {fields.get('format')!r} is not {_FORMAT}"
    if fields.get("module_sha256") != module_sha256 or fields.get("tag") != tag:
        return "manifest is for another module or another wasmtime/configuration"
    if fields.get("serialized_size") != len(serialized):
        return "serialized module has the wrong size"
    if fields.get("serialized_sha256") != hashlib.sha256(serialized).hexdigest():
        return "serialized module does not match its manifest's sha256"
    return None


def _atomic_write(directory: Path, name: str, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class DiskCache:
    """Serialized compiled modules in one directory, authenticated by a key kept beside them."""

    def __init__(
        self,
        directory: Path,
        *,
        max_entries: int = DISK_ENTRIES,
        max_bytes: int = DEFAULT_MAX_MB << 20,
    ) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        #: Entries and bytes seen at the last scan plus what this process stored since.
        self._entries: int | None = None
        self._bytes = 0
        self._stores_since_scan = 0
        self._secret: bytes | None = None
        self._unusable: str | None = None
        self._warned = False
        self._lock = threading.Lock()

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("wasm compile cache %s not used: %s", self.directory, message)

    def _prepare(self) -> bytes | None:
        """The key, after checking the directory; None (and one warning) when unusable."""
        if self._secret is not None:
            return self._secret
        if self._unusable is not None:
            return None
        with self._lock:
            if self._secret is not None:
                return self._secret
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                st = self.directory.stat()
                if st.st_uid != os.getuid():
                    raise PermissionError(
                        f"owned by uid {st.st_uid}, not by this user ({os.getuid()})"
                    )
                if st.st_mode & 0o022:
                    raise PermissionError(
                        f"writable by group or others (mode {st.st_mode & 0o777:o}); chmod 700 it"
                    )
                self._secret = self._load_or_create_key()
            except OSError as exc:
                self._unusable = str(exc)
                self._warn_once(str(exc))
                return None
            return self._secret

    def _load_or_create_key(self) -> bytes:
        path = self.directory / _KEY_FILE
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-key-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(os.urandom(_KEY_BYTES))
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(
                    FileExistsError
                ):  # another process made it first: use theirs
                    os.link(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(f"{path} must be owned by this user with mode 600")
        secret = path.read_bytes()
        if len(secret) != _KEY_BYTES:
            raise PermissionError(
                f"{path} is not a {_KEY_BYTES}-byte key; delete it to make a new one"
            )
        return secret

    def load(self, module_sha256: str, tag: str) -> bytes | None:
        """The serialized module this project wrote for (sha256, tag), or None."""
        secret = self._prepare()
        if secret is None:
            return None
        stem = cache_key(module_sha256, tag)
        manifest_path = self.directory / f"{stem}.json"
        blob_path = self.directory / f"{stem}.cwasm"
        try:
            manifest = json.loads(manifest_path.read_bytes())
            serialized = blob_path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("wasm compile cache entry %s unreadable (%s); recompiling", stem, exc)
            return None
        problem = (
            verify_manifest(manifest, module_sha256, tag, serialized, secret)
            if isinstance(manifest, dict)
            else ("manifest is not an object")
        )
        if problem:
            log.warning("wasm compile cache entry %s rejected: %s; recompiling", stem, problem)
            return None
        with contextlib.suppress(OSError):
            os.utime(manifest_path)
        return serialized

    def store(self, module_sha256: str, tag: str, serialized: bytes) -> None:
        """Write an entry (blob first, then its manifest); failures are logged, never raised."""
        secret = self._prepare()
        if secret is None:
            return
        stem = cache_key(module_sha256, tag)
        try:
            _atomic_write(self.directory, f"{stem}.cwasm", serialized)
            manifest = make_manifest(module_sha256, tag, serialized, secret)
            _atomic_write(
                self.directory, f"{stem}.json", json.dumps(manifest, sort_keys=True).encode()
            )
            self._after_store(len(serialized))
        except OSError as exc:
            log.warning(
                "wasm compile cache: cannot write %s (%s); continuing without it", stem, exc
            )

    def _after_store(self, size: int) -> None:
        """Prune when over a bound; scanning the directory only every so often.

        Scanning stats every entry; a process storing thousands of modules (the
        conformance runner) would otherwise scan per store. Between scans the
        counts are this process's estimate; other processes' entries are found
        at the next scan (the bounds hold up to that slack).
        """
        self._stores_since_scan += 1
        if self._entries is not None:
            self._entries += 1
            self._bytes += size
        if (
            self._entries is None
            or self._entries > self.max_entries
            or self._bytes > self.max_bytes
            or self._stores_since_scan >= _PRUNE_EVERY
        ):
            self._prune()

    def _prune(self) -> None:
        """Remove least recently used entries until both bounds hold."""
        self._stores_since_scan = 0
        entries = []
        for manifest in self.directory.glob("*.json"):
            try:
                used = manifest.stat().st_mtime
                size = manifest.with_suffix(".cwasm").stat().st_size
            except OSError:
                continue  # removed by another process meanwhile, or half written
            entries.append((used, size, manifest))
        entries.sort(key=lambda e: e[0])
        total = sum(size for _used, size, _m in entries)
        count = len(entries)
        for _used, size, manifest in entries:
            if count <= self.max_entries and total <= self.max_bytes:
                break
            for path in (manifest, manifest.with_suffix(".cwasm")):
                with contextlib.suppress(OSError):
                    path.unlink()
            count -= 1
            total -= size
        self._entries, self._bytes = count, total


# -- the process's caches ------------------------------------------------------------------
_memory_lock = threading.Lock()
_memory: OrderedDict[str, wasmtime.Module] = OrderedDict()
_disk: dict[Path, DiskCache] = {}
# Free the compiled modules while wasmtime's own module is still intact: left to the
# interpreter's final teardown, their finalizers find wasmtime's functions already gone
# and print a TypeError per module at exit.
atexit.register(_memory.clear)


def _disk_cache(directory: Path | None) -> DiskCache | None:
    if directory is None:
        return None
    with _memory_lock:
        cache = _disk.get(directory)
        if cache is None:
            try:
                max_bytes = max_bytes_from_env()
            except ValueError as exc:
                log.warning("%s; using %d MiB", exc, DEFAULT_MAX_MB)
                max_bytes = DEFAULT_MAX_MB << 20
            cache = _disk[directory] = DiskCache(directory, max_bytes=max_bytes)
        return cache


def register_disk_cache(directory: Path, *, max_entries: int, max_bytes: int) -> DiskCache:
    """Use ``directory`` with these bounds whenever a load names it as its ``cache_dir``."""
    with _memory_lock:
        cache = _disk[directory] = DiskCache(
            directory, max_entries=max_entries, max_bytes=max_bytes
        )
        return cache


def compiled_module(
    rt: Runtime, wasm_bytes: bytes, module_sha256: str, *, cache_dir: Path | str | None = "default"
) -> tuple[wasmtime.Module, str]:
    """The compiled module for these bytes, and where it came from: memory, disk or compiled.

    Raises ``wasmtime.WasmtimeError`` when the bytes are not a valid module.
    """
    tag = rt.cache_tag
    key = f"{module_sha256}-{tag}"
    with _memory_lock:
        module = _memory.get(key)
        if module is not None:
            _memory.move_to_end(key)
            return module, "memory"
    directory = default_cache_dir() if cache_dir == "default" else cache_dir
    disk = _disk_cache(Path(directory) if isinstance(directory, (str, Path)) else None)
    source = "compiled"
    module = None
    if disk is not None:
        serialized = disk.load(module_sha256, tag)
        if serialized is not None:
            try:
                module = rt.wasmtime.Module.deserialize(rt.engine, serialized)
                source = "disk"
            except rt.wasmtime.WasmtimeError as exc:
                log.warning(
                    "wasm compile cache entry for %s did not deserialize (%s); recompiling",
                    module_sha256,
                    exc,
                )
    if module is None:
        module = rt.wasmtime.Module(rt.engine, wasm_bytes)
        if disk is not None:
            disk.store(module_sha256, tag, bytes(module.serialize()))
    with _memory_lock:
        _memory[key] = module
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return module, source


def clear_memory_cache() -> None:
    """Forget the process's compiled modules (tests use it to exercise the disk cache)."""
    with _memory_lock:
        _memory.clear()
