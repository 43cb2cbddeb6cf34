"""A standalone sidecar reads and checks its snapshot file once at start, not twice.

Without ``PKG_ENV`` the start reads the file for its environment
(:func:`snapshot_env`); the first activation then takes that very snapshot
instead of parsing and checking the file again (for 1,000 rules that was most of
the start). Later reads parse the file anew.
"""

from __future__ import annotations

from pathlib import Path

from conftest import REFERENCE_SNAPSHOT

from evaluator_sidecar.sidecar import standalone
from evaluator_sidecar.sidecar.standalone import read_snapshot_file, snapshot_env


def test_the_snapshot_read_for_the_environment_is_the_one_activated_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_text(REFERENCE_SNAPSHOT.read_text())
    assert snapshot_env(path) == "dev"
    (kept,) = standalone._read_at_start.values()
    first = read_snapshot_file(path, path.read_bytes())
    assert first is kept  # not parsed and checked a second time
    again = read_snapshot_file(path, path.read_bytes())
    assert again == first
    assert again is not first  # handed over once, then read anew
    assert not standalone._read_at_start


def test_changed_content_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_text(REFERENCE_SNAPSHOT.read_text())
    assert snapshot_env(path) == "dev"
    changed = REFERENCE_SNAPSHOT.read_text().replace('"reference@1.0.0"', '"reference@1.0.1"')
    path.write_text(changed)
    assert read_snapshot_file(path, path.read_bytes()).version == "reference@1.0.1"
