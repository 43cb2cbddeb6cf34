"""``crypto.x509.parse_certificate_request``, ``parse_keypair``, ``parse_rsa_private_key``,
``crypto.parse_private_keys``: CSRs and private keys as OPA (``v1/topdown/crypto.go``) shows them.

Private keys are Go's ``json.Marshal`` of its key types (RSA: ``N``, ``E``,
``D``, ``Primes``, ``Precomputed``; ECDSA: ``Curve``, ``X``, ``Y``, ``D``;
Ed25519: the 64 key bytes in base64); ``parse_rsa_private_key`` gives the key
as a JWK. Operands OPA rejects raise :class:`HostBuiltinError` (undefined).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.hostx509 import (
    _b64,
    _b64decode,
    _certs_from_pem,
    _ext,
    _general_names,
    _name,
    _oid,
    _pem_blocks,
    _public_key,
    _signature_algorithm,
    _string,
    certificate_object,
)

__all__ = [
    "parse_certificate_request",
    "parse_keypair",
    "parse_private_keys",
    "parse_rsa_private_key",
]

_BEGIN = b"-----BEGIN"
_KEY_BLOCKS = ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY")
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"


def _load_key(der: bytes) -> Any:
    try:
        return serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:
        raise HostBuiltinError(f"x509: failed to parse private key: {exc}") from exc


def _private_key_object(key: Any) -> Any:
    """Go's ``json.Marshal`` of an ``*rsa.PrivateKey``, ``*ecdsa.PrivateKey``, ``ed25519``."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return {
            "N": n.public_numbers.n,
            "E": n.public_numbers.e,
            "D": n.d,
            "Primes": [n.p, n.q],
            "Precomputed": {"Dp": n.dmp1, "Dq": n.dmq1, "Qinv": n.iqmp, "CRTValues": []},
        }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        e = key.private_numbers()
        return {"Curve": {}, "X": e.public_numbers.x, "Y": e.public_numbers.y, "D": e.private_value}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _b64(seed + public)
    raise HostBuiltinError(f"unsupported private key type {type(key).__name__}")


def _private_keys(text: str) -> list[Any]:
    """``getPrivateKeysFromPEMData``: base64 of PEM or PEM; key blocks parsed, others skipped."""
    data = text.encode("utf-8", "surrogatepass")
    try:
        data = base64.b64decode(data, validate=True)
    except ValueError as exc:
        del exc  # not base64: the text is PEM itself
    return [_load_key(body) for kind, body in _pem_blocks(data) if kind in _KEY_BLOCKS]


def parse_private_keys(keys: Any) -> Any:
    """``crypto.parse_private_keys(keys)``: every private key in PEM (or base64 PEM) text."""
    text = _string(keys, 1)
    if text == "":
        return None
    return [_private_key_object(k) for k in _private_keys(text)]


def _b64url_int(value: int, size: int = 0) -> str:
    raw = value.to_bytes(max(size, (value.bit_length() + 7) // 8, 1), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        fields = {"n": n.public_numbers.n, "e": n.public_numbers.e, "d": n.d, "p": n.p, "q": n.q}
        fields |= {"dp": n.dmp1, "dq": n.dmq1, "qi": n.iqmp}
        return {"kty": "RSA", **{k: _b64url_int(v) for k, v in fields.items()}}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        e = key.private_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return {
            "kty": "EC",
            "crv": crv.get(key.curve.name, key.curve.name),
            "x": _b64url_int(e.public_numbers.x, size),
            "y": _b64url_int(e.public_numbers.y, size),
            "d": _b64url_int(e.private_value, size),
        }
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        enc = base64.urlsafe_b64encode
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": enc(public).rstrip(b"=").decode(),
            "d": enc(seed).rstrip(b"=").decode(),
        }
    raise HostBuiltinError(f"unsupported private key type {type(key).__name__}")


def parse_rsa_private_key(pem: Any) -> Any:
    """``crypto.x509.parse_rsa_private_key(pem)``: the first private key, as a JWK."""
    text = _string(pem, 1)
    if text == "":
        raise HostBuiltinError("input PEM data was empty")
    if not text.startswith(_BEGIN.decode()):
        text = _b64decode(text).decode("utf-8", "replace")
    keys = _private_keys(text)
    return _jwk(keys[0]) if keys else None


def parse_certificate_request(csr: Any) -> dict[str, Any]:
    """``crypto.x509.parse_certificate_request(csr)``: PEM or base64 (PEM or DER)."""
    text = _string(csr, 1)
    data = text.encode("utf-8", "surrogatepass")
    if not text.startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        data = _b64decode(text)
    blocks = _pem_blocks(data)
    if blocks:
        if blocks[0][0] != "CERTIFICATE REQUEST":
            raise HostBuiltinError("invalid PEM-encoded certificate signing request")
        data = blocks[0][1]
    try:
        req = x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise HostBuiltinError(f"x509: {exc}") from exc
    return _csr_object(req)


def _csr_object(req: x509.CertificateSigningRequest) -> dict[str, Any]:
    algorithm, public = _public_key(req.public_key())
    hash_alg = req.signature_hash_algorithm
    exts = req.extensions
    ext_list = []
    for ext in exts:
        ext_list.append(
            {
                "Id": _oid(ext.oid.dotted_string),
                "Critical": ext.critical,
                "Value": _b64(ext.value.public_bytes()),
            }
        )
    attributes = None
    if ext_list:
        values = [
            {"Type": e["Id"], "Value": True if e["Critical"] else e["Value"]} for e in ext_list
        ]
        attributes = [{"Type": _oid(_EXTENSION_REQUEST), "Value": [values]}]
    names = _general_names(_ext(exts, x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME))
    names.pop("URIStrings")
    return {
        "Raw": _b64(req.public_bytes(serialization.Encoding.DER)),
        "RawTBSCertificateRequest": _b64(req.tbs_certrequest_bytes),
        "RawSubjectPublicKeyInfo": _b64(
            req.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        "RawSubject": _b64(req.subject.public_bytes()),
        "Version": 0,
        "Signature": _b64(req.signature),
        "SignatureAlgorithm": _signature_algorithm(
            req.signature_algorithm_oid.dotted_string, hash_alg.name if hash_alg else None
        ),
        "PublicKeyAlgorithm": algorithm,
        "PublicKey": public,
        "Subject": _name(req.subject),
        "Attributes": attributes,
        "Extensions": ext_list or None,
        "ExtraExtensions": None,
        **names,
    }


def _pem_or_b64(value: Any, position: int) -> bytes:
    text = _string(value, position)
    if text.startswith(_BEGIN.decode()):
        return text.encode("utf-8", "surrogatepass")
    return _b64decode(text)


def parse_keypair(cert: Any, key: Any) -> dict[str, Any]:
    """``crypto.x509.parse_keypair(cert, key)``: Go's ``tls.Certificate`` of the pair."""
    cert_data, key_data = _pem_or_b64(cert, 1), _pem_or_b64(key, 2)
    if cert_data.startswith(_BEGIN):
        certs = _certs_from_pem(cert_data)
    else:
        certs = [x509.load_der_x509_certificate(cert_data)]
    if not certs:
        raise HostBuiltinError("tls: failed to find any PEM data in certificate input")
    if key_data.startswith(_BEGIN):
        blocks = [b for kind, b in _pem_blocks(key_data) if kind.endswith("PRIVATE KEY")]
        if not blocks:
            raise HostBuiltinError("tls: failed to find any PEM data in key input")
        key_data = blocks[0]
    private = _load_key(key_data)
    own = (
        certs[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    if (
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        != own
    ):
        raise HostBuiltinError("tls: private key does not match public key")
    leaf = certificate_object(certs[0])
    leaf.pop("URIStrings")
    return {
        "Certificate": [_b64(c.public_bytes(serialization.Encoding.DER)) for c in certs],
        "PrivateKey": _private_key_object(private),
        "SupportedSignatureAlgorithms": None,
        "OCSPStaple": None,
        "SignedCertificateTimestamps": None,
        "Leaf": leaf,
    }
