"""What a sidecar's start imports: only what it needs to answer.

A standalone sidecar (``pkg serve``, ``PKG_SNAPSHOT_FILE``) never talks to Redis,
never checks a signature without a trusted key, and reads scalar settings: redis
(~7.5 MiB), cryptography (~7 MiB) and pydantic-settings (~8.5 MiB) stay unimported
until used (BENCHMARKS.md, "Sidecar footprint"). Checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis.exceptions

from evaluator_sidecar.signals import errors as redis_errors

_PROGRAM = """
import json, sys
import evaluator_sidecar.sidecar.__main__
import evaluator_sidecar.sidecar.standalone
from evaluator_sidecar.settings import load_settings
from evaluator_sidecar.sidecar.settings import SidecarSettings
load_settings(SidecarSettings, snapshot_file="/nonexistent.yaml")
heavy = ("redis", "cryptography", "pydantic_settings", "asyncpg", "wasmtime")
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def test_the_standalone_start_path_imports_no_redis_crypto_or_settings_machinery() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_redis_errors_are_redis_own_classes() -> None:
    assert redis_errors.RedisError is redis.exceptions.RedisError
    assert redis_errors.NoPermissionError is redis.exceptions.NoPermissionError
    assert redis_errors.ResponseError is redis.exceptions.ResponseError
    with pytest.raises(redis_errors.RedisError, match="down"):  # subclasses caught, as before
        raise redis.exceptions.ConnectionError("down")
