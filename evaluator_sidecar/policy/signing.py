"""Signed snapshots: ed25519 signatures over a snapshot's version, environment and checksum.

What is signed (the *signed message*) is exactly these UTF-8 bytes::

    pkg.seedcore.io/PolicySnapshot/v1\\n
    version=<spec.version>\\n
    env=<spec.env>\\n
    checksum=<content checksum, 64 lowercase hex>\\n

The checksum is the content checksum of :mod:`evaluator_sidecar.policy.resource_checksum`
(what ``pkg checksum`` prints), computed from the content, never taken from
``spec.checksum``. Binding the version and the environment means a signature cannot
be replayed onto another version, nor a snapshot signed for ``dev`` onto ``prod``.
What the checksum does not cover is not signed either (for engine ``wasm`` the
checksum is the module's bytes: ``spec.wasm.entrypoint`` and ``spec.data`` are not in it).

A signature is ``spec.signature = {keyId, algorithm: ed25519, value}`` with ``value``
the 64 signature bytes in standard base64. A key id is any name the trust store
knows; ``pkg keygen`` names a key by :func:`key_id_of`, the first 16 hex of the
sha256 of the 32 raw public-key bytes.

A :class:`TrustStore` holds several public keys at once (rotation: add the new key,
sign with it, remove the old one once nothing signed with it is left). Public keys
are accepted as PEM (SubjectPublicKeyInfo) or as the base64 of the 32 raw bytes.

:func:`verify` returns a :class:`Verification` with one :class:`Outcome`;
:func:`refusal` says, for an environment that does or does not require signatures,
whether that outcome refuses the snapshot, with a reason and a message saying what
to do. The operator and the sidecars use the same two functions.

Pure: no I/O; callers pass key text in.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# cryptography is imported by the functions that use a key, not here: it costs a
# sidecar ~7 MiB and ~50 ms at start, and a sidecar that serves unsigned snapshots
# (or has no trusted key to check a signature with) never calls them.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "ALGORITHM",
    "MESSAGE_PREFIX",
    "PUBLIC_SUFFIX",
    "KeyFormatError",
    "Outcome",
    "Refusal",
    "TrustStore",
    "Verification",
    "generate_private_key",
    "key_id_of",
    "load_private_key",
    "parse_envs",
    "private_key_pem",
    "public_key_from_text",
    "public_key_pem",
    "refusal",
    "sign",
    "signed_message",
    "verify",
]

ALGORITHM = "ed25519"
MESSAGE_PREFIX = "pkg.seedcore.io/PolicySnapshot/v1"
#: The suffix ``pkg keygen`` gives public key files; stripped from file and ConfigMap key names.
PUBLIC_SUFFIX = ".pub"


class KeyFormatError(ValueError):
    """A key's text is neither PEM nor the base64 of 32 raw ed25519 bytes."""


class Outcome(enum.StrEnum):
    """What verifying one snapshot's signature found."""

    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class Verification:
    outcome: Outcome
    key_id: str | None
    message: str

    @property
    def verified(self) -> bool:
        return self.outcome is Outcome.VERIFIED

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "keyId": self.key_id, "message": self.message}


@dataclass(frozen=True)
class Refusal:
    """Why a snapshot must not be stored or activated: a CamelCase reason and a message."""

    reason: str
    message: str


def signed_message(version: str, env: str, checksum: str) -> bytes:
    """The exact bytes a snapshot's signature signs (see the module docstring)."""
    for name, value in (("version", version), ("env", env), ("checksum", checksum)):
        if not value or "\n" in value:
            raise ValueError(f"cannot sign: {name} {value!r} is empty or has a newline")
    return f"{MESSAGE_PREFIX}\nversion={version}\nenv={env}\nchecksum={checksum}\n".encode()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex of the sha256 of the key's 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the imports

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_private_key() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (keep the file private: mode 0600)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """An ed25519 private key from PKCS#8 PEM (what ``pkg keygen`` writes)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"the private key is {type(key).__name__}, not ed25519")
    return key


def public_key_from_text(text: str | bytes) -> Ed25519PublicKey:
    """An ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of the 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(f"the public key is {type(key).__name__}, not ed25519")
        return key
    try:
        raw = base64.b64decode(b"".join(stripped.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("neither PEM nor base64 of 32 raw ed25519 bytes") from exc
    if len(raw) != 32:
        raise KeyFormatError(f"raw ed25519 public keys are 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, *, version: str, env: str, checksum: str) -> dict[str, str]:
    """``spec.signature`` for a snapshot: ``{keyId, algorithm, value}``."""
    value = key.sign(signed_message(version, env, checksum))
    return {
        "keyId": key_id_of(key.public_key()),
        "algorithm": ALGORITHM,
        "value": base64.b64encode(value).decode("ascii"),
    }


class TrustStore:
    """Public keys trusted at once, by key id; immutable (re-read to rotate)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None = None) -> None:
        self._keys = dict(keys or {})

    @classmethod
    def from_texts(cls, texts: Mapping[str, str | bytes]) -> tuple[TrustStore, list[str]]:
        """A store from ``{key id or file name: PEM or base64}``; also the problems found.

        A name ending in ``.pub`` names key id ``name[:-4]``. Keys that do not parse
        are left out and reported, so one bad entry does not untrust the others.
        """
        keys: dict[str, Ed25519PublicKey] = {}
        problems: list[str] = []
        for name, text in sorted(texts.items()):
            key_id = name.removesuffix(PUBLIC_SUFFIX)
            try:
                keys[key_id] = public_key_from_text(text)
            except KeyFormatError as exc:
                problems.append(f"key {name!r}: {exc}")
        return cls(keys), problems

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str) -> Ed25519PublicKey | None:
        return self._keys.get(key_id)


def verify(
    signature: Mapping[str, Any] | None,
    trust: TrustStore,
    *,
    version: str,
    env: str,
    checksum: str,
) -> Verification:
    """Check ``spec.signature`` against the snapshot's version, env and content checksum."""
    if not signature or not signature.get("value"):
        return Verification(
            Outcome.UNSIGNED,
            None,
            f"snapshot {version} is not signed: sign it with `pkg sign FILE --key PRIVATE_KEY` "
            "(spec.signature) with a key whose public half is trusted",
        )
    key_id = str(signature.get("keyId") or "")
    algorithm = str(signature.get("algorithm") or ALGORITHM)
    if algorithm.lower() != ALGORITHM:
        return Verification(
            Outcome.BAD_SIGNATURE,
            key_id or None,
            f"spec.signature.algorithm is {algorithm!r}; only {ALGORITHM} is supported: "
            "re-sign with `pkg sign`",
        )
    public = trust.get(key_id)
    if public is None:
        known = ", ".join(trust.key_ids) or "none"
        return Verification(
            Outcome.UNKNOWN_KEY,
            key_id or None,
            f"snapshot {version} is signed with key {key_id!r}, which is not trusted (trusted: "
            f"{known}): add its public key to the trusted keys, or re-sign with a trusted key",
        )
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - a key was found

    try:
        raw = base64.b64decode(str(signature["value"]), validate=True)
        public.verify(raw, signed_message(version, env, checksum))
    except (binascii.Error, ValueError, InvalidSignature):
        return Verification(
            Outcome.BAD_SIGNATURE,
            key_id,
            f"the signature of snapshot {version} by key {key_id!r} does not match its version, "
            "env and content: the snapshot changed after signing or the signature was altered; "
            "re-sign it with `pkg sign`",
        )
    return Verification(Outcome.VERIFIED, key_id, f"signed by trusted key {key_id!r}")


#: The condition reason for each outcome that refuses a snapshot.
REASONS = {
    Outcome.UNSIGNED: "SignatureRequired",
    Outcome.UNKNOWN_KEY: "UnknownSigningKey",
    Outcome.BAD_SIGNATURE: "SignatureInvalid",
}


def refusal(result: Verification, *, required: bool) -> Refusal | None:
    """Whether ``result`` refuses the snapshot; None lets it through.

    A bad signature is always refused. Where signatures are required, an unsigned
    snapshot and one signed by an unknown key are refused too; elsewhere they pass
    (the outcome is still recorded).
    """
    if result.outcome is Outcome.VERIFIED:
        return None
    if result.outcome is Outcome.BAD_SIGNATURE or required:
        message = result.message
        if required and result.outcome is Outcome.UNSIGNED:
            message = f"signatures are required in this environment; {message}"
        return Refusal(REASONS[result.outcome], message)
    return None


def parse_envs(value: str | Iterable[str]) -> frozenset[str]:
    """``prod,staging`` (or a list) as a set of environment names, blanks dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return frozenset(item.strip() for item in items if item.strip())
