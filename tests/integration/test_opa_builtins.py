"""The WASM engine's host builtins give what OPA's own evaluator gives, on the real opa binary.

policies/conformance/builtins.rego calls each provided builtin on operands
from its input. The same input goes through ``opa eval`` (OPA's Go evaluator)
on the .rego and through the WASM engine on the committed .wasm; every case's
result (or its absence, for undefined calls) must be equal. The cases are a
curated list of edge cases plus seeded random ones (formats, durations,
timestamps and zones, versions, encodings), evaluated in one batch each.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits
from evaluator_sidecar.policy.engines.wasm.builtins import PROVIDED

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CONFORMANCE_REGO = POLICIES / "conformance" / "builtins.rego"
CONFORMANCE_WASM = POLICIES / "conformance" / "policy.wasm"
SLA_REGO = POLICIES / "sla" / "sla.rego"
SLA_WASM = POLICIES / "sla" / "policy.wasm"
NS_2026 = 1767225600000000000


def opa_eval(opa: Path, rego: Path, query: str, input_value: Any, tmp_path: Path) -> Any:
    """``query``'s value by ``opa eval`` (OPA's Go evaluator) on ``rego`` with ``input_value``."""
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(input_value))
    done = subprocess.run(
        [
            str(opa),
            "eval",
            "--format",
            "json",
            "--data",
            str(rego),
            "--input",
            str(input_file),
            query,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)["result"][0]["expressions"][0]["value"]


def outcomes(subtasks: list[dict[str, Any]]) -> dict[int, Any]:
    return {s["params"]["case"]: s["params"]["value"] for s in subtasks}


def case(fn: str, *args: Any) -> dict[str, Any]:
    return {"fn": fn, "args": list(args)}


CURATED = [
    case("time.parse_rfc3339_ns", "2026-01-01T00:00:00.123456789123Z"),
    case("time.parse_rfc3339_ns", "2026-01-01t00:00:00z"),
    case("time.parse_rfc3339_ns", "2026-01-01T1:00:00Z"),
    case("time.parse_rfc3339_ns", "2026-01-01T00:00:00,5Z"),
    case("time.parse_rfc3339_ns", "2262-04-11T23:47:16.854775808Z"),
    case("time.parse_rfc3339_ns", "2026-02-29T00:00:00Z"),
    case("time.parse_duration_ns", "3.000000000001h"),
    case("time.parse_duration_ns", "1d1\u03bcs"),
    case("time.parse_duration_ns", "9223372036854775808ns"),
    case("time.add_date", NS_2026, 1, -13, -400),
    case("time.add_date", 1706659200000000000, 0, 1, 0),
    case("time.diff", [1706659200000000000, "Asia/Tokyo"], [1767225600123000000, "UTC"]),
    case("time.date", [NS_2026, "Nowhere/City"]),
    case("sprintf", "%v %v %v", [1e6, 123456.0, 0.00001]),
    case("sprintf", "%#g|%#.3g|%x|%b", [1.0, 1.0, 1.5, 1.5]),
    case("sprintf", "%d %d", [1]),
    case("sprintf", "%d", [1, "two"]),
    case("sprintf", "%[3]d %!", [1, 2]),
    case("sprintf", "%v", [[1, "a", {"k": [True, None]}, {"b": 1, "a": 2.50}]]),
    case("sprintf", "%t %s %v", [True, None, False]),
    case("sprintf", "%q %+q %#q %x % X", ["é\n", "é", "a`b", "hi", "hi"]),
    case("sprintf", "%c %q %U %#U", [65, 0x1F600, 0x1F600, 0x41]),
    case("sprintf", "%d %x %o", [12345678901234567890, 12345678901234567890, -8]),
    case("hex.decode", "ff"),
    case("urlquery.decode", "%e2%82"),
    case("urlquery.encode_object", {"b": "2 3", "a": ["x", "y"], "c": []}),
    case("semver.compare", "1.0.0-beta.11", "1.0.0-beta.2"),
    case("semver.is_valid", "1.2.3\n"),
    case("strings.count", "ééé", ""),
    case("strings.any_prefix_match", ["a/b", "c"], ["x", "c"]),
    case("numbers.range_step", 10, 1, 3),
    case("crypto.hmac.sha512", "message", "key"),
    case("base64url.encode_no_pad", "\u0000\u00ff"),
]

VERBS = "vdsqxXobeEfFgGtcUT%z"
FLAGS = ["", "+", "-", "#", "0", " ", "-0", "+#"]
ZONES = [
    "",
    "UTC",
    "Local",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]


def random_cases(seed: int, n: int) -> list[dict[str, Any]]:
    """Seeded operands for every provided builtin except time.now_ns (it differs per run)."""
    rng = random.Random(seed)
    scalars: list[Any] = [
        0, 1, -1, 42, 255, 65, 2**40, 2**63 - 1, 2**64 + 3, 1.5, -0.25, 1e6, 1e21, 1e-7, 123456.789,
        3.0, "x", "", "é", "a b", True, None, [1, "a"], {"k": 1},
    ]  # fmt: skip

    def fmt() -> str:
        parts = []
        for _ in range(rng.randint(1, 3)):
            width = rng.choice(["", "5", "08", "*"])
            prec = rng.choice(["", ".2", ".0", ".*", "."])
            index = rng.choice(["", "", "", "[1]", "[2]"])
            verb = rng.choice(VERBS)
            parts.append(f"{rng.choice(['', 'v='])}%{rng.choice(FLAGS)}{index}{width}{prec}{verb}")
        return "|".join(parts)

    def duration() -> str:
        units = ["ns", "us", "\u00b5s", "ms", "s", "m", "h", "d", "w", "y", "x"]
        text = "".join(
            f"{rng.choice(['1', '12', '0.5', '.25', '3.', '100000'])}{rng.choice(units)}"
            for _ in range(rng.randint(1, 3))
        )
        return rng.choice(["", "-", "+"]) + text

    def timestamp() -> str:
        year = rng.choice(["1677", "1970", "2024", "2026", "2262", "9999"])
        day = (
            f"{year}-{rng.choice(['01', '02', '12', '13'])}-{rng.choice(['01', '28', '29', '31'])}"
        )
        clock = f"{rng.choice(['00', '7', '23', '24'])}:{rng.choice(['00', '59', '60'])}:"
        clock += rng.choice(["00", "59", "60"])
        frac = rng.choice(["", ".5", ",25", ".123456789", ".1234567891"])
        zone = rng.choice(["Z", "z", "+01:00", "-05:30", "+23:59", "+24:00", ""])
        return f"{day}{rng.choice(['T', 't', ' '])}{clock}{frac}{zone}"

    def instant() -> Any:
        ns = rng.choice([0, -1, NS_2026, 1709251200000000000, 2**62, -(2**62)]) + rng.randint(
            -(10**14), 10**14
        )
        return ns if rng.random() < 0.6 else [ns, rng.choice(ZONES)]

    def version() -> str:
        core = ".".join(
            rng.choice(["0", "1", "10", "01", "x"]) for _ in range(rng.choice([2, 3, 3, 3, 4]))
        )
        pre = rng.choice(
            ["", "", "-alpha", "-alpha.1", "-beta.11", "-beta.2", "-0", "-01", "-rc.1.1"]
        )
        return rng.choice(["", "v"]) + core + pre + rng.choice(["", "", "+build.5", "+"])

    def text() -> str:
        alphabet = "ab %+&=/é~_.-*\u00ff0f"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))

    makers: dict[str, Callable[[], list[Any]]] = {
        "time.parse_rfc3339_ns": lambda: [timestamp()],
        "time.parse_duration_ns": lambda: [duration()],
        "time.date": lambda: [instant()],
        "time.clock": lambda: [instant()],
        "time.weekday": lambda: [instant()],
        "time.add_date": lambda: [
            instant(),
            rng.randint(-3, 3),
            rng.randint(-25, 25),
            rng.randint(-400, 400),
        ],
        "time.diff": lambda: [instant(), instant()],
        "sprintf": lambda: [fmt(), [rng.choice(scalars) for _ in range(rng.randint(0, 4))]],
        "strings.count": lambda: [text(), rng.choice(["", "a", "é", "ab"])],
        "strings.any_prefix_match": lambda: [[text(), text()], [rng.choice(["a", "é", ""])]],
        "hex.encode": lambda: [text()],
        "hex.decode": lambda: [rng.choice(["", "6869", "c3a9", "zz", "6", "e282ac", "ff", "6A6B"])],
        "base64url.encode_no_pad": lambda: [text()],
        "urlquery.encode": lambda: [text()],
        "urlquery.decode": lambda: [
            rng.choice(["a+b", "%20", "%zz", "%e2%82%ac", "x%", "100%25"]) + text()
        ],
        "urlquery.encode_object": lambda: [
            {text(): rng.choice([text(), [text(), text()], []]) for _ in range(2)}
        ],
        "crypto.md5": lambda: [text()],
        "crypto.sha1": lambda: [text()],
        "crypto.sha256": lambda: [text()],
        "crypto.hmac.md5": lambda: [text(), text()],
        "crypto.hmac.sha1": lambda: [text(), text()],
        "crypto.hmac.sha256": lambda: [text(), text()],
        "crypto.hmac.sha512": lambda: [text(), text()],
        "crypto.hmac.equal": lambda: [rng.choice(["a", "b"]), rng.choice(["a", "b"])],
        "semver.is_valid": lambda: [version()],
        "semver.compare": lambda: [version(), version()],
        "numbers.range_step": lambda: [
            rng.randint(-5, 5),
            rng.randint(-5, 5),
            rng.choice([1, 2, 3, 0, -1]),
        ],
        "trace": lambda: [text()],
    }
    names = sorted(makers)
    return [case(name, *makers[name]()) for name in (names[i % len(names)] for i in range(n))]


def test_every_provided_builtin_is_exercised() -> None:
    exercised = {c["fn"] for c in CURATED + random_cases(1, 200)}
    # The builtins added for OPA compatibility have their own differential test, and all
    # of them run in OPA's own cases (test_opa_builtins_differential, test_opa_conformance_sample).
    later = {
        name
        for name in PROVIDED
        if name.split(".")[0] in ("io", "graphql", "units", "net", "object")
        or name in ("strings.any_suffix_match", "indexof_n", "strings.split_n", "uuid.parse")
        # AWS, JSON/YAML, X.509: test_opa_builtins_differential_formats.
        or name.startswith(("providers.", "json.", "yaml.", "crypto.x509."))
        or name == "crypto.parse_private_keys"
    }
    # Regexes, time layouts, URLs, templates and the rest of hostextra:
    # test_opa_regex_time_differential and OPA's own cases (casts, graphs) cover them.
    later |= {
        name
        for name in PROVIDED
        if name.split(".")[0] in ("regex", "uri", "glob", "graph")
        or name.startswith("cast_")
        or name
        in (
            "time.parse_ns",
            "time.format",
            "urlquery.decode_object",
            "strings.render_template",
        )
    }
    assert exercised | {"time.now_ns"} | later == set(PROVIDED)


@pytest.mark.parametrize("seed", [1, 2])
def test_host_builtins_agree_with_opa(opa_bin: Path, tmp_path: Path, seed: int) -> None:
    cases = CURATED + random_cases(seed, 400)
    facts = {"context": {"cases": cases}}
    go = opa_eval(opa_bin, CONFORMANCE_REGO, "data.conformance.result", facts, tmp_path)
    # ~600 host calls in one evaluation: about the answers, not speed (a loaded machine can
    # pass the production 50 ms deadline).
    engine = OpaWasm.load_from_bytes(
        CONFORMANCE_WASM.read_bytes(), limits=WasmLimits(deadline_ms=10_000)
    )
    wasm = engine.evaluate(facts)
    expected, got = outcomes(go["subtasks"]), outcomes(wasm["subtasks"])
    differ = [
        f"{cases[i]['fn']}{json.dumps(cases[i]['args'])}: opa {expected.get(i, '<undefined>')!r}, "
        f"wasm {got.get(i, '<undefined>')!r}"
        for i in range(len(cases))
        if expected.get(i, "<undefined>") != got.get(i, "<undefined>")
        or type(expected.get(i)) is not type(got.get(i))
    ]
    assert not differ, f"{len(differ)} of {len(cases)} differ:\n" + "\n".join(differ[:20])
    assert len(expected) > len(cases) // 2  # most calls are defined: the comparison has teeth


def test_the_sla_policy_agrees_with_opa(opa_bin: Path, tmp_path: Path) -> None:
    engine = OpaWasm.load_from_bytes(SLA_WASM.read_bytes())
    rng = random.Random(5)
    for _ in range(8):
        facts = {
            "tags": rng.sample(["vip", "x"], rng.randint(0, 2)),
            "context": {
                "ticket_opened": f"2026-01-0{rng.randint(1, 7)}T0{rng.randint(0, 9)}:00:00Z",
                "guest": rng.choice(["Ben", "ANN", "é"]),
                "room": rng.choice([512, "101", 7.5]),
                "sla": rng.choice(["2h", "30m", "1d", "bad"]),
            },
            "now": "2026-01-03T11:30:00Z",
        }
        expected = opa_eval(opa_bin, SLA_REGO, "data.pkg.sla.result", facts, tmp_path)
        assert engine.evaluate(facts) == expected, facts
