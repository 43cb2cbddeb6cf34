"""Redis's exception classes for ``except`` clauses, imported on first use.

``import redis.exceptions`` runs ``redis/__init__``, which loads the whole client
(~7.5 MiB and 50-130 ms of a sidecar's start). A standalone sidecar (``pkg serve``,
``PKG_SNAPSHOT_FILE``) never talks to Redis, so the modules it imports name these
classes through this module: an ``except`` clause reads the attribute only when an
exception reaches it.
"""

from __future__ import annotations

import importlib

# The public names are attributes read through __getattr__ (below), not bindings.
__all__: list[str] = []

_NAMES = frozenset({"NoPermissionError", "RedisError", "ResponseError"})


def __getattr__(name: str) -> type[Exception]:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls: type[Exception] = getattr(importlib.import_module("redis.exceptions"), name)
    globals()[name] = cls  # later reads are plain attribute reads
    return cls
