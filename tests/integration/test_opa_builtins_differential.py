"""The host builtins added for OPA compatibility give what ``opa eval`` gives, on generated inputs.

One Rego policy calls each builtin on every argument list found under its name in
``input``; it runs through ``opa eval`` (OPA's Go evaluator) and, built with
``opa build -t wasm``, through the WASM engine. Each call's value, or its
absence when the call is undefined, must be equal (numbers numerically, sets in
OPA's sorted order). Inputs are curated edge cases plus seeded random ones.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import hmac
import json
import random
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

Gen = Callable[[random.Random], list[Any]]


def _units(rng: random.Random) -> list[Any]:
    num = rng.choice(["1", "10", "0.5", "1.1", "2.25", "1e3", "1.5e-3", ".5", "3.", "007", ""])
    unit = rng.choice(["", "k", "K", "m", "M", "Mi", "mi", "KI", "G", "gb", "GiB", "e", "x", "b"])
    return [num + unit]


def _cidr(rng: random.Random) -> str:
    if rng.random() < 0.7:
        octets = [rng.choice([10, 192, 172, 0, 255]), rng.randrange(256), rng.randrange(4), 0]
        return ".".join(map(str, octets)) + f"/{rng.choice([8, 16, 23, 24, 25, 32])}"
    return f"2001:db8:{rng.randrange(4):x}::/{rng.choice([32, 48, 64, 128])}"


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"10.{rng.randrange(3)}.{rng.randrange(4)}.{rng.randrange(256)}"
    return f"2001:db8:{rng.randrange(4):x}::{rng.randrange(65536):x}"


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(6 if depth < 2 else 3)
    if kind == 0:
        return rng.choice([1, 2, 1.0, "a", True, None])
    if kind == 1:
        return rng.choice(["a", "b", "c"])
    if kind == 2:
        return rng.randrange(3)
    if kind == 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice("abc"): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _subset(rng: random.Random) -> list[Any]:
    sup = _value(rng)
    if isinstance(sup, dict) and sup and rng.random() < 0.6:
        keys = rng.sample(sorted(sup), rng.randrange(len(sup) + 1))
        return [sup, {k: sup[k] for k in keys}]
    if isinstance(sup, list) and sup and rng.random() < 0.6:
        i = rng.randrange(len(sup))
        return [sup, sup[i : i + rng.randrange(1, 3)]]
    return [sup, _value(rng)]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(rng: random.Random, secret: str = "s3cret") -> str:
    header = {"alg": rng.choice(["HS256", "HS256", "none"]), "typ": "JWT"}
    if rng.random() < 0.2:
        header["crit"] = ["x"]
        header["x"] = 1
    claims: dict[str, Any] = {"sub": rng.choice(["a", "b"]), "n": rng.choice([1, 2.5, "x"])}
    for claim in ("exp", "nbf"):
        if rng.random() < 0.5:
            claims[claim] = rng.choice([1000, 4000000000, 2e9])
    if rng.random() < 0.5:
        claims["aud"] = rng.choice(["svc", ["svc", "x"], ["y"]])
    if rng.random() < 0.3:
        claims["iss"] = rng.choice(["me", "them"])
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    key = secret if rng.random() < 0.8 else "wrong"
    sig = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    if rng.random() < 0.1:
        return signing + ".%%%"
    return f"{signing}.{_b64(sig)}"


def _constraints(rng: random.Random) -> dict[str, Any]:
    c: dict[str, Any] = {"secret": "s3cret", "time": rng.choice([0, 1500 * 10**9, 3e18])}
    for name, values in (("aud", ["svc", "y"]), ("iss", ["me"]), ("alg", ["HS256", "RS256"])):
        if rng.random() < 0.3:
            c[name] = rng.choice(values)
    return c


GENERATORS: dict[str, tuple[int, Gen, list[list[Any]]]] = {
    "io.jwt.decode": (1, lambda r: [_token(r)], [["a.b"], ["a.b.c"], [1]]),
    "io.jwt.verify_hs256": (2, lambda r: [_token(r), r.choice(["s3cret", "wrong"])], [["a", 1]]),
    "io.jwt.decode_verify": (
        2,
        lambda r: [_token(r), _constraints(r)],
        [["a.b.c", {"secret": "x"}], ["x.y.z", {"cert": "x", "secret": "y"}]],
    ),
    "units.parse": (1, _units, [["1.5Mi"], ["10m"], ["1e400"], ['"1K"'], ["1 K"], [5]]),
    "units.parse_bytes": (1, _units, [["1.1KB"], ["0.3kb"], ["1e3"], ["12 gb"], ["ki"], [1]]),
    "object.subset": (
        2,
        _subset,
        [[{"a": [1, 2, 3]}, {"a": [2, 3]}], [[1, 2, 3], [1, 3]], [{"a": 1}, {"a": 1.0}], [1, 1]],
    ),
    "strings.any_suffix_match": (
        2,
        lambda r: [r.choice(["ab", ["xab", "y"], []]), r.choice(["b", ["y", "z"], [], "ab"])],
        [["a", 1]],
    ),
    "indexof_n": (
        2,
        lambda r: [
            "".join(r.choice("aab☃") for _ in range(r.randrange(8))),
            r.choice(["a", "aa", "☃a"]),
        ],
        [["abc", ""]],
    ),
    "strings.split_n": (
        3,
        lambda r: [
            r.choice(["a,b,,c", "", "☃x☃", ","]),
            r.choice([",", "", "☃"]),
            r.randint(-4, 4),
        ],
        [["a,b", ",", 1.5], ["a", 1, 1]],
    ),
    "uuid.parse": (
        1,
        lambda r: [
            r.choice(["", "urn:uuid:", "{"])
            + "-".join(
                "".join(r.choice("0123456789abcdefF") for _ in range(n)) for n in (8, 4, 4, 4, 12)
            )
            + r.choice(["", "}"])
        ],
        [["c4b1e6ce-2e47-11ee-be56-0242ac120002"], ["000003e8-2e47-21ee-8a00-0242ac120002"], ["x"]],
    ),
    "net.cidr_is_valid": (
        1,
        lambda r: [r.choice([_cidr(r), _ip(r), "10.0.0.0/33", "1.2.3.4/024", "::/0"])],
        [[1]],
    ),
    "net.cidr_merge": (
        1,
        lambda r: [[r.choice([_cidr(r), _ip(r)]) for _ in range(r.randrange(5))]],
        [[["10.0.0.0/24", "10.0.1.0/24", "10.0.0.7"]], [["nope"]], ["10.0.0.0/8"]],
    ),
    "net.cidr_contains_matches": (
        2,
        lambda r: [[_cidr(r) for _ in range(3)], [r.choice([_ip(r), _cidr(r)]) for _ in range(3)]],
        [[{"k": "10.0.0.0/8"}, ["10.1.2.3", ["10.2.0.0/16", "x"]]]],
    ),
}


def _policy() -> str:
    lines = ["package diff", ""]
    for name, (arity, _gen, _edge) in GENERATORS.items():
        args = ", ".join(f"a[{i}]" for i in range(arity))
        lines.append(
            f'out["{name}"][i] := v if {{ some i; a := input["{name}"][i]; v := {name}({args}) }}'
        )
    return "\n".join(lines) + "\n"


def _freeze(v: Any) -> Any:
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, dict):
        return ("o", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return ("a", tuple(_freeze(x) for x in v))
    if isinstance(v, (int, float, decimal.Decimal)):
        return ("n", decimal.Decimal(str(v)))
    return ("v", v)


@pytest.fixture(scope="module")
def built(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OpaWasm]:
    tmp = tmp_path_factory.mktemp("diff")
    rego = tmp / "diff.rego"
    rego.write_text(_policy())
    bundle = tmp / "bundle.tar.gz"
    subprocess.run(
        [str(opa_bin), "build", "-t", "wasm", "-e", "diff/out", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        wasm = member.read()
    return rego, OpaWasm.load_from_bytes(
        # One evaluation makes hundreds of host calls: a batch, not a request.
        wasm,
        entrypoint="diff/out",
        cache_dir=None,
        limits=WasmLimits(deadline_ms=10_000),
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_each_builtin_agrees_with_opa_eval(
    opa_bin: Path, built: tuple[Path, OpaWasm], tmp_path: Path, seed: int
) -> None:
    rego, engine = built
    rng = random.Random(seed)
    cases = {
        name: edge + [gen(rng) for _ in range(40)]
        for name, (_arity, gen, edge) in GENERATORS.items()
    }
    (tmp_path / "input.json").write_text(json.dumps(cases))
    done = subprocess.run(
        [
            str(opa_bin),
            "eval",
            "--format",
            "json",
            "--data",
            str(rego),
            "--input",
            str(tmp_path / "input.json"),
            "data.diff.out",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    go = json.loads(done.stdout, parse_float=decimal.Decimal)["result"][0]["expressions"][0][
        "value"
    ]
    wasm = engine.query(cases)[0]["result"]
    differences = []
    for name, args_list in cases.items():
        for i, args in enumerate(args_list):
            want = go.get(name, {}).get(str(i))
            got = wasm.get(name, {}).get(str(i), wasm.get(name, {}).get(i))
            if _freeze(want) != _freeze(got):
                differences.append(f"{name}{tuple(args)}: opa {want!r}, wasm {got!r}")
    assert not differences, "\n".join(differences[:40])
