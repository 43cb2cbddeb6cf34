"""``crypto.x509.*`` and ``crypto.parse_private_keys``, on the ``cryptography`` library.

OPA (``v1/topdown/crypto.go``) returns Go's ``x509.Certificate`` as Go's
``encoding/json`` writes it: exported fields by their Go names, byte slices as
standard base64, big integers as numbers, times as RFC 3339, enums as Go's
numbers, ``nil`` slices as ``null``; plus ``URIStrings``. This module builds
the same objects from ``cryptography``'s parse. Chain verification follows
``verifyX509CertificateChain``: the first certificate is the root, the last the
leaf, the rest intermediates; signatures, validity at the current time, CA
constraints and (Go's default) the server-auth extended key usage are checked.
Operands OPA rejects raise :class:`HostBuiltinError` (the call is undefined).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
import warnings
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoSet

__all__ = [
    "certificate_object",
    "parse_and_verify_certificates",
    "parse_and_verify_certificates_with_options",
    "parse_certificates",
]

_BEGIN = "-----BEGIN"
_PEM = re.compile(rb"-----BEGIN ([^-\r\n]*)-----\r?\n(.*?)-----END \1-----", re.S)

# Go's x509.SignatureAlgorithm numbers by OID (RSASSA-PSS resolved by its hash).
_SIG_ALGS = {
    "1.2.840.113549.1.1.2": 1,
    "1.2.840.113549.1.1.4": 2,
    "1.2.840.113549.1.1.5": 3,
    "1.3.14.3.2.29": 3,
    "1.2.840.113549.1.1.11": 4,
    "1.2.840.113549.1.1.12": 5,
    "1.2.840.113549.1.1.13": 6,
    "1.2.840.10040.4.3": 7,
    "2.16.840.1.101.3.4.3.2": 8,
    "1.2.840.10045.4.1": 9,
    "1.2.840.10045.4.3.2": 10,
    "1.2.840.10045.4.3.3": 11,
    "1.2.840.10045.4.3.4": 12,
    "1.3.101.112": 16,
}
_PSS = {"sha256": 13, "sha384": 14, "sha512": 15}
# Go's x509.ExtKeyUsage numbers by OID.
_EXT_KEY_USAGES = {
    "2.5.29.37.0": 0,
    **{f"1.3.6.1.5.5.7.3.{i}": i for i in range(1, 10)},
    "1.3.6.1.4.1.311.10.3.3": 10,
    "2.16.840.1.113730.4.1": 11,
    "1.3.6.1.4.1.311.2.1.22": 12,
    "1.3.6.1.4.1.311.61.1.1": 13,
}
_SERVER_AUTH, _ANY_EKU = 1, 0
# pkix.Name's fields by the attribute's last arc under 2.5.4.
_NAME_LISTS = {6: "Country", 10: "Organization", 11: "OrganizationalUnit", 7: "Locality"}
_NAME_LISTS |= {8: "Province", 9: "StreetAddress", 17: "PostalCode"}
_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _oid(dotted: str) -> list[int]:
    return [int(p) for p in dotted.split(".")]


def _string(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise HostBuiltinError(f"operand {position} must be a string")
    return value


def _b64decode(text: str) -> bytes:
    """Go's ``base64.StdEncoding.DecodeString``: padded, no stray characters (newlines skipped)."""
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HostBuiltinError(f"illegal base64 data: {exc}") from exc


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    blocks = []
    for match in _PEM.finditer(data):
        body = b"".join(
            line for line in match.group(2).splitlines() if b":" not in line and line.strip()
        )
        blocks.append((match.group(1).decode("latin-1"), _b64decode(body.decode("latin-1"))))
    return blocks


# -- certificates as Go writes them ------------------------------------------------------------
def _name(name: x509.Name) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(_NAME_LISTS.values())
    out |= {"CommonName": "", "SerialNumber": "", "Names": None, "ExtraNames": None}
    names = []
    for rdn in name.rdns:
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else _b64(attr.value)
            names.append({"Type": _oid(attr.oid.dotted_string), "Value": value})
            arcs = _oid(attr.oid.dotted_string)
            if len(arcs) != 4 or arcs[:3] != [2, 5, 4] or not isinstance(attr.value, str):
                continue
            if arcs[3] == 3:
                out["CommonName"] = attr.value
            elif arcs[3] == 5:
                out["SerialNumber"] = attr.value
            elif arcs[3] in _NAME_LISTS:
                key = _NAME_LISTS[arcs[3]]
                out[key] = [*(out[key] or []), attr.value]
    out["Names"] = names or None
    return out


def _public_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return 1, {"N": numbers.n, "E": numbers.e}
    if isinstance(key, dsa.DSAPublicKey):
        n = key.public_numbers()
        params = {
            "P": n.parameter_numbers.p,
            "Q": n.parameter_numbers.q,
            "G": n.parameter_numbers.g,
        }
        return 2, {"Parameters": params, "Y": n.y}
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        return 3, {"Curve": {}, "X": point.x, "Y": point.y}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return 4, _b64(raw)
    return 0, None


def _signature_algorithm(oid: str, hash_name: str | None) -> int:
    if oid == "1.2.840.113549.1.1.10":
        return _PSS.get(hash_name or "", 0)
    return _SIG_ALGS.get(oid, 0)


def _time(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ext(extensions: x509.Extensions, oid: Any) -> Any:
    try:
        return extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _general_names(san: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"DNSNames": None, "EmailAddresses": None, "IPAddresses": None}
    out["URIs"] = out["URIStrings"] = None
    if san is None:
        return out

    def listed(kind: Any) -> list[Any] | None:
        return [str(v) for v in san.get_values_for_type(kind)] or None

    out["DNSNames"] = listed(x509.DNSName)
    out["EmailAddresses"] = listed(x509.RFC822Name)
    out["IPAddresses"] = listed(x509.IPAddress)
    uris = listed(x509.UniformResourceIdentifier)
    if uris:
        out["URIStrings"] = uris
        out["URIs"] = [_url(u) for u in uris]
    return out


def _url(text: str) -> dict[str, Any]:
    """Go's ``url.URL`` struct as JSON, for the common absolute form."""
    match = re.match(
        r"^([A-Za-z][A-Za-z0-9+.-]*):(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?$", text
    )
    scheme, host, path, query, fragment = ("", "", text, "", "")
    if match:
        scheme = match.group(1).lower()
        host, path = match.group(3) or "", match.group(4)
        query, fragment = match.group(6) or "", match.group(8) or ""
    return {
        "Scheme": scheme,
        "Opaque": "",
        "User": None,
        "Host": host,
        "Path": path,
        "RawPath": "",
        "OmitHost": False,
        "ForceQuery": False,
        "RawQuery": query,
        "Fragment": fragment,
        "RawFragment": "",
    }


def _key_usage(ku: Any) -> int:
    if ku is None:
        return 0
    bits = sum(1 << i for i, name in enumerate(_KEY_USAGE_BITS) if getattr(ku, name))
    if ku.key_agreement:
        bits |= (1 << 7) * ku.encipher_only | (1 << 8) * ku.decipher_only
    return bits


def _basic(exts: x509.Extensions) -> dict[str, Any]:
    bc = _ext(exts, ExtensionOID.BASIC_CONSTRAINTS)
    if bc is None:
        return {"BasicConstraintsValid": False, "IsCA": False, "MaxPathLen": 0}
    path_len = -1 if bc.path_length is None else bc.path_length
    return {"BasicConstraintsValid": True, "IsCA": bc.ca, "MaxPathLen": path_len}


def _eku(exts: x509.Extensions) -> tuple[list[int] | None, list[list[int]] | None]:
    eku = _ext(exts, ExtensionOID.EXTENDED_KEY_USAGE)
    if eku is None:
        return None, None
    known = [_EXT_KEY_USAGES[o.dotted_string] for o in eku if o.dotted_string in _EXT_KEY_USAGES]
    unknown = [_oid(o.dotted_string) for o in eku if o.dotted_string not in _EXT_KEY_USAGES]
    return known or None, unknown or None


def _authority_info(exts: x509.Extensions) -> tuple[list[str] | None, list[str] | None]:
    aia = _ext(exts, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if aia is None:
        return None, None
    ocsp = [d.access_location.value for d in aia if d.access_method.dotted_string.endswith(".1")]
    issuers = [d.access_location.value for d in aia if d.access_method.dotted_string.endswith(".2")]
    return ocsp or None, issuers or None


def _extensions(exts: x509.Extensions) -> list[dict[str, Any]] | None:
    out = []
    for ext in exts:
        try:
            value = ext.value.public_bytes()
        except (NotImplementedError, AttributeError, ValueError):
            value = b""
        out.append(
            {"Id": _oid(ext.oid.dotted_string), "Critical": ext.critical, "Value": _b64(value)}
        )
    return out or None


_NULL_FIELDS = (
    "ExtraExtensions",
    "UnhandledCriticalExtensions",
    "PermittedDNSDomains",
    "ExcludedDNSDomains",
    "PermittedIPRanges",
    "ExcludedIPRanges",
    "PermittedEmailAddresses",
    "ExcludedEmailAddresses",
    "PermittedURIDomains",
    "ExcludedURIDomains",
    "CRLDistributionPoints",
    "PolicyIdentifiers",
    "Policies",
    "PolicyMappings",
)


def _serial(cert: x509.Certificate) -> int:
    # Go takes a serial number that is zero or negative (RFC 5280 says positive);
    # cryptography reads it with a deprecation warning, which is no news to the policy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return cert.serial_number


def certificate_object(cert: x509.Certificate) -> dict[str, Any]:
    """One certificate as OPA's ``crypto.x509.parse_certificates`` shows it."""
    exts = cert.extensions
    algorithm, public = _public_key(cert.public_key())
    hash_alg = cert.signature_hash_algorithm
    ski = _ext(exts, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    aki = _ext(exts, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ext_key_usage, unknown_eku = _eku(exts)
    ocsp, issuing = _authority_info(exts)
    basic = _basic(exts)
    out: dict[str, Any] = dict.fromkeys(_NULL_FIELDS)
    out |= {
        "Raw": _b64(cert.public_bytes(serialization.Encoding.DER)),
        "RawTBSCertificate": _b64(cert.tbs_certificate_bytes),
        "RawSubjectPublicKeyInfo": _b64(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
        "RawSubject": _b64(cert.subject.public_bytes()),
        "RawIssuer": _b64(cert.issuer.public_bytes()),
        "Signature": _b64(cert.signature),
        "SignatureAlgorithm": _signature_algorithm(
            cert.signature_algorithm_oid.dotted_string, hash_alg.name if hash_alg else None
        ),
        "PublicKeyAlgorithm": algorithm,
        "PublicKey": public,
        "Version": cert.version.value + 1,
        "SerialNumber": _serial(cert),
        "Issuer": _name(cert.issuer),
        "Subject": _name(cert.subject),
        "NotBefore": _time(cert.not_valid_before_utc),
        "NotAfter": _time(cert.not_valid_after_utc),
        "KeyUsage": _key_usage(_ext(exts, ExtensionOID.KEY_USAGE)),
        "Extensions": _extensions(exts),
        "ExtKeyUsage": ext_key_usage,
        "UnknownExtKeyUsage": unknown_eku,
        **basic,
        "MaxPathLenZero": basic["BasicConstraintsValid"] and basic["MaxPathLen"] == 0,
        "SubjectKeyId": _b64(ski.digest) if ski is not None else None,
        "AuthorityKeyId": _b64(aki.key_identifier) if aki and aki.key_identifier else None,
        "OCSPServer": ocsp,
        "IssuingCertificateURL": issuing,
        "PermittedDNSDomainsCritical": False,
        "InhibitAnyPolicy": 0,
        "InhibitAnyPolicyZero": False,
        "InhibitPolicyMapping": 0,
        "InhibitPolicyMappingZero": False,
        "RequireExplicitPolicy": 0,
        "RequireExplicitPolicyZero": False,
        **_general_names(_ext(exts, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)),
    }
    if out["MaxPathLen"] == -1 and not basic["BasicConstraintsValid"]:
        out["MaxPathLen"] = 0
    return out


def _load_der_chain(data: bytes) -> list[x509.Certificate]:
    """Go's ``x509.ParseCertificates``: DER certificates back to back."""
    certs = []
    while data:
        if len(data) < 2 or data[0] != 0x30:  # a DER SEQUENCE header
            raise HostBuiltinError("x509: malformed certificate")
        length, header = data[1], 2
        if length & 0x80:
            size = length & 0x7F
            length, header = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
        end = header + length
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs.append(x509.load_der_x509_certificate(data[:end]))
        except ValueError as exc:
            raise HostBuiltinError(f"x509: {exc}") from exc
        data = data[end:]
    return certs


def _certs_from_pem(data: bytes) -> list[x509.Certificate]:
    der = b""
    for kind, body in _pem_blocks(data):
        if kind != "CERTIFICATE":
            raise HostBuiltinError(f"PEM block type is '{kind}', expected CERTIFICATE")
        der += body
    return _load_der_chain(der)


def _certs(text: str) -> list[x509.Certificate]:
    if text.startswith(_BEGIN):
        return _certs_from_pem(text.encode("utf-8", "surrogatepass"))
    data = _b64decode(text)
    if data.startswith(_BEGIN.encode()):
        return _certs_from_pem(data)
    return _load_der_chain(data)


def parse_certificates(certs: Any) -> list[dict[str, Any]]:
    """``crypto.x509.parse_certificates(certs)``: PEM, base64 PEM or base64 DER."""
    return [certificate_object(c) for c in _certs(_string(certs, 1))]


# -- chain verification (verifyX509CertificateChain with Go's default options) -----------------
def _may_issue(
    issuer: x509.Certificate, cert: x509.Certificate, *, now: datetime.datetime, below: int
) -> bool:
    """Whether ``issuer`` signed ``cert`` and may, with ``below`` intermediates under it."""
    if issuer.subject != cert.issuer:
        return False
    bc = _ext(issuer.extensions, ExtensionOID.BASIC_CONSTRAINTS)
    if issuer.version == x509.Version.v3 and (bc is None or not bc.ca):
        return False
    if bc is not None and bc.path_length is not None and below > bc.path_length:
        return False
    if not issuer.not_valid_before_utc <= now <= issuer.not_valid_after_utc:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        del exc
        return False
    return True


def _usages_ok(chain: list[x509.Certificate], wanted: set[int]) -> bool:
    """Go's ``checkChainForKeyUsage``: some wanted usage is allowed by every certificate."""
    if _ANY_EKU in wanted:
        return True
    usable = set(wanted)
    for cert in reversed(chain):
        usages, unknown = _eku(cert.extensions)
        if usages is None and unknown is None:
            continue
        if usages is not None and _ANY_EKU in usages:
            continue
        usable &= set(usages or [])
        if not usable:
            return False
    return True


def _hostname_ok(cert: x509.Certificate, name: str) -> bool:
    """Go's ``VerifyHostname``: an IP among the IP SANs, else a DNS SAN (``*.`` one label)."""
    san = _ext(cert.extensions, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    host = name.removeprefix("[").removesuffix("]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    host = host.lower().removesuffix(".")
    for written in san.get_values_for_type(x509.DNSName) if san is not None else []:
        pattern = written.lower().removesuffix(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host and host.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _chain(
    cert: x509.Certificate,
    pool: list[x509.Certificate],
    *,
    root: x509.Certificate,
    now: Any,
    below: int = 0,
) -> list[x509.Certificate] | None:
    """A chain from ``cert`` up to ``root`` through ``pool`` (``below``: intermediates so far)."""
    if _may_issue(root, cert, now=now, below=below):
        return [cert, root]
    for candidate in pool:
        if _may_issue(candidate, cert, now=now, below=below):
            rest = _chain(
                candidate,
                [c for c in pool if c is not candidate],
                root=root,
                now=now,
                below=below + 1,
            )
            if rest is not None:
                return [cert, *rest]
    return None


def _verify(
    certs: Any, *, now: datetime.datetime, usages: set[int], dns: str
) -> list[x509.Certificate] | None:
    """``verifyX509CertificateChain``: the chain from the leaf to the root, None if invalid."""
    try:
        parsed = _certs(_string(certs, 1))
    except HostBuiltinError:
        return None
    if len(parsed) < 2:  # a root and a leaf at least
        return None
    root, leaf, intermediates = parsed[0], parsed[-1], parsed[1:-1]
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return None
    if dns and not _hostname_ok(leaf, dns):
        return None
    chain = _chain(leaf, intermediates, root=root, now=now)
    if chain is None or not _usages_ok(chain, usages):
        return None
    return chain


def parse_and_verify_certificates(certs: Any) -> list[Any]:
    """``crypto.x509.parse_and_verify_certificates(certs)``: [valid, chain from leaf to root]."""
    now = datetime.datetime.now(datetime.UTC)
    chain = _verify(certs, now=now, usages={_SERVER_AUTH}, dns="")
    if chain is None:
        return [False, []]
    return [True, [certificate_object(c) for c in chain]]


_KEY_USAGE_NAMES = {
    "KeyUsageAny": 0,
    "KeyUsageServerAuth": 1,
    "KeyUsageClientAuth": 2,
    "KeyUsageCodeSigning": 3,
    "KeyUsageEmailProtection": 4,
    "KeyUsageIPSECEndSystem": 5,
    "KeyUsageIPSECTunnel": 6,
    "KeyUsageIPSECUser": 7,
    "KeyUsageTimeStamping": 8,
    "KeyUsageOCSPSigning": 9,
    "KeyUsageMicrosoftServerGatedCrypto": 10,
    "KeyUsageNetscapeServerGatedCrypto": 11,
    "KeyUsageMicrosoftCommercialCodeSigning": 12,
    "KeyUsageMicrosoftKernelCodeSigning": 13,
}


def _int64(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise HostBuiltinError(f"'{name}' should be a valid int64 number")
    return value


def _verify_options(options: Any) -> tuple[datetime.datetime, set[int], str]:
    """``extractVerifyOpts``: DNSName, CurrentTime (ns), KeyUsages, MaxConstraintComparisons."""
    if not isinstance(options, dict):
        raise HostBuiltinError("operand 2 must be an object")
    now = datetime.datetime.now(datetime.UTC)
    usages: set[int] = set()
    dns = ""
    for key, value in options.items():
        if not isinstance(key, str):
            continue
        if key == "DNSName":
            if not isinstance(value, str):
                raise HostBuiltinError("'DNSName' should be a string")
            dns = value.strip('"')
        elif key == "CurrentTime":
            seconds, _ns = divmod(_int64(value, key), 10**9)
            now = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
                seconds=seconds
            )
        elif key == "MaxConstraintComparisons":
            _int64(value, key)  # name constraints are not counted here: the value is checked only
        elif key == "KeyUsages":
            if not isinstance(value, (list, RegoSet)):
                raise HostBuiltinError("'KeyUsages' should be an Array or Set")
            names = [v.strip('"') for v in value if isinstance(v, str)]
            if any(n not in _KEY_USAGE_NAMES for n in names):
                raise HostBuiltinError("invalid entries for 'KeyUsages' found")
            usages |= {_KEY_USAGE_NAMES[n] for n in names}
        else:
            raise HostBuiltinError("invalid key option")
    return now, usages or {_SERVER_AUTH}, dns


def parse_and_verify_certificates_with_options(certs: Any, options: Any) -> list[Any]:
    """``crypto.x509.parse_and_verify_certificates_with_options(certs, options)``.

    As OPA returns them here, the certificates are Go's plain ``x509.Certificate``s,
    without ``URIStrings``.
    """
    if not isinstance(options, dict):
        raise HostBuiltinError("operand 2 must be an object")
    try:
        _certs(_string(certs, 1))
    except HostBuiltinError:
        return [False, []]  # as OPA: unreadable certificates before bad options
    now, usages, dns = _verify_options(options)
    chain = _verify(certs, now=now, usages=usages, dns=dns)
    if chain is None:
        return [False, []]
    plain = [certificate_object(c) for c in chain]
    for cert in plain:
        cert.pop("URIStrings")
    return [True, plain]
