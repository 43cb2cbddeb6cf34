"""The webhook's CA and serving certificate: what the Secret must hold at a given time."""

from __future__ import annotations

import datetime as dt
import ssl

from cryptography import x509

from pkg_operator.inject.certs import BUNDLE, CA_CERT, TLS_CERT, Lifetimes, plan

NAMES = ["pkg-operator-webhook.pkg-system.svc", "127.0.0.1"]
LIFE = Lifetimes(
    cert=dt.timedelta(days=90), renew_before=dt.timedelta(days=30), ca=dt.timedelta(days=3650)
)
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_an_empty_secret_gets_a_ca_and_a_certificate_for_the_names() -> None:
    first = plan(None, NAMES, T0, LIFE)
    assert first.changed
    leaf = cert(first.data[TLS_CERT])
    leaf.verify_directly_issued_by(cert(first.data[CA_CERT]))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NAMES[0]]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.not_valid_after_utc == T0 + LIFE.cert
    assert first.data[BUNDLE] == first.data[CA_CERT]


def test_a_current_secret_is_kept_as_it_is() -> None:
    first = plan(None, NAMES, T0, LIFE)
    again = plan(first.data, NAMES, T0 + dt.timedelta(days=59), LIFE)
    assert not again.changed
    assert again.data == first.data


def test_the_serving_certificate_is_renewed_before_it_expires_under_the_same_ca() -> None:
    first = plan(None, NAMES, T0, LIFE)
    later = plan(first.data, NAMES, T0 + dt.timedelta(days=61), LIFE)
    assert later.changed
    assert "expires" in later.reason
    assert later.data[CA_CERT] == first.data[CA_CERT]  # caBundle unchanged: no window
    assert later.data[BUNDLE] == first.data[BUNDLE]
    assert later.data[TLS_CERT] != first.data[TLS_CERT]
    assert cert(later.data[TLS_CERT]).not_valid_after_utc == T0 + dt.timedelta(days=61 + 90)


def test_new_names_get_a_new_certificate() -> None:
    first = plan(None, NAMES, T0, LIFE)
    moved = plan(first.data, [*NAMES, "pkg.example"], T0, LIFE)
    assert moved.changed
    assert "names" in moved.reason


def test_a_ca_near_its_end_is_replaced_and_the_old_one_stays_in_the_bundle() -> None:
    short = Lifetimes(cert=LIFE.cert, renew_before=LIFE.renew_before, ca=dt.timedelta(days=300))
    first = plan(None, NAMES, T0, short)
    # 300 - 181 = 119 days left: less than a certificate (90) plus the renewal margin (30).
    later = plan(first.data, NAMES, T0 + dt.timedelta(days=181), short)
    assert later.changed
    assert "CA expires" in later.reason
    bundle = x509.load_pem_x509_certificates(later.data[BUNDLE])
    assert [c.subject for c in bundle] == [
        cert(later.data[CA_CERT]).subject,
        cert(first.data[CA_CERT]).subject,
    ]
    cert(later.data[TLS_CERT]).verify_directly_issued_by(bundle[0])
    # Once the old CA has expired, it leaves the bundle.
    gone = plan(later.data, NAMES, T0 + dt.timedelta(days=320), short)
    assert len(x509.load_pem_x509_certificates(gone.data[BUNDLE])) == 1


def test_a_tampered_certificate_is_replaced() -> None:
    first = plan(None, NAMES, T0, LIFE)
    other = plan(None, NAMES, T0, LIFE)
    mixed = {**first.data, TLS_CERT: other.data[TLS_CERT]}
    fixed = plan(mixed, NAMES, T0, LIFE)
    assert fixed.changed
    fixed_leaf = cert(fixed.data[TLS_CERT])
    fixed_leaf.verify_directly_issued_by(cert(first.data[CA_CERT]))


def test_the_pair_loads_into_an_ssl_context(tmp_path: object) -> None:
    data = plan(None, NAMES, dt.datetime.now(dt.UTC), LIFE).data
    from pathlib import Path

    path = Path(str(tmp_path)) / "pair.pem"
    path.write_bytes(data[TLS_CERT] + data["tls.key"])
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(path))
