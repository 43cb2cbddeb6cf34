"""The sidecar's signature check: the trusted-keys folder is re-read when it changes, and
PKG_REQUIRE_SIGNATURES decides what an unsigned snapshot or an unknown key means."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.settings import SidecarSettings
from evaluator_sidecar.sidecar.snapshots import ActivationError
from evaluator_sidecar.sidecar.trust import KeyFolder, SignatureCheck

CHECKSUM = "c" * 64


def _snapshot(signature: dict[str, str] | None) -> PKGSnapshotData:
    return PKGSnapshotData(
        id=1,
        version="rules@1.0.0",
        engine="native",
        wasm_artifact=None,
        checksum=CHECKSUM,
        rules=[],
        signature=signature,
    )


def _sign(key: signing.Ed25519PrivateKey) -> dict[str, str]:
    return signing.sign(key, version="rules@1.0.0", env="prod", checksum=CHECKSUM)


def _write(folder: Path, key: signing.Ed25519PrivateKey) -> None:
    path = folder / f"{signing.key_id_of(key.public_key())}.pub"
    path.write_bytes(signing.public_key_pem(key.public_key()))


def test_the_folder_is_re_read_when_a_key_is_added_or_removed(tmp_path: Path) -> None:
    one, two = signing.generate_private_key(), signing.generate_private_key()
    _write(tmp_path, one)
    (tmp_path / f"{signing.key_id_of(one.public_key())}.key").write_text("private: skipped")
    (tmp_path / "..data").mkdir()  # the kubelet's own entries in a mounted volume
    folder = KeyFolder(tmp_path)
    first = folder.store()
    assert first.key_ids == [signing.key_id_of(one.public_key())]
    assert folder.store() is first  # unchanged: not re-read
    _write(tmp_path, two)
    assert len(folder.store()) == 2
    os.remove(tmp_path / f"{signing.key_id_of(one.public_key())}.pub")
    assert folder.store().key_ids == [signing.key_id_of(two.public_key())]


def test_a_missing_folder_trusts_nothing(tmp_path: Path) -> None:
    assert len(KeyFolder(tmp_path / "absent").store()) == 0


def test_required_refuses_unsigned_and_unknown_keys_and_always_bad_signatures(
    tmp_path: Path,
) -> None:
    trusted, other = signing.generate_private_key(), signing.generate_private_key()
    _write(tmp_path, trusted)
    required = SignatureCheck(required=True, keys=KeyFolder(tmp_path))
    optional = SignatureCheck(required=False, keys=KeyFolder(tmp_path))

    result = required.check(_snapshot(_sign(trusted)))
    assert result is not None
    assert result.verified

    with pytest.raises(ActivationError) as unsigned:
        required.check(_snapshot(None))
    assert (unsigned.value.reason, unsigned.value.transient) == ("signature_required", False)
    assert optional.check(_snapshot(None)) is None

    with pytest.raises(ActivationError) as unknown:
        required.check(_snapshot(_sign(other)))
    assert (unknown.value.reason, unknown.value.transient) == ("unknown_signing_key", True)
    optional_unknown = optional.check(_snapshot(_sign(other)))
    assert optional_unknown is not None
    assert optional_unknown.outcome is signing.Outcome.UNKNOWN_KEY

    bad = {**_sign(trusted), "value": _sign(other)["value"]}
    for check in (required, optional):
        with pytest.raises(ActivationError) as invalid:
            check.check(_snapshot(bad))
        assert invalid.value.reason == "signature_invalid"


def test_without_a_folder_the_message_says_which_variable_to_set() -> None:
    check = SignatureCheck(required=True, keys=None)
    with pytest.raises(ActivationError, match="PKG_TRUSTED_KEYS_DIR"):
        check.check(_snapshot(_sign(signing.generate_private_key())))


@pytest.mark.parametrize(
    ("value", "env", "required"),
    [
        ("", "prod", False),
        ("prod,staging", "prod", True),
        ("prod, staging", "staging", True),
        ("prod,staging", "dev", False),
        ("true", "dev", True),
        ("TRUE", "prod", True),
    ],
)
def test_require_signatures_names_environments_or_all(
    value: str, env: str, required: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKG_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("PKG_REDIS_URL", "redis://x:6379/0")
    monkeypatch.setenv("PKG_REQUIRE_SIGNATURES", value)
    assert SidecarSettings().signatures_required_in(env) is required  # type: ignore[call-arg]
