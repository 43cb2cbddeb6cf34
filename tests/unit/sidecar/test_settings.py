"""Settings come from PKG_ variables, and a bad one is named in one clear paragraph."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator_sidecar.settings import SettingsError, load_settings
from evaluator_sidecar.sidecar.settings import SidecarSettings

REQUIRED = {"PKG_DATABASE_URL": "postgresql://pkg@db:5432/pkg", "PKG_REDIS_URL": "redis://r:6379/0"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(__import__("os").environ):
        if name.startswith("PKG_"):
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


class TestDefaults:
    def test_loopback_and_the_protocol_defaults(self, env: pytest.MonkeyPatch) -> None:
        s = load_settings(SidecarSettings)
        assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
        assert (s.env, s.target, s.region) == ("prod", "default", "global")
        assert s.resync_interval_seconds == 30
        assert s.heartbeat_interval_seconds == 5
        assert s.heartbeat_ttl == 15
        assert s.max_request_bytes == 65536
        assert s.device_id

    def test_values_come_from_prefixed_variables(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        env.setenv("PKG_ENV", "staging")
        env.setenv("PKG_TARGET", "edge:door")
        env.setenv("PKG_DEVICE_ID", "door:D-1510")
        env.setenv("PKG_HTTP_PORT", "9001")
        env.setenv("PKG_CACHE_DIR", str(tmp_path))
        env.setenv("PKG_LOG_LEVEL", "debug")
        env.setenv("PKG_HEARTBEAT_INTERVAL_SECONDS", "0.5")
        s = load_settings(SidecarSettings)
        assert (s.env, s.target, s.device_id, s.http_port) == (
            "staging",
            "edge:door",
            "door:D-1510",
            9001,
        )
        assert s.cache_dir == tmp_path
        assert s.log_level == "DEBUG"
        assert s.heartbeat_ttl == 2


class TestErrors:
    def test_a_missing_required_variable_is_named(self, env: pytest.MonkeyPatch) -> None:
        env.delenv("PKG_REDIS_URL")
        with pytest.raises(SettingsError, match="PKG_REDIS_URL is not set"):
            load_settings(SidecarSettings)

    @pytest.mark.parametrize(
        ("name", "value", "says"),
        [
            ("PKG_HTTP_PORT", "eighty", "PKG_HTTP_PORT='eighty' is not valid"),
            ("PKG_HTTP_PORT", "70000", "less than or equal to 65535"),
            ("PKG_ENV", "production", "PKG_ENV='production' is not valid"),
            ("PKG_DATABASE_URL", "mysql://x", "must start with postgresql://"),
            ("PKG_REDIS_URL", "http://x", "must start with redis://"),
            ("PKG_RESYNC_INTERVAL_SECONDS", "0", "greater than 0"),
        ],
    )
    def test_a_bad_value_is_named_with_what_is_wrong(
        self, env: pytest.MonkeyPatch, name: str, value: str, says: str
    ) -> None:
        env.setenv(name, value)
        with pytest.raises(SettingsError, match=says) as info:
            load_settings(SidecarSettings)
        assert "\n" not in str(info.value)
        assert "Traceback" not in str(info.value)


class TestStandalone:
    """PKG_SNAPSHOT_FILE stands in for PostgreSQL and Redis (the standalone mode)."""

    def test_a_snapshot_file_makes_the_database_and_redis_optional(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        env.delenv("PKG_DATABASE_URL")
        env.delenv("PKG_REDIS_URL")
        env.setenv("PKG_SNAPSHOT_FILE", str(tmp_path / "snapshot.yaml"))
        s = load_settings(SidecarSettings)
        assert s.snapshot_file == tmp_path / "snapshot.yaml"
        assert (s.database_url, s.redis_url) == ("", "")
        assert s.snapshot_poll_seconds == 1

    def test_without_a_file_both_urls_are_required_and_named(self, env: pytest.MonkeyPatch) -> None:
        env.delenv("PKG_DATABASE_URL")
        env.delenv("PKG_REDIS_URL")
        with pytest.raises(SettingsError) as error:
            load_settings(SidecarSettings)
        message = str(error.value)
        assert "PKG_DATABASE_URL and PKG_REDIS_URL are not set" in message
        assert "PKG_SNAPSHOT_FILE" in message

    def test_a_given_url_is_still_checked(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        env.setenv("PKG_SNAPSHOT_FILE", str(tmp_path / "snapshot.yaml"))
        env.setenv("PKG_REDIS_URL", "http://not-redis")
        with pytest.raises(SettingsError, match="PKG_REDIS_URL"):
            load_settings(SidecarSettings)

    def test_command_line_overrides_win_over_the_environment(self, env: pytest.MonkeyPatch) -> None:
        env.setenv("PKG_HTTP_PORT", "9001")
        assert load_settings(SidecarSettings, http_port=9002).http_port == 9002
