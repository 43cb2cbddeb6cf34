"""Regex, time-layout, CIDR-expansion, glob and query host builtins give what ``opa eval`` gives.

The same method as test_opa_builtins_differential.py, for the builtins of
hostregex, gotimelayout and hostextra: one policy calls each builtin on every
argument list under its name in ``input``, through ``opa eval`` (OPA's Go
evaluator) and through the WASM engine; each call's value, or its absence when
undefined, must be equal. Inputs are curated edge cases plus seeded random ones.
"""

from __future__ import annotations

import decimal
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

_PATTERNS = ["a*", "a+", "^[a-z]", "(?P<x>b)(c)?", "x*", "$", "^", "\\b", "é|b", "", "a|", ".",
             "(a)(?:b)", "[", "\\C", "(?i)B", "\\s+", "a{2,}", "(?m)^c", "\\pL+"]  # fmt: skip
_TEXT = "abcé x\nAB"


def _text(rng: random.Random, n: int = 9) -> str:
    return "".join(rng.choice(_TEXT) for _ in range(rng.randrange(n)))


def _replace(rng: random.Random) -> list[Any]:
    repl = rng.choice(["-", "$1", "${x}", "$$", "$1x", "${1}", "$", "<$0>", "${2}!", "$x_", "é"])
    return [_text(rng), rng.choice(_PATTERNS), repl]


def _glob(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randrange(1, 5)):
        atom = rng.choice(["a", "b", ".", "[a-c]", "[bd]", "\\.", "\\*", "c", "[]"])
        parts.append(atom + rng.choice(["", "", "+", "*"]))
    if rng.random() < 0.1:
        parts.append(rng.choice(["[", "]", "+", "\\", "[c-a]", "[-a]"]))
    return "".join(parts)


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _parse(rng: random.Random) -> list[Any]:
    y, mo, d = rng.randrange(1970, 2100), rng.randrange(1, 13), rng.randrange(1, 32)
    h, mi, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    frac = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12)))
    off = rng.choice(["Z", "+05:30", "-07:00", "+00:00"])
    forms = [
        ("2006-01-02", f"{y}-{mo:02}-{d:02}"),
        ("RFC3339", f"{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{off}"),
        ("2006-01-02T15:04:05Z07:00", f"{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac}{off}"),
        ("RFC822Z", f"{d:02} {_MONTHS[mo - 1]} {y % 100:02} {h:02}:{mi:02} -0{rng.randrange(9)}00"),
        ("ANSIC", f"Mon {_MONTHS[mo - 1]} {d:2} {h:02}:{mi:02}:{s:02} {y}"),
        ("3:04PM", f"{h % 12 or 12}:{mi:02}{rng.choice(['AM', 'PM', 'pm'])}"),
        ("2006-002", f"{y}-{rng.randrange(0, 400):03}"),
        ("15:04:05.000", f"{h:02}:{mi:02}:{s:02}.{frac[:3]}"),
        ("Jan 2, 2006 at 3:04pm (MST)", f"{_MONTHS[mo - 1]} {d}, {y} at 3:04pm (PST)"),
        ("02/01/06 15:04:05.999 -07", f"{d:02}/{mo:02}/{y % 100:02} {h:02}:{mi:02}:{s:02},{frac}"),
        ("UnixDate", f"Tue {_MONTHS[mo - 1]} {d:2} {h:02}:{mi:02}:{s:02} GMT+3 {y}"),
    ]
    layout, value = rng.choice(forms)
    if rng.random() < 0.2 and value:
        i = rng.randrange(len(value))
        value = value[:i] + rng.choice(["", "x", "9", " "]) + value[i + 1 :]
    return [layout, value]


_LAYOUTS = ["", "RFC3339", "RFC1123", "RFC850", "Kitchen", "2006-01-02T15:04:05.000Z07:00",
            "Mon Jan _2 __2 002 3PM pm -0700 -07 Z07:00:00 -070000 MST .99 ,000000",
            "January Monday 06 1 2 15 4 5 .9", "RubyDate", "UnixDate", "2006_2006"]  # fmt: skip
_ZONES = ["", "UTC", "America/New_York", "Asia/Kolkata", "Europe/London", "Australia/Lord_Howe"]


def _format(rng: random.Random) -> list[Any]:
    ns = rng.randrange(-(2**62), 2**62) // rng.choice([1, 10**9])
    return [[ns, rng.choice(_ZONES), rng.choice(_LAYOUTS)]]


def _uri(rng: random.Random) -> list[Any]:
    scheme = rng.choice(
        ["https://", "http://", "mailto:", "postgres://", "", "//", "1x:", "HTTP://"]
    )
    user = rng.choice(["", "", "u:p%41@", "a@b@", "é@", "u%zz@"])
    host = rng.choice(["example.com", "[::1]", "[fe80::1%25en0]", "[1.2.3.4]", "h:1:2", "ex%41",
                       "a b", "%C3%A9", "", "x[y]", "[::1"])  # fmt: skip
    port = rng.choice(["", "", ":8080", ":", ":x"])
    path = rng.choice(["", "/", "/a%2Fb", "/p q", "/é", "a:b/c", "/%zz", "/a+b;c"])
    tail = rng.choice(["", "?q=1", "?", "#f%20x", "?a#", "#"])
    return [scheme + user + host + port + path + tail]


_TEMPLATE_PIECES = [
    "{{.a}}", "{{.b.c}}", "{{.missing}}", "{{.missing.x}}", " x ", "{{/* c */}}", "{{.l}}",
    "{{range $i, $v := .l}}{{if $i}},{{end}}{{$v}}{{end}}", "{{range .m}}{{.}}{{else}}none{{end}}",
    "{{with .b}}{{.c}}{{else}}no{{end}}", "{{- .a -}}", "{{$x := .a}}{{$x}}", "{{.m}}", "{{.n}}",
    "{{if .n}}T{{else if .a}}A{{else}}F{{end}}", "{{true}}", '{{"s"}}', "{{-3}}", "{{$}}",
    "{{range $k, $v := .m}}{{$k}}={{$v}};{{break}}{{end}}", "{{range .l}}{{continue}}{{end}}",
    "{{range $v := .n}}{{$v}}{{end}}", "{{.}}", "{{if}}", "{{end}}", "{{$y}}",
]  # fmt: skip


def _template(rng: random.Random) -> list[Any]:
    text = "".join(rng.choice(_TEMPLATE_PIECES) for _ in range(rng.randrange(1, 4)))
    scalar = [rng.choice(["x", "", 1, 1.5, None, True, 0, "a b"]) for _ in range(3)]
    variables = {
        "a": scalar[0],
        "b": rng.choice([{"c": scalar[1]}, "s", None, {}]),
        "l": rng.choice([[], ["p", "q"], [1, None, {"k": 2}], [[1, "x"]]]),
        "m": rng.choice([{}, {"z": 1, "a": "v"}, {"k": [True, None]}]),
        "n": rng.choice([0, False, "", [], {}, 2, "t", None]),
    }
    return [text, variables]


GENERATORS: dict[str, tuple[int, Gen, list[list[Any]]]] = {
    "strings.render_template": (
        2,
        _template,
        [["{{.test}}", {"test": 2023}], ["x", "y"], ["{{.a", {}], [1, {}]],
    ),
    "uri.parse": (1, _uri, [["*"], ["a\nb"], [":x"], [1]]),
    "uri.is_valid": (1, _uri, [[""], ["http://[invalid"], [1]]),
    "regex.replace": (3, _replace, [["baaac", "a*", "-"], ["foo", "^[a-z]", "F"], [1, "a", "b"]]),
    "regex.find_n": (
        3,
        lambda r: [r.choice(_PATTERNS), _text(r), r.choice([-1, 0, 1, 2, 5])],
        [["a", "aaa", 1.5], ["a*", "baaac", -1], ["[", "a", 1]],
    ),
    "regex.split": (
        2,
        lambda r: [r.choice(_PATTERNS), _text(r)],
        [["a*", "baaac"], ["x", ""], ["", ""], ["", "abc"], ["a", 1]],
    ),
    "regex.globs_match": (
        2,
        lambda r: [_glob(r), _glob(r)],
        [["a.+", ".*b"], ["[a-c]+", "[c-e]"], ["", ""], ["a", ""], ["\\", "a"], [1, "a"]],
    ),
    "regex.template_match": (
        4,
        lambda r: [
            r.choice(["urn:foo:{.*}", "a{[0-9]+}b<x>", "{{a}}", "x{(}", "{a}}", "p.q{.}"]),
            r.choice(["urn:foo:bar", "a12b<x>", "a", "p.qx", "pxqx", "x("]),
            r.choice(["{", "<"]),
            r.choice(["}", ">", "ab"]),
        ],
        [["a{b}", "ab", "{", "}"]],
    ),
    "time.parse_ns": (
        2,
        _parse,
        [
            ["2006-01-02T15:04:05Z07:00", "1677-09-21T00:12:43.145224191-00:00"],
            ["2006-01-02T15:04:05Z07:00", "2262-04-11T23:47:16.854775807-00:00"],
            ["01/02 03:04:05PM '06 -0700", "06/02 07:00:00PM '17 -0700"],
            ["2006-01-02", "2020-02-30"],
            ["2006-002", "2020-060"],
            ["15:04", "24:00"],
            ["MST", "ChST"],
            ["2006 -07:00:00", "2020 +01:02:03"],
        ],
    ),
    "time.format": (
        1,
        _format,
        [[1_700_000_000_123_456_789], [[0, "Asia/Kolkata"]], [[1, "UTC", "RFC3339Nano"]], ["x"]],
    ),
    "net.cidr_expand": (
        1,
        lambda r: [
            r.choice(
                [
                    f"10.{r.randrange(3)}.{r.randrange(256)}.{r.randrange(256)}/"
                    f"{r.randrange(28, 33)}",
                    f"2001:db8::{r.randrange(65536):x}/{r.randrange(125, 129)}",
                    "::ffff:1.2.3.4/126",
                    "1.2.3.4",
                    "1.2.3.04/32",
                ]
            )
        ],
        [["192.168.1.0/30"], [1], ["x/1"]],
    ),
    "glob.quote_meta": (
        1,
        lambda r: ["".join(r.choice("a*?[]{}\\!-,.é") for _ in range(r.randrange(6)))],
        [[1]],
    ),
    "urlquery.decode_object": (
        1,
        lambda r: [
            "&".join(
                r.choice(["a=1", "b=", "a=2", "c", "=x", "%zz=1", "d=%41+b", "e;f"])
                for _ in range(r.randrange(4))
            )
        ],
        [["a=1&a=2&b"], [""], ["x=%"], [1]],
    ),
}


def _policy() -> str:
    lines = ["package diffb", ""]
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
    tmp = tmp_path_factory.mktemp("diffb")
    rego = tmp / "diffb.rego"
    rego.write_text(_policy())
    bundle = tmp / "bundle.tar.gz"
    subprocess.run(
        [str(opa_bin), "build", "-t", "wasm", "-e", "diffb/out", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        wasm = member.read()
    return rego, OpaWasm.load_from_bytes(
        wasm, entrypoint="diffb/out", cache_dir=None, limits=WasmLimits(deadline_ms=20_000)
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_builtin_agrees_with_opa_eval(
    opa_bin: Path, built: tuple[Path, OpaWasm], tmp_path: Path, seed: int
) -> None:
    rego, engine = built
    rng = random.Random(seed)
    cases = {
        name: edge + [gen(rng) for _ in range(60)]
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
            "data.diffb.out",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
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
            if isinstance(want, list) and isinstance(got, list) and name == "net.cidr_expand":
                want, got = sorted(want), sorted(got)
            if _freeze(want) != _freeze(got):
                differences.append(f"{name}{tuple(args)}: opa {want!r}, wasm {got!r}")
    assert not differences, "\n".join(differences[:40])
