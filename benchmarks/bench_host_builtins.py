"""Cost of one host builtin call in the WASM engine, beside OPA's Go evaluator.

For each builtin, a policy calls it once per element of ``input.args`` (N calls in
one evaluation) and a baseline policy does the same walk without the call. The
cost of one call is (least evaluation time - least baseline time) / N. The
engine is measured with operands (scalars, arrays of them) and scalar results
read and written straight in linear memory (``host.DIRECT_VALUES``, the default)
and through the module's own dump and parse, alternating in the same run; OPA Go
with ``opa bench`` on the same policy and input. Prints µs per call and the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits, host  # noqa: E402

N = 200
CASES: dict[str, tuple[str, list[Any]]] = {
    "time.parse_rfc3339_ns": ("time.parse_rfc3339_ns(a)", ["2026-12-04T10:00:00Z"]),
    "time.date": ("time.date(a)", [1767225600000000000]),
    "time.parse_duration_ns": ("time.parse_duration_ns(a)", ["1h30m"]),
    "sprintf": ('sprintf("%s-%d", [a, 1])', ["x"]),
    "strings.any_suffix_match": ('strings.any_suffix_match(a, "com")', ["example.com"]),
    "indexof_n": ('indexof_n(a, "a")', ["banana"]),
    "units.parse_bytes": ("units.parse_bytes(a)", ["10MiB"]),
    "net.cidr_is_valid": ("net.cidr_is_valid(a)", ["10.0.0.0/8"]),
    "crypto.sha256": ("crypto.sha256(a)", ["payload"]),
    "io.jwt.decode": (
        "io.jwt.decode(a)",
        [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        ],
    ),
}


def _policy(expr: str | None) -> str:
    body = f"x := {expr}" if expr else "x := a"
    return f"package b\n\nresult := count([x | some a in input.args; {body}])\n"


def _build(opa: Path, rego: str, tmp: Path, name: str) -> tuple[Path, bytes]:
    path = tmp / f"{name}.rego"
    path.write_text(rego)
    bundle = tmp / f"{name}.tar.gz"
    subprocess.run(
        [str(opa), "build", "-t", "wasm", "-e", "b/result", "-o", str(bundle), str(path)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return path, member.read()


def _engine_ms(engine: OpaWasm, facts: dict[str, Any], direct: bool, rounds: int) -> float:
    host.DIRECT_VALUES = direct
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        engine.query(facts)
        samples.append(time.perf_counter() - t)
    return min(samples) * 1000  # the least disturbed run: the machine is shared


def _opa_ms(opa: Path, rego: Path, input_path: Path) -> float:
    done = subprocess.run(
        [
            str(opa),
            "bench",
            "--format",
            "json",
            "-d",
            str(rego),
            "-i",
            str(input_path),
            "--count",
            "1",
            "data.b.result",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    return float(result["T"]) / float(result["N"]) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tools"))
    from opa_conformance import find_opa  # noqa: PLC0415

    opa = find_opa()
    limits = WasmLimits(deadline_ms=5000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        base_rego, base_wasm = _build(opa, _policy(None), tmp, "base")
        base = OpaWasm.load_from_bytes(
            base_wasm, entrypoint="b/result", cache_dir=None, limits=limits
        )
        for name, (expr, sample) in CASES.items():
            facts = {"args": [sample[0]] * N}
            input_path = tmp / "input.json"
            input_path.write_text(json.dumps(facts))
            rego, wasm = _build(opa, _policy(expr), tmp, name.replace(".", "_"))
            engine = OpaWasm.load_from_bytes(
                wasm, entrypoint="b/result", cache_dir=None, limits=limits
            )
            engine.query(facts)
            before = after = base_ms = 0.0
            for _ in range(3):  # alternate, so that machine noise hits both paths alike
                before += _engine_ms(engine, facts, False, args.rounds)
                after += _engine_ms(engine, facts, True, args.rounds)
                base_ms += _engine_ms(base, facts, True, args.rounds)
            before, after, base_ms = before / 3, after / 3, base_ms / 3
            go = _opa_ms(opa, rego, input_path) - _opa_ms(opa, base_rego, input_path)
            per = [(before - base_ms) / N * 1000, (after - base_ms) / N * 1000, go / N * 1000]
            rows.append((name, *per))
    host.DIRECT_VALUES = True
    head = ("builtin", "dump/parse", "direct µs", "OPA Go µs", "direct/d-p", "direct/Go")
    print(f"{head[0]:26} {head[1]:>10} {head[2]:>9} {head[3]:>10} {head[4]:>13} {head[5]:>9}")
    for name, b, a, g in rows:
        ratio_go = f"{a / g:9.1f}" if g > 0 else f"{'n/a':>9}"
        print(f"{name:26} {b:10.2f} {a:9.2f} {g:10.2f} {a / b:13.2f} {ratio_go}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
