"""The webhook's CA and serving certificate: made, judged and renewed. Pure (``now`` is an
argument; keys come from the operating system's random source).

The Secret holds ``ca.crt``/``ca.key`` (a CA that lives long), ``tls.crt``/``tls.key``
(the serving certificate it signs, which lives short) and ``ca-bundle.crt``, what the
webhook configuration's ``caBundle`` carries: the current CA and, after a CA renewal,
the previous one until it expires, so that replicas still serving a certificate of the
old CA are trusted while they catch up. A serving certificate is renewed
``renew_before`` ahead of its expiry; the CA when it would no longer outlive a fresh
serving certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["BUNDLE", "CA_CERT", "CA_KEY", "TLS_CERT", "TLS_KEY", "CertPlan", "Lifetimes", "plan"]

CA_CERT, CA_KEY, TLS_CERT, TLS_KEY, BUNDLE = (
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "ca-bundle.crt",
)
#: Issued a little in the past: clocks of the API server and the operator differ.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Lifetimes:
    cert: dt.timedelta
    renew_before: dt.timedelta
    ca: dt.timedelta


@dataclass(frozen=True)
class CertPlan:
    """The Secret's data as it must be, whether that differs from what was read, and why."""

    data: dict[str, bytes]
    changed: bool
    reason: str

    @property
    def not_after(self) -> dt.datetime:
        return x509.load_pem_x509_certificate(self.data[TLS_CERT]).not_valid_after_utc


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca(now: dt.datetime, life: Lifetimes) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"pkg-operator-webhook-ca-{now:%Y%m%d%H%M%S}")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + life.ca)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _issue(
    ca_pem: bytes, ca_key_pem: bytes, names: Sequence[str], now: dt.datetime, life: Lifetimes
) -> tuple[bytes, bytes]:
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)  # we wrote it
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + life.cert, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in ext.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def _wanted_sans(names: Sequence[str]) -> set[str]:
    result = set()
    for name in names:
        try:
            result.add(str(ipaddress.ip_address(name)))
        except ValueError:
            result.add(name)
    return result


def _leaf_problem(
    data: Mapping[str, bytes],
    ca: x509.Certificate,
    names: Sequence[str],
    now: dt.datetime,
    life: Lifetimes,
) -> str | None:
    """Why the serving certificate must be renewed, or None."""
    try:
        cert = x509.load_pem_x509_certificate(data[TLS_CERT])
        key = serialization.load_pem_private_key(data[TLS_KEY], password=None)
    except (KeyError, ValueError):
        return "serving certificate missing or unreadable"
    if cert.public_key() != key.public_key():
        return "serving certificate and key do not match"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "serving certificate not signed by the current CA"
    if _sans(cert) != _wanted_sans(names):
        return f"serving certificate names {sorted(_sans(cert))}, wanted {sorted(set(names))}"
    if cert.not_valid_after_utc - now <= life.renew_before:
        return f"serving certificate expires {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    return None


def _bundle(current_ca: bytes, previous: bytes, now: dt.datetime) -> bytes:
    """The current CA first, then earlier CAs still valid (after a CA renewal)."""
    kept = [current_ca]
    for cert in x509.load_pem_x509_certificates(previous) if previous.strip() else []:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if pem not in kept and cert.not_valid_after_utc > now:
            kept.append(pem)
    return b"".join(kept)


def plan(
    data: Mapping[str, bytes] | None, names: Sequence[str], now: dt.datetime, life: Lifetimes
) -> CertPlan:
    """What the Secret must hold at ``now``: ``data`` itself when it is still good."""
    current = dict(data or {})
    reason = ""
    try:
        ca = x509.load_pem_x509_certificate(current[CA_CERT])
        serialization.load_pem_private_key(current[CA_KEY], password=None)
    except (KeyError, ValueError):
        ca, reason = None, "no CA yet (or unreadable)"
    if ca is not None and ca.not_valid_after_utc - now <= life.cert + life.renew_before:
        reason = f"CA expires {ca.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    previous = current.get(BUNDLE, b"")
    if reason:
        if ca is not None:
            # The CA being replaced stays trusted while replicas still serve its certificate.
            previous += ca.public_bytes(serialization.Encoding.PEM)
        current[CA_CERT], current[CA_KEY] = _new_ca(now, life)
        ca = x509.load_pem_x509_certificate(current[CA_CERT])
        current.pop(TLS_CERT, None)
    assert ca is not None  # made just above when missing
    leaf = _leaf_problem(current, ca, names, now, life)
    if leaf:
        current[TLS_CERT], current[TLS_KEY] = _issue(
            current[CA_CERT], current[CA_KEY], names, now, life
        )
        reason = reason or leaf
    current[BUNDLE] = _bundle(current[CA_CERT], previous, now)
    changed = dict(data or {}) != current
    return CertPlan(current, changed, reason or ("bundle updated" if changed else "current"))
