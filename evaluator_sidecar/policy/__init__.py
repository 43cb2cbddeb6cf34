"""The policy core: snapshots, the engines and ``PKGEvaluator``, with no I/O of its own.

It owns the snapshot model (``model``), the ``PolicySnapshot`` resource form and its
checksum (``resource``, with ``resource_yaml``, ``resource_schema``,
``resource_checksum``), the evaluator's errors (``errors``), task facts (``facts``),
fixtures (``fixtures``), the engines (``engines``: native rules, OPA WebAssembly, the
reference interpreter) and ``PKGEvaluator`` (``evaluator``).

It may import only itself, the standard library and its pure third-party libraries
(wasmtime, re2, orjson, pydantic, yaml). It knows no server, no database and no
Redis: never asyncpg, redis, kopf, kubernetes, httptools or prometheus_client, and
no other part of ``evaluator_sidecar`` (an import-linter contract holds this).
"""
