"""``io.jwt.*`` host builtins: OPA's Go (``v1/topdown/tokens.go``) ported onto ``cryptography``.

Decoding follows OPA's ``base64url.decode`` (padding optional) and ``json.unmarshal``
(last duplicate key wins); keys are a PEM certificate, a PEM public key, a JWK or
a JWK set, as OPA reads them; signatures are checked as Go's ``crypto/rsa``,
``crypto/ecdsa`` (``r || s``, halves of the signature) and ``crypto/ed25519``
check them. ``decode_verify`` applies OPA's constraints (``cert``/``secret``,
``alg``, ``iss``, ``aud``, ``time``; ``exp`` and ``nbf`` against the evaluation's
time). Signing (``encode_sign``, ``encode_sign_raw``) takes the first key of a JWK
(set). Anything OPA reports as an error raises :class:`HostBuiltinError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoBigNumber, RegoFloat, dump_rego

__all__ = [
    "decode",
    "decode_verify",
    "encode_sign",
    "encode_sign_raw",
    "go_json_marshal",
    "verify_asymmetric",
    "verify_hs",
]

ALGORITHMS = frozenset(
    [f"{f}{n}" for f in ("RS", "PS", "ES", "HS") for n in (256, 384, 512)] + ["EdDSA"]
)
_HASHES: dict[str, Any] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_HMACS = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_B64URL = re.compile(r"[A-Za-z0-9_-]*=*")


# -- decoding --------------------------------------------------------------------------------
def b64url_decode(text: str) -> bytes:
    """OPA's ``base64url.decode``: padding optional; Go's strict URL alphabet."""
    s = text
    if not s.endswith("="):
        rem = len(s) % 4
        if rem == 1:
            raise HostBuiltinError(f"illegal base64url string: {text}")
        s += "=" * ((4 - rem) % 4)
    if not _B64URL.fullmatch(s) or len(s) % 4:
        raise HostBuiltinError("illegal base64 data")
    try:
        return base64.b64decode(s.replace("-", "+").replace("_", "/").encode(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HostBuiltinError(f"illegal base64 data: {exc}") from None


def _number(text: str) -> Any:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return RegoBigNumber(text)
    return RegoFloat(text)


def json_unmarshal(data: bytes) -> Any:
    """OPA's ``json.unmarshal``: invalid UTF-8 becomes U+FFFD, numbers keep their text."""
    try:
        return json.loads(data.decode("utf-8", "replace"), parse_float=_number)
    except ValueError as exc:
        raise HostBuiltinError(f"invalid JSON: {exc}") from None


def _json_object(data: bytes) -> dict[str, Any]:
    value = json_unmarshal(data)
    if not isinstance(value, dict):
        raise HostBuiltinError("decoded JSON type was not an Object")
    return value


@dataclass
class _Token:
    header: str
    payload: str
    signature: str

    def decoded_header(self) -> dict[str, Any]:
        header = _json_object(b64url_decode(self.header))
        if "enc" in header:
            raise HostBuiltinError("JWT is a JWE object, which is not supported")
        return header

    def decoded_signature(self) -> bytes:
        return b64url_decode(self.signature)


def _split(jwt: Any) -> _Token:
    if not isinstance(jwt, str):
        raise HostBuiltinError("operand 1 must be a string")
    if "." not in jwt:
        raise HostBuiltinError("encoded JWT had no period separators")
    parts = jwt.split(".")
    if len(parts) != 3:
        raise HostBuiltinError(f"encoded JWT must have 3 sections, found {len(parts)}")
    return _Token(*parts)


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def decode(jwt: Any) -> list[Any]:
    """``io.jwt.decode``: ``[header, payload, hex signature]``; nested ``cty: JWT`` recursed."""
    token = _split(jwt)
    header = token.decoded_header()
    payload = b64url_decode(token.payload)
    cty = header.get("cty")
    if cty is not None:
        if not isinstance(cty, str):
            raise HostBuiltinError("cty must be a string")
        if cty == "JWT":
            return decode(_utf8(payload).strip("\"'"))
    body = _json_object(payload)
    return [header, body, token.decoded_signature().hex()]


# -- keys ---------------------------------------------------------------------------------
@dataclass
class _Key:
    key: Any
    alg: str = ""
    kid: str = ""


_PEM = re.compile(rb"-----BEGIN ([^-\r\n]*)-----\r?\n(.*?)-----END \1-----[ \t]*(?:\r?\n|$)", re.S)


def _pem_keys(text: str) -> list[_Key] | None:
    data = text.encode("utf-8", "surrogatepass")
    match = _PEM.search(data)
    if match is None:
        return None
    if data[match.end() :]:
        raise HostBuiltinError("extra data after a PEM certificate block")
    kind = match.group(1)
    block = match.group(0)
    try:
        if kind == b"CERTIFICATE":
            return [_Key(x509.load_pem_x509_certificate(block).public_key())]
        if kind == b"PUBLIC KEY":
            return [_Key(serialization.load_pem_public_key(block))]
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise HostBuiltinError(f"failed to parse a PEM key: {exc}") from None
    raise HostBuiltinError("failed to extract a Key from the PEM certificate")


def _b64int(jwk: dict[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise HostBuiltinError(f"JWK is missing {name}")
    return int.from_bytes(b64url_decode(value.rstrip("=")), "big")


_CURVES: dict[str, Any] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def jwk_key(jwk: Any) -> Any:  # noqa: PLR0911 - one return per key type
    """The key a JWK describes: a ``cryptography`` key (private when ``d`` is given) or bytes."""
    if not isinstance(jwk, dict):
        raise HostBuiltinError("a JWK must be an object")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            pub = rsa.RSAPublicNumbers(_b64int(jwk, "e"), _b64int(jwk, "n"))
            if "d" not in jwk:
                return pub.public_key()
            p, q, d = _b64int(jwk, "p"), _b64int(jwk, "q"), _b64int(jwk, "d")
            return rsa.RSAPrivateNumbers(
                p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), pub
            ).private_key()
        if kty == "EC":
            curve = _CURVES.get(str(jwk.get("crv")))
            if curve is None:
                raise HostBuiltinError(f"unsupported curve {jwk.get('crv')!r}")
            pub_ec = ec.EllipticCurvePublicNumbers(_b64int(jwk, "x"), _b64int(jwk, "y"), curve())
            if "d" not in jwk:
                return pub_ec.public_key()
            return ec.EllipticCurvePrivateNumbers(_b64int(jwk, "d"), pub_ec).private_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            if "d" in jwk:
                return ed25519.Ed25519PrivateKey.from_private_bytes(
                    b64url_decode(str(jwk["d"]).rstrip("="))
                )
            return ed25519.Ed25519PublicKey.from_public_bytes(
                b64url_decode(str(jwk.get("x", "")).rstrip("="))
            )
        if kty == "oct":
            return b64url_decode(str(jwk.get("k", "")).rstrip("="))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise HostBuiltinError(f"invalid JWK: {exc}") from None
    raise HostBuiltinError(f"unsupported JWK key type {kty!r}")


def _jwks(text: str) -> list[dict[str, Any]]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise HostBuiltinError(f"failed to parse a JWK key (set): {exc}") from None
    if isinstance(raw, dict) and "keys" in raw:
        keys = raw["keys"]
        if not isinstance(keys, list):
            raise HostBuiltinError("failed to parse a JWK key set: keys must be an array")
        return keys
    if not isinstance(raw, dict):
        raise HostBuiltinError("failed to parse a JWK key (set)")
    return [raw]


def keys_from_cert_or_jwk(text: str) -> list[_Key]:
    """Go's ``parseKeysFromCertOrJWK``: a PEM block, else a JWK (set); unknown ``alg``s skipped."""
    pem = _pem_keys(text)
    if pem is not None:
        return pem
    keys = []
    for jwk in _jwks(text):
        key = jwk_key(jwk)
        alg = jwk.get("alg", "")
        if alg and alg not in ALGORITHMS:
            continue
        keys.append(_Key(key, str(alg), str(jwk.get("kid", ""))))
    return keys


# -- verification ---------------------------------------------------------------------------
def _public(key: Any) -> Any:
    return key.public_key() if hasattr(key, "public_key") else key


def _verify_alg(  # noqa: PLR0911 - one return per algorithm family
    key: Any, alg: str, message: bytes, signature: bytes, *, strict: bool
) -> bool:
    """One signature check. ``strict`` (decode_verify) also requires the key to fit ``alg``."""
    family, size = alg[:2], alg[2:]
    try:
        if family == "HS":
            if not isinstance(key, bytes):
                return False
            mac = hmac.new(key, message, _HMACS[size]).digest()
            return hmac.compare_digest(mac, signature)
        key = _public(key) if strict else key
        if family in ("RS", "PS") and size in _HASHES:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            h = _HASHES[size]()
            pad = (
                padding.PKCS1v15()
                if family == "RS"
                else padding.PSS(mgf=padding.MGF1(h), salt_length=padding.PSS.AUTO)
            )
            key.verify(signature, message, pad, h)
            return True
        if family == "ES" and size in _HASHES:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            n = len(signature) // 2
            if strict and len(signature) != 2 * ((key.curve.key_size + 7) // 8):
                return False
            r = int.from_bytes(signature[:n], "big")
            s = int.from_bytes(signature[n:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(_HASHES[size]()))
            return True
        if alg == "EdDSA":
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(signature, message)
            return True
    except (InvalidSignature, ValueError, TypeError):
        return False
    return False


def verify_asymmetric(alg: str) -> Any:
    """``io.jwt.verify_<alg>`` for RS/PS/ES/EdDSA: true when any fitting key verifies."""

    def verify(jwt: Any, cert: Any) -> bool:
        token = _split(jwt)
        if not isinstance(cert, str):
            raise HostBuiltinError("operand 2 must be a string")
        keys = keys_from_cert_or_jwk(cert)
        signature = token.decoded_signature()
        header = _parse_header(token.decoded_header())
        message = f"{token.header}.{token.payload}".encode()
        if header.kid:
            for key in keys:
                if key.kid == header.kid:
                    return _verify_alg(key.key, alg, message, signature, strict=False)
        for key in keys:
            if key.alg and key.alg != header.alg:
                continue
            if _verify_alg(key.key, alg, message, signature, strict=False):
                return True
        return False

    return verify


def verify_hs(size: str) -> Any:
    def verify(jwt: Any, secret: Any) -> bool:
        if not isinstance(jwt, str):
            raise HostBuiltinError("operand 1 must be a string")
        if not isinstance(secret, str):
            raise HostBuiltinError("operand 2 must be a string")
        token = _split(jwt)
        mac = hmac.new(
            secret.encode("utf-8", "surrogatepass"),
            f"{token.header}.{token.payload}".encode("utf-8", "surrogatepass"),
            _HMACS[size],
        ).digest()
        return hmac.compare_digest(token.decoded_signature(), mac)

    return verify


@dataclass
class _Header:
    alg: str = ""
    kid: str = ""
    typ: str = ""
    cty: str = ""
    crit: frozenset[str] = frozenset()
    unknown: tuple[str, ...] = ()

    def valid(self) -> bool:
        return bool(self.alg) and not any(u in self.crit for u in self.unknown)


def _parse_header(header: dict[str, Any]) -> _Header:
    out = _Header()
    unknown = []
    for name, value in header.items():
        if name in ("alg", "kid", "typ", "cty"):
            if not isinstance(value, str):
                raise HostBuiltinError(f"{name}: must be a string")
            setattr(out, name, value)
        elif name == "crit":
            if not isinstance(value, list):
                raise HostBuiltinError("crit: must be a list")
            crit = frozenset(v for v in value if isinstance(v, str))
            if not crit:
                raise HostBuiltinError("crit: must be a nonempty list")
            out.crit = crit
        else:
            unknown.append(name)
    out.unknown = tuple(unknown)
    return out


@dataclass
class _Constraints:
    keys: list[_Key] | None = None
    secret: str = ""
    alg: str = ""
    iss: str = ""
    aud: str = ""
    time: float = -1.0


def _time_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HostBuiltinError("token time constraint: must be a number")
    t = float(value)
    if t < 0:
        raise HostBuiltinError("token time constraint: must not be negative")
    return t


def _constraints(obj: Any, now_ns: int) -> _Constraints:
    if not isinstance(obj, dict):
        raise HostBuiltinError("operand 2 must be an object")
    c = _Constraints()
    for name, value in obj.items():
        if name == "cert":
            if not isinstance(value, str):
                raise HostBuiltinError("cert constraint: must be a string")
            c.keys = keys_from_cert_or_jwk(value)
        elif name in ("secret", "alg", "iss", "aud"):
            if not isinstance(value, str):
                raise HostBuiltinError(f"{name} constraint: must be a string")
            setattr(c, name, value)
        elif name == "time":
            c.time = _time_value(value)
        else:
            raise HostBuiltinError(f"unknown token validation constraint: {name}")
    if c.time == -1:
        c.time = float(now_ns)
    if (c.keys is not None) + bool(c.secret) != 1:
        raise HostBuiltinError("exactly one of cert and secret is required")
    return c


def _signature_ok(c: _Constraints, header: _Header, message: bytes, signature: bytes) -> bool:
    if c.keys is not None:
        if header.kid:
            for key in c.keys:
                if key.kid == header.kid:
                    return _verify_alg(key.key, header.alg, message, signature, strict=True)
        for key in c.keys:
            if key.alg and key.alg != header.alg:
                continue
            if _verify_alg(key.key, header.alg, message, signature, strict=True):
                return True
        return False
    secret = c.secret.encode("utf-8", "surrogatepass")
    return header.alg.startswith("HS") and _verify_alg(
        secret, header.alg, message, signature, strict=True
    )


def _valid_audience(aud: Any, want: str) -> bool:
    if isinstance(aud, str):
        return aud == want
    if isinstance(aud, list):
        return any(isinstance(a, str) and a == want for a in aud)
    return False


def _claims_ok(payload: dict[str, Any], c: _Constraints) -> bool:
    if c.iss:
        iss = payload.get("iss")
        if iss is not None and not isinstance(iss, str):
            raise HostBuiltinError("iss must be a string")
        if iss != c.iss:
            return False
    if "aud" in payload:
        if not _valid_audience(payload["aud"], c.aud):
            return False
    elif c.aud:
        return False
    return _times_ok(payload, c.time / 1e9)


def _times_ok(payload: dict[str, Any], now: float) -> bool:
    for claim in ("exp", "nbf"):
        if claim not in payload:
            continue
        value = payload[claim]
        if isinstance(value, bool) or not isinstance(value, (int, float, RegoBigNumber)):
            raise HostBuiltinError(f"{claim} value must be a number")
        bound = float("inf") if isinstance(value, RegoBigNumber) else value
        if (claim == "exp" and now >= bound) or (claim == "nbf" and now < bound):
            return False
    return True


def decode_verify(jwt: Any, constraints: Any, now_ns: int) -> list[Any]:
    """``io.jwt.decode_verify``: ``[valid, header, payload]`` under OPA's constraints."""
    c = _constraints(constraints, now_ns)
    unverified: list[Any] = [False, {}, {}]
    current = jwt
    while True:
        token = _split(current)
        raw_header = token.decoded_header()
        header = _parse_header(raw_header)
        if not header.valid():
            return unverified
        if c.alg and c.alg != header.alg:
            return unverified
        signature = token.decoded_signature()
        message = f"{token.header}.{token.payload}".encode("utf-8", "surrogatepass")
        if not _signature_ok(c, header, message, signature):
            return unverified
        payload_bytes = b64url_decode(token.payload)
        if header.cty.lower() == "jwt":
            current = _utf8(payload_bytes)
            continue
        break
    payload = _json_object(payload_bytes)
    if not _claims_ok(payload, c):
        return unverified
    return [True, raw_header, payload]


# -- signing -------------------------------------------------------------------------------
def go_json_marshal(value: Any) -> str:
    """Go's ``json.Marshal`` of an OPA value: keys sorted, ``<>&`` and U+2028/9 escaped."""
    text = dump_rego(_sorted(value))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise HostBuiltinError("object keys must be strings")
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    if hasattr(value, "__iter__") and not isinstance(value, str):  # a set: a sorted array
        from evaluator_sidecar.policy.engines.wasm.result import sorted_set  # noqa: PLC0415

        return [_sorted(v) for v in sorted_set(value)]
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(key: Any, alg: str, message: bytes) -> bytes:
    family, size = alg[:2], alg[2:]
    if family == "HS" and isinstance(key, bytes):
        return hmac.new(key, message, _HMACS[size]).digest()
    if family in ("RS", "PS") and isinstance(key, rsa.RSAPrivateKey):
        h = _HASHES[size]()
        pad = (
            padding.PKCS1v15()
            if family == "RS"
            else padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        )
        return key.sign(message, pad, h)
    if family == "ES" and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(_HASHES[size]())))
        width = (key.curve.key_size + 7) // 8
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    raise HostBuiltinError(f"the key does not fit algorithm {alg}")


def encode_sign_raw(headers: Any, payload: Any, jwk: Any) -> str:
    """``io.jwt.encode_sign_raw``: header and payload as given, signed with the JWK's first key."""
    for i, v in enumerate((headers, payload, jwk), 1):
        if not isinstance(v, str):
            raise HostBuiltinError(f"operand {i} must be a string")
    keys = _jwks(jwk)
    if not keys:
        raise HostBuiltinError("no keys found in JWK set")
    key = jwk_key(keys[0])
    try:
        parsed = json.loads(headers)
    except ValueError as exc:
        raise HostBuiltinError(f"invalid header: {exc}") from None
    alg = parsed.get("alg") if isinstance(parsed, dict) else None
    if not isinstance(alg, str):
        raise HostBuiltinError("missing or invalid 'alg' header")
    if alg not in ALGORITHMS:
        raise HostBuiltinError(f"unknown JWS algorithm: {alg}")
    typ = parsed.get("typ")
    if not isinstance(typ, str) or typ == "JWT":
        try:
            json.loads(payload)
        except ValueError:
            raise HostBuiltinError("type is JWT but payload is not JSON") from None
    signing_input = f"{_b64(headers.encode())}.{_b64(payload.encode())}"
    return f"{signing_input}.{_b64(_sign(key, alg, signing_input.encode()))}"


def encode_sign(headers: Any, payload: Any, jwk: Any) -> str:
    """``io.jwt.encode_sign``: the objects marshalled as Go does, then ``encode_sign_raw``."""
    return encode_sign_raw(go_json_marshal(headers), go_json_marshal(payload), go_json_marshal(jwk))
