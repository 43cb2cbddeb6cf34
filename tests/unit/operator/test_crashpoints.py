"""The test-only crash points: off by default, record every hit in order, die at the chosen one."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pkg_operator import crashpoints
from pkg_operator.settings import OperatorSettings


class Writer:
    async def append_audit(self, value: int) -> int:
        return value + 1

    async def get_audit_log(self) -> str:
        return "read"


def test_crash_at_is_a_point_and_a_positive_count() -> None:
    assert crashpoints.parse_crash_at("") is None
    assert crashpoints.parse_crash_at("kube:patch_status:policydeployments:3") == (
        "kube:patch_status:policydeployments",
        3,
    )
    for bad in ("pg:append_audit", "pg:append_audit:0", ":2", "pg:x:-1"):
        with pytest.raises(ValueError, match="<point>:<n>"):
            crashpoints.parse_crash_at(bad)


def test_the_settings_are_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PKG_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("PKG_REDIS_URL", "redis://x")
    settings = OperatorSettings()
    assert (settings.test_crash_at, settings.test_crash_record) == ("", "")
    monkeypatch.setenv("PKG_TEST_CRASH_AT", "pg:append_audit")
    with pytest.raises(ValueError, match="test_crash_at"):
        OperatorSettings()


def test_the_proxy_records_writes_only_in_order(tmp_path: Path) -> None:
    record = tmp_path / "points"
    crashpoints.configure(crash_at="", record=str(record))
    try:
        proxy = crashpoints.CrashingProxy(Writer(), prefix="pg", writes={"append_audit"})

        async def run() -> list[object]:
            return [
                await proxy.append_audit(1),
                await proxy.get_audit_log(),
                await proxy.append_audit(2),
            ]

        assert asyncio.run(run()) == [2, "read", 3]
        assert record.read_text().splitlines() == ["pg:append_audit", "pg:append_audit"]
    finally:
        crashpoints.configure(crash_at="", record="")
    crashpoints.hit("pg:append_audit")  # disarmed: nothing recorded any more
    assert record.read_text().count("\n") == 2


def test_the_process_dies_like_kill_9_at_the_chosen_hit_and_not_before(tmp_path: Path) -> None:
    script = (
        "from pkg_operator import crashpoints\n"
        "crashpoints.configure(crash_at='redis:publish_desired:2', record='')\n"
        "crashpoints.hit('redis:publish_desired')\n"
        "print('after first', flush=True)\n"
        "crashpoints.hit('redis:publish_desired')\n"
        "print('after second', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == crashpoints.CRASH_EXIT_CODE
    assert result.stdout.splitlines() == ["after first"]
