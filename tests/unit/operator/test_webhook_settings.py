"""The webhook's settings: off by default, and what it needs named when it is turned on."""

from __future__ import annotations

import pytest

from pkg_operator.settings import OperatorSettings, SettingsError, load_settings

BASE = {"PKG_DATABASE_URL": "postgresql://u@db/pkg", "PKG_REDIS_URL": "redis://redis:6379/0"}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> OperatorSettings:
    for key, value in {**BASE, **env}.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_the_webhook_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch).webhook_port == 0


def test_turning_it_on_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as info:
        settings(monkeypatch, PKG_WEBHOOK_PORT="9443")
    for name in ("PKG_WEBHOOK_SECRET", "PKG_WEBHOOK_DNS_NAMES", "PKG_INJECT_IMAGE"):
        assert name in str(info.value)


def test_a_complete_webhook_configuration_reads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        PKG_WEBHOOK_PORT="9443",
        PKG_WEBHOOK_SECRET="pkg-system/pkg-operator-webhook-tls",
        PKG_WEBHOOK_DNS_NAMES="pkg-operator-webhook.pkg-system.svc, 127.0.0.1",
        PKG_INJECT_IMAGE="registry.example/pkg-operator:0.1.0",
        PKG_INJECT_RESOURCES='{"requests": {"cpu": "10m"}}',
    )
    assert s.webhook_secret_ref == ("pkg-system", "pkg-operator-webhook-tls")
    assert s.webhook_dns_name_list == ["pkg-operator-webhook.pkg-system.svc", "127.0.0.1"]
    assert s.inject_resources_dict == {"requests": {"cpu": "10m"}}


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PKG_WEBHOOK_CERT_RENEW_BEFORE_SECONDS": "9000000"}, "shorter than"),
        ({"PKG_INJECT_RESOURCES": "{cpu: 1}"}, "not JSON"),
        ({"PKG_INJECT_RESOURCES": '{"cpu": "1"}'}, '{"requests"'),
        ({"PKG_INJECT_TARGET": "a:b:c"}, "PKG_INJECT_TARGET"),
        ({"PKG_INJECT_ENV": "qa"}, "PKG_INJECT_ENV"),
    ],
)
def test_bad_values_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], words: str
) -> None:
    with pytest.raises(SettingsError) as info:
        settings(monkeypatch, **env)
    assert words in str(info.value)
