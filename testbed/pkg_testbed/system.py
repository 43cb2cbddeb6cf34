"""Debian packages the test bed needs (PostgreSQL, Redis), installed when missing.

The machine image may already have them; a new machine gets them from Debian's
archive with apt-get, which needs root (or passwordless sudo).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pkg_testbed.procs import TestbedError

__all__ = ["apt_install", "lua51", "postgres_bindir", "redis_server"]


def apt_install(*packages: str) -> None:
    """Install Debian packages, saying exactly what failed and what to do instead."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise TestbedError(
                f"{' '.join(packages)} is missing and this user cannot install it: "
                f"install it (apt-get install {' '.join(packages)}) or run as root"
            )
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"[pkg_testbed] installing {' '.join(packages)} with apt-get ...", file=sys.stderr)
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(
            [*prefix, *argv], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise TestbedError(
                f"{' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )


def postgres_bindir() -> Path:
    """The folder holding initdb and postgres: PATH, then Debian's layout, else install it."""
    for _ in range(2):
        initdb = shutil.which("initdb")
        if initdb and shutil.which("postgres"):
            return Path(os.path.realpath(initdb)).parent
        versions = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda p: int(Path(p).parent.parent.name),
        )
        if versions:
            return Path(versions[-1]).parent
        apt_install("postgresql", "postgresql-client")
    raise TestbedError("PostgreSQL's initdb was not found even after installing it")


def redis_server() -> Path:
    for _ in range(2):
        found = shutil.which("redis-server")
        if found:
            return Path(found)
        apt_install("redis-server")
    raise TestbedError("redis-server was not found even after installing it")


def lua51() -> Path:
    """Lua 5.1, the dialect of Argo CD's health scripts (Debian's lua5.1)."""
    for _ in range(2):
        found = shutil.which("lua5.1")
        if found:
            return Path(found)
        apt_install("lua5.1")
    raise TestbedError("lua5.1 was not found even after installing it")
