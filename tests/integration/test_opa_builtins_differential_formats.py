"""AWS signing, JSON/YAML and X.509 host builtins give what ``opa eval`` gives, on generated inputs.

As in test_opa_builtins_differential.py: one Rego policy calls each builtin on
every argument list under its name in ``input``, through ``opa eval`` (OPA's Go
evaluator) and through the WASM engine (``opa build -t wasm``); each call's
value, or its absence when undefined, must be equal. Certificates, requests and
keys are made here with ``cryptography`` (RSA, ECDSA, Ed25519; SANs, extended
key usages, chains root → intermediate → leaf).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import ipaddress
import json
import random
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits, hostschema

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

Gen = Callable[[random.Random], list[Any]]
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


# -- AWS ---------------------------------------------------------------------------------------
def _aws(rng: random.Random) -> list[Any]:
    path = rng.choice(["", "/", "/a/b", "/a b/☃", "/%41%2Fx", "/x(1)!*", "/a;b=c@d"])
    query = rng.choice(["", "?x=1&y=2", "?a=b%20c", "?"])
    req: dict[str, Any] = {
        "method": rng.choice(["GET", "get", "POST"]),
        "url": rng.choice(["http://example.com", "https://h.example:8443", "https://u@h"])
        + path
        + query,
    }
    if rng.random() < 0.6:
        names = ["foo", "Host", "User-Agent", "Authorization", "X-Amz-Date", "x-amz-content-sha256"]
        req["headers"] = {rng.choice(names): rng.choice(["bar", "", "x y"]) for _ in range(3)}
    body = rng.random()
    if body < 0.3:
        req["body"] = {"k": [1, 2.5, "<&>"], "z": {"a": None}}
    elif body < 0.5:
        req["raw_body"] = rng.choice(["", "raw ☃", "{}"])
    config: dict[str, Any] = {
        "aws_access_key": "AKID",
        "aws_secret_access_key": rng.choice(["secret", "s/e+c=r"]),
        "aws_service": rng.choice(["s3", "execute-api", "glacier", "sts"]),
        "aws_region": rng.choice(["us-east-1", "eu-west-3"]),
    }
    if rng.random() < 0.3:
        config["aws_session_token"] = "TOKEN"
    if rng.random() < 0.3:
        config["disable_payload_signing"] = rng.choice([True, False])
    return [req, config, rng.choice([0, 1451311705000000000, rng.randrange(2**62)])]


# -- JSON / YAML -------------------------------------------------------------------------------
def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([0, -3, 1.5, 1e21, 2**60, True, False, None])
    if kind == 1:
        return rng.choice(["", "a", "yes", "1", "x: y", "l1\nl2", "<&>", "☃", "null", " s "])
    if kind == 2:
        return rng.randrange(-5, 5)
    if kind == 3:
        return rng.choice(["on", "0x1F", "1e3", "~", "- a", "#c", "'q'", '"d"'])
    if kind in (4, 5):
        return {rng.choice("abcB_"): _value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _marshal_options(rng: random.Random) -> list[Any]:
    options: dict[str, Any] = {}
    for key, values in (
        ("pretty", [True, False]),
        ("indent", ["", "  ", "\t-"]),
        ("prefix", ["", ">"]),
    ):
        if rng.random() < 0.5:
            options[key] = rng.choice(values)
    return [_value(rng), options]


def _pointer(rng: random.Random) -> Any:
    parts = [rng.choice(["a", "b", "0", "1", "-", "c~1d", "x"]) for _ in range(rng.randrange(3))]
    if rng.random() < 0.2:
        return parts
    return "/" + "/".join(parts) if parts else rng.choice(["", "/"])


def _patch(rng: random.Random) -> list[Any]:
    doc = rng.choice([{"a": {"b": [1, 2]}, "c~/d": 1}, [1, [2, 3]], {"a": [{"x": 1}]}, 5])
    ops = []
    for _ in range(rng.randrange(1, 4)):
        op: dict[str, Any] = {
            "op": rng.choice(["add", "remove", "replace", "move", "copy", "test"])
        }
        op["path"] = _pointer(rng)
        if op["path"] in ("", []):
            # Patching the whole document and then inside it, or removing it, makes
            # opa eval panic (OPA v1.22.2, internal/edittree): not a comparison to make.
            op["path"] = "/a"
        if op["op"] in ("add", "replace", "test"):
            op["value"] = rng.choice([1, "v", {"n": 1}, [1, 2]])
        if op["op"] in ("move", "copy"):
            op["from"] = _pointer(rng) or "/b"
        ops.append(op)
    return [doc, ops]


_YAML_TEXTS = [
    "a: 1\nb: [1, 2.0, 1e3, yes, 2001-01-01, 0x1F, 0o17, ~, .5]\n",
    "- a\n- b: c\n",
    "a: 1\n---\nb: 2\n",
    "  test:\ntest1: hello\n",
    "a: 1\n---\n\tb: 2\n",
    "[1,2,3",
    "",
    "x: 017\ny: 1_000\nz: -0x10\n",
    "k: 'quoted'\nl: |\n  line\n",
]


# -- JSON Schema (gojsonschema) -----------------------------------------------------------------
def _schema(rng: random.Random, depth: int = 0) -> Any:
    """A schema of a few random keywords, now and then an invalid one."""
    if depth > 1 or rng.random() < 0.15:
        return rng.choice([True, False, {}, {"type": "string"}])
    keywords: dict[str, Callable[[], Any]] = {
        "type": lambda: rng.choice(
            [
                "string",
                "integer",
                "number",
                "object",
                ["array", "null"],
                "bogus",
                ["string", "string"],
            ]
        ),
        # Go parses an object's keys in random order: one key that may be invalid, so that
        # the first error found is the same in every order.
        "properties": lambda: {rng.choice("ab"): _schema(rng, depth + 1), "c": {"type": "integer"}},
        "required": lambda: rng.choice([["a"], ["a", "b"], ["a", "a"], [1]]),
        "additionalProperties": lambda: rng.choice([False, True, {"type": "integer"}, 3]),
        "patternProperties": lambda: {rng.choice(["^x", "b+", "(unclosed"]): {"type": "string"}},
        "items": lambda: rng.choice([{"type": "integer"}, [{"type": "string"}, True], 5]),
        "additionalItems": lambda: rng.choice([False, {"type": "null"}]),
        "minItems": lambda: rng.choice([1, 2, -1, 1.5]),
        "maxItems": lambda: rng.choice([0, 2]),
        "uniqueItems": lambda: rng.choice([True, False, "yes"]),
        "contains": lambda: {"type": "integer", "minimum": 2},
        "minimum": lambda: rng.choice([0, 1.5, "x"]),
        "maximum": lambda: rng.choice([3, 10]),
        "exclusiveMinimum": lambda: rng.choice([True, 0, 2.5]),
        "exclusiveMaximum": lambda: rng.choice([False, 5]),
        "multipleOf": lambda: rng.choice([2, 0.5, 0, -1]),
        "minLength": lambda: rng.choice([1, 3]),
        "maxLength": lambda: rng.choice([2, 0]),
        "pattern": lambda: rng.choice(["^a", "[0-9]+", "(?<=x)"]),
        "format": lambda: rng.choice(
            [
                "ipv4",
                "ipv6",
                "date",
                "date-time",
                "uuid",
                "hostname",
                "email",
                "uri",
                "time",
                "regex",
                "json-pointer",
            ]
        ),
        "enum": lambda: rng.choice([[1, "a", None], [1, 1.0], [{"a": [1]}, 2]]),
        "const": lambda: rng.choice([1, "a", {"x": 1.0}]),
        "minProperties": lambda: 1,
        "maxProperties": lambda: 1,
        "dependencies": lambda: {"a": rng.choice([["b"], {"required": ["c"]}, 1])},
        "propertyNames": lambda: {"maxLength": 1},
        "anyOf": lambda: [_schema(rng, depth + 1) for _ in range(2)],
        "oneOf": lambda: [_schema(rng, depth + 1) for _ in range(2)],
        "allOf": lambda: [_schema(rng, depth + 1) for _ in range(2)],
        "not": lambda: _schema(rng, depth + 1),
        "if": lambda: {"properties": {"a": {"const": 1}}},
        "then": lambda: {"required": ["b"]},
        "else": lambda: {"required": ["c"]},
    }
    chosen = rng.sample(sorted(keywords), rng.randrange(1, 4))
    schema = {k: keywords[k]() for k in chosen}
    if rng.random() < 0.1:
        schema["$schema"] = rng.choice(
            ["http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#"]
        )
    if depth == 0 and rng.random() < 0.1:
        # Only at the top: the pointer is the root document's, and deeper it would make the
        # schema recurse for ever (opa eval dies of a stack overflow on those).
        schema = {"definitions": {"d": schema}, "$ref": "#/definitions/d"}
    return schema


def _document(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 5)
    if kind == 0:
        return rng.choice([None, True, 0, 1, 2, 1.5, 7, -3, 12])
    if kind == 1:
        return rng.choice(
            [
                "",
                "a",
                "abc",
                "10.0.0.1",
                "::1",
                "2024-02-30",
                "2024-01-31",
                "2024-01-31T10:00:00Z",
                "f47ac10b-58cc-4372-a567-0e02b2c3d479",
                "x@y.z",
                "http://e/p",
                "12:30:00",
                "/a~1b",
                "(",
                "host.example",
            ]
        )
    if kind in (2, 3, 4):
        return rng.choice([1, "a", 3])
    if kind in (5, 6):
        return {
            rng.choice(["a", "b", "c", "xb", "bb"]): _document(rng, depth + 1)
            for _ in range(rng.randrange(4))
        }
    return [_document(rng, depth + 1) for _ in range(rng.randrange(4))]


def _match_input(rng: random.Random) -> list[Any]:
    # Mostly schemas that compile (json.verify_schema, compared above, is the judge), so
    # that documents get validated; the rest check that a bad schema is undefined.
    schema = _schema(rng)
    for _ in range(20):
        if hostschema.verify_schema(schema)[0] or rng.random() < 0.05:
            break
        schema = _schema(rng)
    if rng.random() < 0.2:
        schema = json.dumps(schema)
    document = _document(rng)
    if not isinstance(document, (dict, list)) and rng.random() < 0.8:
        document = json.dumps(document)  # a scalar document is given as JSON text
    return [document, schema]


# -- X.509 -------------------------------------------------------------------------------------
def _key(rng: random.Random) -> Any:
    kind = rng.randrange(3)
    if kind == 0:
        return rsa.generate_private_key(public_exponent=65537, key_size=1024)
    if kind == 1:
        return ec.generate_private_key(rng.choice([ec.SECP256R1(), ec.SECP384R1()]))
    return ed25519.Ed25519PrivateKey.generate()


def _sign_hash(key: Any) -> Any:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _cert(
    rng: random.Random, *, key: Any, name: str, issuer: tuple[Any, str] | None, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
        ][: rng.randrange(1, 4)]
    )
    issuer_key, issuer_name = issuer if issuer else (key, name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(rng.randrange(1, 2**120))
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=rng.choice([None, 0, 2]) if ca else None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:
        sans: list[x509.GeneralName] = [x509.DNSName(f"{name}.example")]
        if rng.random() < 0.5:
            sans.append(x509.UniformResourceIdentifier("spiffe://example.com/w/" + name))
        if rng.random() < 0.5:
            sans += [x509.IPAddress(ipaddress.ip_address("10.0.0.1")), x509.RFC822Name("a@b.c")]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usages = rng.choice(
            [[ExtendedKeyUsageOID.SERVER_AUTH], [ExtendedKeyUsageOID.CLIENT_AUTH], []]
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, _sign_hash(issuer_key))


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(PEM).decode()


def _chain(rng: random.Random) -> tuple[list[x509.Certificate], Any]:
    root_key, mid_key, leaf_key = _key(rng), _key(rng), _key(rng)
    root = _cert(rng, key=root_key, name="root", issuer=None, ca=True)
    mid = _cert(rng, key=mid_key, name="mid", issuer=(root_key, "root"), ca=True)
    leaf = _cert(rng, key=leaf_key, name="leaf", issuer=(mid_key, "mid"), ca=False)
    return [root, mid, leaf], leaf_key


def _certs_input(rng: random.Random) -> list[Any]:
    certs, _ = _chain(rng)
    chosen = certs[: rng.randrange(1, 4)]
    form = rng.randrange(3)
    if form == 0:
        return ["".join(_pem(c) for c in chosen)]
    if form == 1:
        return [base64.b64encode("".join(_pem(c) for c in chosen).encode()).decode()]
    return [base64.b64encode(b"".join(c.public_bytes(DER) for c in chosen)).decode()]


def _verify_input(rng: random.Random) -> list[Any]:
    certs, _ = _chain(rng)
    if rng.random() < 0.3:
        certs = [certs[0], certs[2]]  # the intermediate left out: no chain
    return ["".join(_pem(c) for c in certs)]


def _verify_options_input(rng: random.Random) -> list[Any]:
    certs, _ = _chain(rng)
    options: dict[str, Any] = {}
    if rng.random() < 0.5:
        options["DNSName"] = rng.choice(
            ["leaf.example", "LEAF.example.", "other.example", "10.0.0.1"]
        )
    if rng.random() < 0.5:
        options["KeyUsages"] = rng.sample(
            ["KeyUsageServerAuth", "KeyUsageClientAuth", "KeyUsageAny", "KeyUsageCodeSigning"],
            rng.randrange(1, 3),
        )
    if rng.random() < 0.3:
        options["CurrentTime"] = rng.choice([0, 4102444800 * 10**9])
    return ["".join(_pem(c) for c in certs), options]


def _private_pem(key: Any, rng: random.Random) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    if not isinstance(key, ed25519.Ed25519PrivateKey) and rng.random() < 0.5:
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    pem: bytes = key.private_bytes(PEM, fmt, serialization.NoEncryption())
    return pem.decode()


def _csr_input(rng: random.Random) -> list[Any]:
    key = _key(rng)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "req.example")])
    )
    if rng.random() < 0.6:
        sans = [x509.DNSName("a.example"), x509.UniformResourceIdentifier("spiffe://x/y")]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    pem = builder.sign(key, _sign_hash(key)).public_bytes(PEM).decode()
    return [pem if rng.random() < 0.5 else base64.b64encode(pem.encode()).decode()]


def _keypair_input(rng: random.Random) -> list[Any]:
    certs, key = _chain(rng)
    return [_pem(certs[2]), _private_pem(key, rng)]


def _keys_input(rng: random.Random) -> list[Any]:
    text = "".join(_private_pem(_key(rng), rng) for _ in range(rng.randrange(1, 3)))
    return [text if rng.random() < 0.5 else base64.b64encode(text.encode()).decode()]


def _rsa_key_input(rng: random.Random) -> list[Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return [_private_pem(key, rng)]


GENERATORS: dict[str, tuple[int, Gen, list[list[Any]], int]] = {
    "providers.aws.sign_req": (
        3,
        _aws,
        [[{"method": "GET"}, {}, 0], [{"method": "G", "url": "x"}, {}, 1.5]],
        40,
    ),
    "json.marshal_with_options": (2, _marshal_options, [[1, {"bad": 1}], [[], 5]], 40),
    "json.patch": (2, _patch, [[{"a": 1}, "x"], [{"a": 1}, [{"op": "bad", "path": "/a"}]]], 60),
    "yaml.marshal": (1, lambda r: [_value(r)], [[{"a": {"b": []}}]], 40),
    "yaml.unmarshal": (1, lambda r: [r.choice(_YAML_TEXTS)], [[1]], 10),
    "yaml.is_valid": (1, lambda r: [r.choice(_YAML_TEXTS)], [[1]], 10),
    "json.verify_schema": (1, lambda r: [_schema(r)], [["{"], [5], ["{}"], [[]], ["[1]"]], 60),
    "json.match_schema": (2, _match_input, [[1, "{"], [{}, 5]], 150),
    "crypto.x509.parse_certificates": (1, _certs_input, [["nope"], [""]], 6),
    "crypto.x509.parse_and_verify_certificates": (1, _verify_input, [["x"]], 6),
    "crypto.x509.parse_and_verify_certificates_with_options": (
        2,
        _verify_options_input,
        [["x", {}], ["x", {"KeyUsages": ["Nope"]}]],
        10,
    ),
    "crypto.x509.parse_certificate_request": (
        1,
        _csr_input,
        [["-----BEGIN CERTIFICATE REQUEST-----"]],
        6,
    ),
    "crypto.x509.parse_keypair": (2, _keypair_input, [["a", "b"]], 4),
    "crypto.parse_private_keys": (1, _keys_input, [[""], ["nope"]], 6),
    "crypto.x509.parse_rsa_private_key": (1, _rsa_key_input, [["invalid"]], 3),
}


def _policy() -> str:
    lines = ["package diff", ""]
    for name, (arity, _gen, _edge, _n) in GENERATORS.items():
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


def _errors_unordered(result: Any) -> Any:
    """gojsonschema lists errors in Go's (random) map order: compare them as a multiset."""
    if isinstance(result, list) and len(result) == 2 and isinstance(result[1], list):
        return [result[0], sorted(result[1], key=lambda e: json.dumps(e, sort_keys=True))]
    return result


@pytest.fixture(scope="module")
def built(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, OpaWasm]:
    tmp = tmp_path_factory.mktemp("diff-formats")
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
        wasm, entrypoint="diff/out", cache_dir=None, limits=WasmLimits(deadline_ms=30_000)
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_each_builtin_agrees_with_opa_eval(
    opa_bin: Path, built: tuple[Path, OpaWasm], tmp_path: Path, seed: int
) -> None:
    rego, engine = built
    rng = random.Random(seed)
    cases = {
        name: edge + [gen(rng) for _ in range(n)]
        for name, (_arity, gen, edge, n) in GENERATORS.items()
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
            if name == "json.match_schema":
                want, got = _errors_unordered(want), _errors_unordered(got)
            if _freeze(want) != _freeze(got):
                differences.append(
                    f"{name}{tuple(args)!r:.300}: opa {want!r:.300}, wasm {got!r:.300}"
                )
    assert not differences, "\n".join(differences[:30])
