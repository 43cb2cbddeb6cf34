"""The ``wasm`` engine: OPA policies compiled to WebAssembly, evaluated in wasmtime.

Importing this package registers :class:`OpaWasm` as engine ``wasm``; it never
fails for want of wasmtime (the engine then runs as a degraded no-op).

Documented behaviour (ABI, entrypoint, builtins, limits, differences from OPA):
docs/wasm-engine.md.

Modules:

* ``engine``: ``OpaWasm`` (loading, checksum, evaluation); ``backend``: the live
  instance and its rebuild after a failure; ``result``: input and result JSON;
* ``abi``: what an OPA module must export and import (ABI 1.2+), entrypoint choice;
* ``instance``: one store, capped memory, the single ``opa_eval`` call; ``host``:
  what the imports do on the host side;
* ``fastcall``, ``hostfuncs``: the preallocated C-API calls and the public-API baseline;
* ``builtins`` (+ ``gotime``, ``gofmt`` with ``gofmt_operands``, ``gofmt_printer``,
  ``gostrconv``, ``hostlib``, ``values``): host-provided builtins;
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
