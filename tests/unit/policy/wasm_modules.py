"""Tiny hand-written WebAssembly modules that speak OPA's ABI, for the WASM engine's unit tests.

``opa_like`` writes the text of a module with the imports and exports an OPA
policy has, where each part can be changed or left out: so a test can build
exactly the module it needs (an ABI 1.1 module, one that needs ``http.send``,
one whose ``opa_eval`` spins forever) without the opa binary. The functions
are real (a bump allocator, static JSON answers), not stand-ins: the engine
runs them exactly as it runs a policy built by ``opa build``.
"""

from __future__ import annotations

import json
from typing import Any

import wasmtime

__all__ = ["EVAL_BODIES", "opa_like", "opa_like_wasm"]

_HEAP_START = 65536  # the second page; the first holds the static strings

#: opa_eval bodies: each leaves the address of a NUL-terminated JSON result set.
EVAL_BODIES = {
    # the static result at 4096
    "result": "i32.const 4096",
    # never returns: only an epoch deadline stops it
    "loop": "(loop $forever (br $forever)) i32.const 0",
    # grows memory until the cap refuses, then aborts as OPA's allocator does
    "grow": (
        "(block $full (loop $more"
        " (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))"
        " (br $more))) (call $abort (i32.const 3072)) i32.const 0"
    ),
    # aborts with the message at 3584
    "abort": "(call $abort (i32.const 3584)) i32.const 0",
    # a plain wasm trap
    "trap": "unreachable",
    # calls builtin id 0 with no operands and returns the static result
    "builtin0": "(drop (call $builtin0 (i32.const 0) (i32.const 0))) i32.const 4096",
    # returns an address far outside memory
    "wild": "i32.const 0x7ffffff0",
    # recurses without end: wasmtime's stack limit must stop it, not the host's stack
    "recurse": "(call $recurse) i32.const 0",
}


def _wat_string(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else f"\\{ord(c):02x}" for c in text)


def opa_like(
    *,
    entrypoints: dict[str, int] | None = None,
    builtins: dict[str, int] | None = None,
    result: Any = None,
    eval_body: str = "result",
    abi: tuple[int, int] = (1, 3),
    drop_exports: tuple[str, ...] = (),
    extra_imports: str = "",
    eval_signature: str = "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
    memory_import: str = '(import "env" "memory" (memory 2))',
) -> str:
    """The text of a module shaped like an OPA policy; see the module docstring."""
    entry_json = json.dumps({"pkg/result": 0} if entrypoints is None else entrypoints)
    builtin_json = json.dumps(builtins or {})
    result_set = [] if result is None else [{"result": result}]
    exports = {
        "opa_malloc": """(func (export "opa_malloc") (param i32) (result i32) (local $p i32)
            global.get $heap local.set $p
            global.get $heap local.get 0 i32.add global.set $heap
            local.get $p)""",
        # Parsing answers a fixed non-null address: these modules never read what they parse.
        "opa_json_parse": (
            '(func (export "opa_json_parse") (param i32 i32) (result i32) i32.const 8)'
        ),
        "opa_value_parse": (
            '(func (export "opa_value_parse") (param i32 i32) (result i32) i32.const 8)'
        ),
        "opa_json_dump": '(func (export "opa_json_dump") (param i32) (result i32) local.get 0)',
        "opa_value_dump": '(func (export "opa_value_dump") (param i32) (result i32) local.get 0)',
        "opa_heap_ptr_get": '(func (export "opa_heap_ptr_get") (result i32) global.get $heap)',
        "builtins": '(func (export "builtins") (result i32) i32.const 1024)',
        "entrypoints": '(func (export "entrypoints") (result i32) i32.const 2048)',
        "opa_eval": f'(func (export "opa_eval") {eval_signature} {EVAL_BODIES[eval_body]})',
        "opa_wasm_abi_version": (
            f'(global (export "opa_wasm_abi_version") i32 (i32.const {abi[0]}))'
        ),
        "opa_wasm_abi_minor_version": (
            f'(global (export "opa_wasm_abi_minor_version") i32 (i32.const {abi[1]}))'
        ),
    }
    body = "\n  ".join(text for name, text in exports.items() if name not in drop_exports)
    return f"""(module
  (import "env" "opa_abort" (func $abort (param i32)))
  (import "env" "opa_builtin0" (func $builtin0 (param i32 i32) (result i32)))
  {extra_imports}
  {memory_import}
  (global $heap (mut i32) (i32.const {_HEAP_START}))
  (func $recurse (call $recurse))
  (data (i32.const 1024) "{_wat_string(builtin_json)}\\00")
  (data (i32.const 2048) "{_wat_string(entry_json)}\\00")
  (data (i32.const 3072) "opa_malloc: failed\\00")
  (data (i32.const 3584) "var assignment conflict\\00")
  (data (i32.const 4096) "{_wat_string(json.dumps(result_set))}\\00")
  {body}
)"""


def opa_like_wasm(**kwargs: Any) -> bytes:
    """:func:`opa_like`, compiled to binary WebAssembly."""
    return bytes(wasmtime.wat2wasm(opa_like(**kwargs)))
