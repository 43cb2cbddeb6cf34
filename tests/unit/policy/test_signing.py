"""The pure signing module: the signed message, key ids, the trust store, outcomes."""

from __future__ import annotations

import base64

import pytest

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.signing import Outcome, TrustStore

CHECKSUM = "a" * 64


def _store(*keys: signing.Ed25519PrivateKey) -> TrustStore:
    texts = {
        signing.key_id_of(k.public_key()): signing.public_key_pem(k.public_key()) for k in keys
    }
    store, problems = TrustStore.from_texts(texts)
    assert problems == []
    return store


def test_the_signed_message_is_exactly_as_documented() -> None:
    assert signing.signed_message("rules@1.0.0", "prod", CHECKSUM) == (
        b"pkg.seedcore.io/PolicySnapshot/v1\nversion=rules@1.0.0\nenv=prod\nchecksum="
        + CHECKSUM.encode()
        + b"\n"
    )


def test_a_newline_cannot_smuggle_fields_into_the_message() -> None:
    with pytest.raises(ValueError, match="newline"):
        signing.signed_message("rules@1.0.0\nenv=prod", "dev", CHECKSUM)


def test_key_id_is_the_first_16_hex_of_the_raw_keys_sha256() -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    key = signing.generate_private_key()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signing.key_id_of(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


def test_sign_then_verify() -> None:
    key = signing.generate_private_key()
    sig = signing.sign(key, version="rules@1.0.0", env="prod", checksum=CHECKSUM)
    assert sig["algorithm"] == "ed25519"
    assert len(base64.b64decode(sig["value"])) == 64
    result = signing.verify(sig, _store(key), version="rules@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.VERIFIED
    assert result.key_id == sig["keyId"]
    assert signing.refusal(result, required=True) is None


@pytest.mark.parametrize(
    ("version", "env", "checksum"),
    [
        ("rules@1.0.1", "prod", CHECKSUM),
        ("rules@1.0.0", "dev", CHECKSUM),
        ("rules@1.0.0", "prod", "b" * 64),
    ],
)
def test_a_signature_does_not_carry_over_to_another_version_env_or_content(
    version: str, env: str, checksum: str
) -> None:
    key = signing.generate_private_key()
    sig = signing.sign(key, version="rules@1.0.0", env="prod", checksum=CHECKSUM)
    result = signing.verify(sig, _store(key), version=version, env=env, checksum=checksum)
    assert result.outcome is Outcome.BAD_SIGNATURE
    refused = signing.refusal(result, required=False)
    assert refused is not None
    assert refused.reason == "SignatureInvalid"
    assert "re-sign" in refused.message


def test_a_tampered_value_is_a_bad_signature() -> None:
    key = signing.generate_private_key()
    sig = signing.sign(key, version="v@1.0.0", env="prod", checksum=CHECKSUM)
    raw = bytearray(base64.b64decode(sig["value"]))
    raw[0] ^= 1
    sig["value"] = base64.b64encode(bytes(raw)).decode()
    result = signing.verify(sig, _store(key), version="v@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.BAD_SIGNATURE
    sig["value"] = "not base64!"
    result = signing.verify(sig, _store(key), version="v@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.BAD_SIGNATURE


def test_another_algorithm_is_refused() -> None:
    key = signing.generate_private_key()
    sig = {
        **signing.sign(key, version="v@1.0.0", env="prod", checksum=CHECKSUM),
        "algorithm": "rsa",
    }
    result = signing.verify(sig, _store(key), version="v@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.BAD_SIGNATURE
    assert "ed25519" in result.message


def test_unsigned_passes_only_where_signatures_are_not_required() -> None:
    result = signing.verify(None, TrustStore(), version="v@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.UNSIGNED
    assert signing.refusal(result, required=False) is None
    refused = signing.refusal(result, required=True)
    assert refused is not None
    assert refused.reason == "SignatureRequired"
    assert "pkg sign" in refused.message


def test_an_unknown_key_is_refused_where_required_and_names_the_trusted_ones() -> None:
    trusted, other = signing.generate_private_key(), signing.generate_private_key()
    sig = signing.sign(other, version="v@1.0.0", env="prod", checksum=CHECKSUM)
    result = signing.verify(sig, _store(trusted), version="v@1.0.0", env="prod", checksum=CHECKSUM)
    assert result.outcome is Outcome.UNKNOWN_KEY
    assert signing.key_id_of(trusted.public_key()) in result.message
    assert signing.refusal(result, required=False) is None
    refused = signing.refusal(result, required=True)
    assert refused is not None
    assert refused.reason == "UnknownSigningKey"


def test_several_keys_are_trusted_at_once_for_rotation() -> None:
    old, new = signing.generate_private_key(), signing.generate_private_key()
    store = _store(old, new)
    for key in (old, new):
        sig = signing.sign(key, version="v@1.0.0", env="prod", checksum=CHECKSUM)
        assert signing.verify(sig, store, version="v@1.0.0", env="prod", checksum=CHECKSUM).verified


def test_trust_store_reads_pem_and_raw_base64_and_reports_bad_entries() -> None:
    from cryptography.hazmat.primitives import serialization

    key = signing.generate_private_key()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    store, problems = TrustStore.from_texts(
        {
            "named.pub": base64.b64encode(raw).decode(),
            "pem": signing.public_key_pem(key.public_key()),
            "broken": "hello",
            "short": base64.b64encode(b"x" * 5).decode(),
        }
    )
    assert store.key_ids == ["named", "pem"]
    assert len(problems) == 2
    sig = {**signing.sign(key, version="v@1.0.0", env="prod", checksum=CHECKSUM), "keyId": "named"}
    assert signing.verify(sig, store, version="v@1.0.0", env="prod", checksum=CHECKSUM).verified


def test_private_keys_round_trip_and_other_kinds_are_refused() -> None:
    key = signing.generate_private_key()
    again = signing.load_private_key(signing.private_key_pem(key))
    assert signing.key_id_of(again.public_key()) == signing.key_id_of(key.public_key())
    with pytest.raises(signing.KeyFormatError):
        signing.load_private_key(b"not a key")


def test_parse_envs() -> None:
    assert signing.parse_envs(" prod, staging ,,") == frozenset({"prod", "staging"})
    assert signing.parse_envs("") == frozenset()
