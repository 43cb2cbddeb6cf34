"""The ``wasm`` engine: OPA policies compiled to WebAssembly, evaluated in wasmtime.

Importing this package registers :class:`OpaWasm` as engine ``wasm``; it never
fails for want of wasmtime (the engine then runs as a degraded no-op).

A snapshot's entrypoint is ``spec.wasm.entrypoint``; without one the engine
evaluates :data:`DEFAULT_ENTRYPOINT` (``pkg/result``: ``package pkg``, rule
``result``, built with ``opa build -t wasm -e pkg/result``), or the module's
only entrypoint. The entrypoint receives the task facts as ``input`` and
returns ``{"subtasks", "dag", "rules"}`` in the seed's shapes; the snapshot's
``data`` is OPA's ``data``. Limits: ``limits.WasmLimits`` (50 ms, 32 MiB by
default; ``PKG_WASM_DEADLINE_MS``, ``PKG_WASM_MAX_MEMORY_PAGES``).

Modules:

* ``engine``: ``OpaWasm`` (loading, checksum, evaluation, rebuild after failure);
* ``abi``: what an OPA module must export and import (ABI 1.2+), entrypoint choice;
* ``instance``: one store, capped memory, host imports, the single ``opa_eval`` call;
* ``fastcall``: the preallocated C-API call and the public-API baseline;
* ``builtins`` (+ ``gotime``, ``gofmt``, ``hostlib``, ``values``): host-provided builtins;
* ``cache``: compiled modules by checksum, in memory and on disk (authenticated);
* ``limits``, ``ticker``: the per-call deadline and memory cap, the epoch ticker;
* ``runtime``: the one wasmtime import, the process's Engine;
* ``fallback``: the no-op used when wasmtime is unavailable;
* ``interpreter``: the native rule form as ``data`` for the reference Rego policy.
"""

from evaluator_sidecar.policy.engines.base import register_engine
from evaluator_sidecar.policy.engines.wasm.abi import DEFAULT_ENTRYPOINT
from evaluator_sidecar.policy.engines.wasm.engine import OpaWasm
from evaluator_sidecar.policy.engines.wasm.limits import WasmLimits

__all__ = ["DEFAULT_ENTRYPOINT", "OpaWasm", "WasmLimits"]

register_engine("wasm", OpaWasm)
