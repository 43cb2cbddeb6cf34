"""The operator's signature check before storing (effects.verify), with the trusted keys
stubbed: which snapshots are refused with which reason, and what goes into PostgreSQL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.model import PKGSnapshotData
from pkg_operator.snapshot import effects, trust

CHECKSUM = "d" * 64
KEY, OTHER = signing.generate_private_key(), signing.generate_private_key()


def _loaded(env: str, signature: dict[str, str] | None) -> effects.Loaded:
    snapshot = PKGSnapshotData(
        id=0,
        version="rules@2.0.0",
        engine="native",
        wasm_artifact=None,
        checksum=CHECKSUM,
        rules=[],
        env=env,
        signature=signature,
    )
    return effects.Loaded(snapshot, evaluator=object())  # type: ignore[arg-type]


def _sign(key: signing.Ed25519PrivateKey, env: str = "prod") -> dict[str, str]:
    return signing.sign(key, version="rules@2.0.0", env=env, checksum=CHECKSUM)


def _ctx(require: str) -> Any:
    settings = SimpleNamespace(
        signatures_required_in=lambda env: env in require.split(","),
        trusted_keys_ref=("pkg-system", "keys"),
    )
    return SimpleNamespace(settings=settings)


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    async def trusted(ref: tuple[str, str] | None) -> signing.TrustStore:
        return signing.TrustStore({signing.key_id_of(KEY.public_key()): KEY.public_key()})

    monkeypatch.setattr(trust, "trusted_keys", trusted)


@pytest.mark.parametrize(
    ("require", "env", "signature", "reason"),
    [
        ("prod", "prod", None, "SignatureRequired"),
        ("prod", "prod", "other", "UnknownSigningKey"),
        ("prod", "prod", "wrong-env", "SignatureInvalid"),
        ("", "prod", "wrong-env", "SignatureInvalid"),
        ("prod", "prod", "good", None),
        ("prod", "dev", None, None),
        ("", "dev", "other", None),
    ],
)
async def test_refusals(require: str, env: str, signature: str | None, reason: str | None) -> None:
    sig = {
        None: None,
        "good": _sign(KEY, env),
        "other": _sign(OTHER, env),
        "wrong-env": _sign(KEY, "staging"),
    }[signature]
    result = await effects.verify(_ctx(require), _loaded(env, sig))
    if reason is None:
        assert result.rejected is None
        assert result.snapshot is not None
    else:
        assert result.rejected is not None
        assert result.rejected[0] == reason
        assert result.snapshot is None
        # A key can be added to the trusted keys later: that refusal is retried.
        assert (reason in effects.RETRIED_REJECTIONS) is (reason == "UnknownSigningKey")


async def test_a_verified_signature_and_its_outcome_go_into_the_stored_metadata() -> None:
    result = await effects.verify(_ctx("prod"), _loaded("prod", _sign(KEY)))
    metadata = effects.signature_metadata(result)
    assert metadata["signature"]["keyId"] == signing.key_id_of(KEY.public_key())
    assert metadata["signature_verification"] == {
        "outcome": "verified",
        "keyId": signing.key_id_of(KEY.public_key()),
        "by": "pkg-operator",
    }
    unsigned = await effects.verify(_ctx(""), _loaded("prod", None))
    assert effects.signature_metadata(unsigned) == {}


async def test_unreadable_trusted_keys_are_a_retried_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreadable(ref: tuple[str, str] | None) -> signing.TrustStore:
        raise trust.KubeError("ConfigMap pkg-system/keys does not exist")

    monkeypatch.setattr(trust, "trusted_keys", unreadable)
    result = await effects.verify(_ctx("prod"), _loaded("prod", _sign(KEY)))
    assert result.rejected is not None
    assert result.rejected[0] == "TrustedKeysUnavailable"
    # Unsigned where required: no key could help, so that is what the status says.
    unsigned = await effects.verify(_ctx("prod"), _loaded("prod", None))
    assert unsigned.rejected is not None
    assert unsigned.rejected[0] == "SignatureRequired"
    assert "TrustedKeysUnavailable" in effects.RETRIED_REJECTIONS
