"""Sentinel and TLS settings become the one Redis client both processes build.

The client is built without connecting (connections are lazy), so what it will
connect to is read from its pool: the sentinels, the master's name, the user,
password and database of the URL, and TLS with the configured files.
"""

from __future__ import annotations

import os

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from evaluator_sidecar.settings import CommonSettings, SettingsError, load_settings
from evaluator_sidecar.signals.connect import connect_redis

REQUIRED = {"PKG_DATABASE_URL": "postgresql://pkg@db:5432/pkg", "PKG_REDIS_URL": "redis://r:6379/0"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("PKG_"):
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_without_sentinels_the_url_is_used_as_it_is(env: pytest.MonkeyPatch) -> None:
    options = load_settings(CommonSettings).redis_options()
    assert options["sentinels"] == []
    client = connect_redis(**options)
    assert client.connection_pool.connection_kwargs["host"] == "r"


def test_sentinels_name_the_master_and_the_url_gives_the_credentials(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("PKG_REDIS_URL", "rediss://pkg-sidecar:s3cret@ignored:1/3")
    env.setenv("PKG_REDIS_SENTINELS", "sentinel-0:26379, sentinel-1:26380")
    env.setenv("PKG_REDIS_SENTINEL_MASTER", "pkg")
    env.setenv("PKG_REDIS_SENTINEL_PASSWORD", "sentinel-pass")
    env.setenv("PKG_REDIS_TLS_CA_FILE", "/etc/pkg/tls/ca.crt")
    options = load_settings(CommonSettings).redis_options()
    assert options["sentinels"] == [("sentinel-0", 26379), ("sentinel-1", 26380)]
    client = connect_redis(**options, socket_connect_timeout=2)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "pkg"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("pkg-sidecar", "s3cret", 3)
    assert pool.connection_class is SentinelManagedSSLConnection
    assert kwargs["ssl_ca_certs"] == "/etc/pkg/tls/ca.crt"
    manager = pool.sentinel_manager
    assert [s.connection_pool.connection_kwargs["host"] for s in manager.sentinels] == [
        "sentinel-0",
        "sentinel-1",
    ]
    sentinel_kwargs = manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "sentinel-pass"
    assert sentinel_kwargs["socket_connect_timeout"] == 2


@pytest.mark.parametrize("value", ["sentinel-0", "sentinel-0:port", "a:1,,b"])
def test_a_bad_sentinel_list_is_named(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("PKG_REDIS_SENTINELS", value)
    with pytest.raises(SettingsError, match="PKG_REDIS_SENTINELS"):
        load_settings(CommonSettings)


def test_tls_files_need_rediss(env: pytest.MonkeyPatch) -> None:
    env.setenv("PKG_REDIS_TLS_CA_FILE", "/ca.crt")
    with pytest.raises(SettingsError, match=r"PKG_REDIS_TLS_CA_FILE=.*rediss://"):
        load_settings(CommonSettings)


def test_the_sentinel_password_is_not_shown(env: pytest.MonkeyPatch) -> None:
    env.setenv("PKG_REDIS_SENTINEL_PASSWORD", "do-not-print")
    assert "do-not-print" not in repr(load_settings(CommonSettings))
