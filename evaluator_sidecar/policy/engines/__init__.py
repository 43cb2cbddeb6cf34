"""Policy engines and their registry.

An engine turns one snapshot into something that evaluates task facts. The
native engine (``native``) compiles declarative rules; the WASM engine
(``wasm``) runs OPA policies compiled to WebAssembly in wasmtime. Engines
register themselves by name; ``PKGEvaluator`` picks one by ``snapshot.engine``.
"""

from evaluator_sidecar.policy.engines.base import ENGINE_REGISTRY, PolicyEngine, register_engine

__all__ = ["ENGINE_REGISTRY", "PolicyEngine", "register_engine"]
