"""Typed settings from environment variables with the prefix ``PKG_``, validated at start.

:class:`CommonSettings` holds what the sidecar and the operator share;
:class:`evaluator_sidecar.sidecar.settings.SidecarSettings` adds the sidecar's own
(its module lists them) and ``pkg_operator.settings.OperatorSettings`` the operator's.
:func:`load_settings` turns a validation failure into one paragraph naming each bad
variable (no traceback).

Shared variables:

| variable | default | meaning |
| --- | --- | --- |
| ``PKG_DATABASE_URL`` | (required) | PostgreSQL DSN, ``postgresql://user:pass@host:port/db`` |
| ``PKG_REDIS_URL`` | (required) | Redis URL, ``redis://host:port/db`` |
| ``PKG_REDIS_SENTINELS`` | (none) | ``host:port,...`` of Sentinels: use the master they name |
| ``PKG_REDIS_SENTINEL_MASTER`` | ``mymaster`` | the master's name in Sentinel |
| ``PKG_REDIS_SENTINEL_PASSWORD`` | (none) | password of the sentinels (``requirepass``) |
| ``PKG_REDIS_TLS_CA_FILE`` | (none) | CA bundle that verifies Redis's certificate (``rediss://``) |
| ``PKG_REDIS_TLS_CERT_FILE`` | (none) | client certificate for Redis (mutual TLS) |
| ``PKG_REDIS_TLS_KEY_FILE`` | (none) | the client certificate's key |
| ``PKG_LOG_LEVEL`` | ``INFO`` | ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` |
| ``PKG_LOG_FORMAT`` | ``json`` | ``json`` (one object per line) or ``text`` |
| ``PKG_REQUIRE_SIGNATURES`` | (none) | envs needing signatures (``prod,staging``; ``true``: all) |
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

__all__ = ["CommonSettings", "SettingsError", "load_settings"]

PREFIX = "PKG_"


class SettingsError(Exception):
    """The environment does not describe a runnable process; the message names the variable."""


def _from_environment(fields: Any) -> dict[str, str]:
    """``{field: text}`` of the ``PKG_<FIELD>`` variables set (names in any case)."""
    found = {name.upper(): value for name, value in os.environ.items()}
    return {name: found[PREFIX + name.upper()] for name in fields if PREFIX + name.upper() in found}


class CommonSettings(BaseModel):
    """The variables the sidecar and the operator share.

    Read from the environment on construction (keyword arguments win), as
    pydantic-settings' ``BaseSettings`` reads them, without importing it: every
    variable is a scalar, and pydantic-settings cost the sidecar ~8 MiB and ~40 ms
    of its start.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self).model_fields), **values})

    database_url: str = Field(min_length=1)
    redis_url: str = Field(min_length=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    require_signatures: str = ""
    # Sentinel and TLS (evaluator_sidecar.signals.connect builds the client from these).
    redis_sentinels: str = Field(
        default="", pattern=r"^$|^\s*[^\s,:]+:\d+\s*(,\s*[^\s,:]+:\d+\s*)*$"
    )
    redis_sentinel_master: str = Field(default="mymaster", min_length=1)
    redis_sentinel_password: str = Field(default="", repr=False)
    redis_tls_ca_file: str = ""
    redis_tls_cert_file: str = ""
    redis_tls_key_file: str = ""

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments of ``evaluator_sidecar.signals.connect.connect_redis``."""
        sentinels = [
            (host, int(port))
            for host, port in re.findall(r"([^\s,:]+):(\d+)", self.redis_sentinels)
        ]
        return {
            "url": self.redis_url,
            "sentinels": sentinels,
            "master_name": self.redis_sentinel_master,
            "sentinel_password": self.redis_sentinel_password,
            "tls_ca_file": self.redis_tls_ca_file,
            "tls_cert_file": self.redis_tls_cert_file,
            "tls_key_file": self.redis_tls_key_file,
        }

    def signatures_required_in(self, env: str) -> bool:
        """Whether ``PKG_REQUIRE_SIGNATURES`` requires signed snapshots in ``env``."""
        names = {part.strip().lower() for part in self.require_signatures.split(",")}
        return bool(names & {"true", "all", "*"}) or env.lower() in names

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if not value:
            return value  # required or not: the field's own constraint says (min_length)
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must start with postgresql:// (for example postgresql://pkg@db:5432/pkg)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value:
            return value  # required or not: the field's own constraint says (min_length)
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "must start with redis://, rediss:// or unix:// (for example redis://redis:6379/0)"
            )
        return value

    @field_validator("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
    @classmethod
    def _tls_needs_rediss(cls, value: str, info: ValidationInfo) -> str:
        url = str(info.data.get("redis_url") or "")
        if value and url and not url.startswith("rediss://"):
            raise ValueError("is set, but PKG_REDIS_URL is not rediss:// (TLS): use rediss://")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


S = TypeVar("S", bound=BaseModel)


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        if not error["loc"]:  # a rule over several variables: its message names them
            parts.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        field = str(error["loc"][0])
        variable = PREFIX + field.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"{variable} is not set (it is required)")
        else:
            parts.append(f"{variable}={error.get('input')!r} is not valid: {message}")
    return (
        "The configuration from the environment is not valid: "
        + "; ".join(parts)
        + ". Set these variables and start again (the module evaluator_sidecar.settings "
        "lists every PKG_ variable with its default)."
    )


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment (``overrides``, e.g. from command-line options, win);
    raise :class:`SettingsError` naming each bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None
