"""Compiled modules: one compile per checksum, and a disk cache that loads only what it wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from wasm_modules import opa_like_wasm

from evaluator_sidecar.policy.engines.wasm import OpaWasm
from evaluator_sidecar.policy.engines.wasm.cache import (
    DEFAULT_MAX_MB,
    DiskCache,
    cache_key,
    clear_memory_cache,
    compiled_module,
    default_cache_dir,
    make_manifest,
    max_bytes_from_env,
    register_disk_cache,
    verify_manifest,
)
from evaluator_sidecar.policy.engines.wasm.runtime import Runtime, get_runtime
from evaluator_sidecar.policy.model import sha256_hex

SHA = "ab" * 32
TAG = "wasmtime-50.0.1-epoch-nomove-speed-v1"
SECRET = b"k" * 32


@pytest.fixture
def runtime() -> Runtime:
    rt = get_runtime()
    assert rt is not None
    return rt


def unique_module(marker: int) -> bytes:
    # Different results make different bytes, so each test compiles its own module.
    return opa_like_wasm(result={"subtasks": [{"name": f"m{marker}"}]})


class TestCacheKey:
    def test_the_key_is_the_module_hash_and_the_compile_tag(self) -> None:
        assert cache_key(SHA, TAG) == f"{SHA}-{TAG}"

    @pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "../" + "a" * 61, ""])
    def test_only_a_lowercase_sha256_is_a_key(self, bad: str) -> None:
        with pytest.raises(ValueError, match="sha256"):
            cache_key(bad, TAG)

    @pytest.mark.parametrize("bad", ["", "a/b", "x" * 101, "v 1"])
    def test_a_tag_cannot_escape_the_directory(self, bad: str) -> None:
        with pytest.raises(ValueError, match="tag"):
            cache_key(SHA, bad)

    def test_the_runtime_tag_names_wasmtime_s_version(self, runtime: Runtime) -> None:
        assert runtime.cache_tag.startswith(f"wasmtime-{runtime.version}-")
        cache_key(SHA, runtime.cache_tag)


class TestCacheDirectory:
    def test_an_explicit_directory_wins(self) -> None:
        env = {"PKG_WASM_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/x"}
        assert default_cache_dir(env) == Path("/srv/cache")

    def test_xdg_cache_home_is_next(self) -> None:
        assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/pkg-operator/wasm")

    def test_the_home_cache_is_the_default(self) -> None:
        assert default_cache_dir({}, home=Path("/h")) == Path("/h/.cache/pkg-operator/wasm")

    @pytest.mark.parametrize("off", ["off", "OFF", "none", "0", "false"])
    def test_the_disk_cache_can_be_turned_off(self, off: str) -> None:
        assert default_cache_dir({"PKG_WASM_CACHE_DIR": off}) is None


class TestSizeBound:
    def test_the_default_is_256_mib(self) -> None:
        assert max_bytes_from_env({}) == DEFAULT_MAX_MB << 20 == 256 << 20

    def test_it_is_set_in_mib(self) -> None:
        assert max_bytes_from_env({"PKG_WASM_CACHE_MAX_MB": "64"}) == 64 << 20

    @pytest.mark.parametrize("bad", ["0", "-1", "1.5", "lots"])
    def test_a_bound_that_is_no_positive_whole_number_is_refused(self, bad: str) -> None:
        with pytest.raises(ValueError, match="PKG_WASM_CACHE_MAX_MB"):
            max_bytes_from_env({"PKG_WASM_CACHE_MAX_MB": bad})


class TestManifest:
    def test_a_manifest_verifies_its_own_bytes(self) -> None:
        manifest = make_manifest(SHA, TAG, b"compiled", SECRET)
        assert verify_manifest(manifest, SHA, TAG, b"compiled", SECRET) is None

    def test_changed_bytes_are_rejected(self) -> None:
        manifest = make_manifest(SHA, TAG, b"compiled", SECRET)
        assert "sha256" in str(verify_manifest(manifest, SHA, TAG, b"compilee", SECRET))
        assert "size" in str(verify_manifest(manifest, SHA, TAG, b"compiled!", SECRET))

    def test_a_manifest_under_another_key_is_rejected(self) -> None:
        manifest = make_manifest(SHA, TAG, b"compiled", b"other key" * 4)
        assert "not authenticated" in str(verify_manifest(manifest, SHA, TAG, b"compiled", SECRET))

    def test_an_edited_manifest_is_rejected(self) -> None:
        manifest = make_manifest(SHA, TAG, b"compiled", SECRET)
        forged = {**manifest, "serialized_sha256": sha256_hex(b"evil"), "serialized_size": 4}
        assert "not authenticated" in str(verify_manifest(forged, SHA, TAG, b"evil", SECRET))

    def test_a_manifest_for_another_module_or_wasmtime_is_rejected(self) -> None:
        manifest = make_manifest(SHA, TAG, b"compiled", SECRET)
        assert "another" in str(verify_manifest(manifest, "cd" * 32, TAG, b"compiled", SECRET))
        assert "another" in str(verify_manifest(manifest, SHA, "wasmtime-51", b"compiled", SECRET))


class TestDiskCache:
    def test_what_it_stored_it_loads(self, tmp_path: Path) -> None:
        cache = DiskCache(tmp_path / "c")
        cache.store(SHA, TAG, b"serialized module")
        assert cache.load(SHA, TAG) == b"serialized module"
        assert DiskCache(tmp_path / "c").load(SHA, TAG) == b"serialized module"  # a new process

    def test_the_directory_and_key_are_private(self, tmp_path: Path) -> None:
        cache = DiskCache(tmp_path / "c")
        cache.store(SHA, TAG, b"x")
        assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "c" / ".hmac-key").stat().st_mode & 0o777 == 0o600

    def test_a_replaced_blob_is_not_loaded(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        cache = DiskCache(tmp_path)
        cache.store(SHA, TAG, b"genuine")
        (tmp_path / f"{SHA}-{TAG}.cwasm").write_bytes(b"planted")
        assert cache.load(SHA, TAG) is None
        assert "rejected" in caplog.text

    def test_a_pair_written_by_someone_without_the_key_is_not_loaded(self, tmp_path: Path) -> None:
        cache = DiskCache(tmp_path)
        cache.store(SHA, TAG, b"genuine")
        forged = make_manifest(SHA, TAG, b"planted", b"a guessed key".ljust(32))
        (tmp_path / f"{SHA}-{TAG}.json").write_text(json.dumps(forged))
        (tmp_path / f"{SHA}-{TAG}.cwasm").write_bytes(b"planted")
        assert cache.load(SHA, TAG) is None

    def test_a_directory_writable_by_others_is_not_used(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        cache = DiskCache(shared)
        cache.store(SHA, TAG, b"x")
        assert cache.load(SHA, TAG) is None
        assert not list(shared.iterdir())
        assert "writable by group or others" in caplog.text

    def test_it_keeps_a_bounded_number_of_entries(self, tmp_path: Path) -> None:
        cache = DiskCache(tmp_path, max_entries=3)
        for i in range(5):
            sha = f"{i:02x}" * 32
            cache.store(sha, TAG, b"x")
            os.utime(tmp_path / f"{sha}-{TAG}.json", (i, i))  # oldest first, whatever the clock
        kept = sorted(p.name[:2] for p in tmp_path.glob("*.json"))
        assert len(kept) == 3
        assert len(list(tmp_path.glob("*.cwasm"))) == 3

    def test_it_keeps_a_bounded_number_of_bytes(self, tmp_path: Path) -> None:
        cache = DiskCache(tmp_path, max_entries=100, max_bytes=2500)
        for i in range(5):
            sha = f"{i:02x}" * 32
            cache.store(sha, TAG, b"x" * 1000)
            os.utime(tmp_path / f"{sha}-{TAG}.json", (i, i))
        kept = sorted(p.name[:2] for p in tmp_path.glob("*.json"))
        assert kept == ["03", "04"]  # the least recently used went first
        assert sum(p.stat().st_size for p in tmp_path.glob("*.cwasm")) <= 2500

    def test_entries_another_process_wrote_count_towards_the_bounds(self, tmp_path: Path) -> None:
        other = DiskCache(tmp_path)
        for i in range(4):
            other.store(f"{i:02x}" * 32, TAG, b"x")
        cache = DiskCache(tmp_path, max_entries=3)
        cache.store("ff" * 32, TAG, b"x")  # its first store scans the directory
        assert len(list(tmp_path.glob("*.json"))) == 3
        assert cache.load("ff" * 32, TAG) == b"x"

    def test_a_reader_sees_an_entry_whole_or_not_at_all_while_writers_race(
        self, tmp_path: Path
    ) -> None:
        writers = [DiskCache(tmp_path) for _ in range(3)]
        reader = DiskCache(tmp_path)
        for round_ in range(20):
            payload = bytes([round_]) * 4096
            for writer in writers:
                writer.store(SHA, TAG, payload)
                assert reader.load(SHA, TAG) == payload

    def test_no_temporary_files_are_left_behind(self, tmp_path: Path) -> None:
        DiskCache(tmp_path).store(SHA, TAG, b"x")
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


class TestCompiledModule:
    def test_a_module_is_compiled_once_per_process(self, runtime: Runtime) -> None:
        wasm = unique_module(1)
        sha = sha256_hex(wasm)
        first, source1 = compiled_module(runtime, wasm, sha, cache_dir=None)
        second, source2 = compiled_module(runtime, wasm, sha, cache_dir=None)
        assert (source1, source2) == ("compiled", "memory")
        assert first is second

    def test_a_new_process_deserializes_what_an_earlier_one_compiled(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        wasm = unique_module(2)
        sha = sha256_hex(wasm)
        _, source = compiled_module(runtime, wasm, sha, cache_dir=tmp_path)
        assert source == "compiled"
        assert (tmp_path / f"{sha}-{runtime.cache_tag}.cwasm").exists()
        clear_memory_cache()  # as a new process starts
        engine = OpaWasm.load_from_bytes(wasm, cache_dir=tmp_path)
        assert engine.compile_source == "disk"
        assert engine.evaluate({})["subtasks"] == [{"name": "m2"}]

    def test_a_registered_directory_keeps_its_own_bounds(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        register_disk_cache(tmp_path, max_entries=1, max_bytes=1 << 30)
        for marker in (4, 5):
            OpaWasm.load_from_bytes(unique_module(marker), cache_dir=tmp_path)
        assert len(list(tmp_path.glob("*.cwasm"))) == 1

    def test_a_tampered_entry_is_recompiled(self, runtime: Runtime, tmp_path: Path) -> None:
        wasm = unique_module(3)
        sha = sha256_hex(wasm)
        compiled_module(runtime, wasm, sha, cache_dir=tmp_path)
        blob = tmp_path / f"{sha}-{runtime.cache_tag}.cwasm"
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        clear_memory_cache()
        engine = OpaWasm.load_from_bytes(wasm, cache_dir=tmp_path)
        assert engine.compile_source == "compiled"
        assert engine.evaluate({})["subtasks"] == [{"name": "m3"}]
