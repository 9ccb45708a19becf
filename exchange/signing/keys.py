"""Signing keys of cx-sig v1: Ed25519 and ECDSA P-256, their key ids, and keys at rest.

Two algorithms (research/security.md 0, row 4), pinned per key:

* ``"Ed25519"``: EdDSA over edwards25519 (RFC 8032 section 5.1), 64-byte signatures,
  deterministic. OpenSSL rejects a non-canonical ``S``, so signatures are not malleable.
* ``"ECDSA-P256"``: ECDSA over NIST P-256 with SHA-256 (FIPS 186-5 section 6; curve
  secp256r1 of SEC 1 / SEC 2), for members whose HSM lacks Ed25519. The signature is
  written raw as ``r || s``, two 32-byte big-endian integers (64 bytes, the same size as
  Ed25519), not DER. ``s`` is always in *low-S* form (``s <= n/2``): the signer
  normalises, and the verifier refuses a high ``s``, so nobody can turn one valid
  signature into a second one (``(r, n - s)``) and publish different bytes for the same
  object version.

The key id is ``"sha256:" + base64url-no-padding(SHA-256(DER SubjectPublicKeyInfo))``
(research/security.md 1.5), over the SPKI as re-encoded here: RFC 8410 for Ed25519,
RFC 5480 with an uncompressed point for P-256. Anyone holding the public key can compute
it, and it names exactly one key of one algorithm.

Private keys at rest are PKCS#8 PEM encrypted under a passphrase (``cryptography``'s
``BestAvailableEncryption``; with cryptography 50 that is PBES2 with PBKDF2-HMAC-SHA256 at
2048 iterations and AES-256-CBC, readable by ``openssl pkey``). 2048 iterations slow an
offline guess very little, so the passphrase must be long and random, or the key kept in
an HSM; :mod:`exchange.signing.keyfiles` writes and reads such keys as files.

Only :mod:`exchange.signing` may import ``cryptography.hazmat``, and within it only this
module does: everything else handles :class:`SigningKey` and :class:`PublicKey`. No I/O.

Errors: :class:`~exchange.errors.SignatureError` for anything about key material,
passphrases and signatures.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final, Literal, NewType, get_args

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization  # noqa: TID251
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: TID251
from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: TID251
    decode_dss_signature,
    encode_dss_signature,
)

from exchange.errors import SignatureError

__all__ = [
    "ALGORITHMS",
    "SIGNATURE_BYTES",
    "Algorithm",
    "KeyId",
    "PublicKey",
    "SigningKey",
    "encrypt_private_key",
    "generate",
    "key_id",
    "load_private_key",
    "load_public_der",
    "load_public_pem",
    "load_raw_private_key",
]

Algorithm = Literal["Ed25519", "ECDSA-P256"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)

#: A key id, ``sha256:<43 base64url characters>``.
KeyId = NewType("KeyId", str)

#: Every cx-sig v1 signature is 64 bytes (Ed25519 ``R || S``; ECDSA ``r || s``).
SIGNATURE_BYTES: Final = 64

#: The order n of the P-256 base point (FIPS 186-5 / SEC 2 secp256r1).
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())

_PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PrivateKeyObject = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def key_id(spki_der: bytes) -> KeyId:
    """The cx-sig key id of a public key.

    Args:
        spki_der: The key's DER SubjectPublicKeyInfo (:attr:`PublicKey.spki_der`).

    Returns:
        ``"sha256:"`` followed by the unpadded base64url SHA-256 of ``spki_der``.
    """
    digest = hashlib.sha256(spki_der).digest()
    return KeyId("sha256:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def _algorithm_of(key: object, what: str) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ECDSA-P256"
        raise SignatureError(
            f"{what} is an EC key on curve {key.curve.name}; cx-sig v1 ECDSA keys must be"
            " on P-256 (secp256r1)"
        )
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "").replace("PrivateKey", "")
    raise SignatureError(
        f"{what} is a {kind or 'non-EC'} key; cx-sig v1 accepts Ed25519 and ECDSA P-256 keys only"
    )


class PublicKey:
    """A verification key of one pinned algorithm.

    Built by :func:`load_public_pem`, :func:`load_public_der` or
    :attr:`SigningKey.public_key`. Two objects are equal when their SPKI bytes are.

    Attributes:
        alg: The algorithm this key verifies (never taken from a message).
        kid: The key id (:func:`key_id` of :attr:`spki_der`).
        spki_der: The DER SubjectPublicKeyInfo.
    """

    __slots__ = ("_key", "alg", "kid", "spki_der")

    def __init__(self, key: _PublicKeyObject) -> None:
        self._key = key
        self.alg: Algorithm = _algorithm_of(key, "the public key")
        self.spki_der: bytes = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid: KeyId = key_id(self.spki_der)

    @property
    def pem(self) -> str:
        """The key as a ``PUBLIC KEY`` PEM block (SPKI), ending in a newline."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a 64-byte cx-sig signature over ``message``.

        Args:
            message: The signed bytes (for objects, ``signing_input(obj)``).
            signature: Ed25519 ``R || S`` or ECDSA ``r || s`` (low-S), 64 bytes.

        Raises:
            SignatureError: The signature is not 64 bytes, is a high-S ECDSA signature,
                or does not verify ("signature does not verify").
        """
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError(
                f"signature is {len(signature)} bytes; cx-sig v1 signatures are"
                f" {SIGNATURE_BYTES} bytes"
            )
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, message)
            else:
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if s > _P256_ORDER // 2:
                    raise SignatureError(
                        "ECDSA signature is not in low-S form (s > n/2); cx-sig v1 accepts"
                        " only the low-S signature"
                    )
                self._key.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.spki_der == self.spki_der

    def __hash__(self) -> int:
        return hash(self.spki_der)

    def __repr__(self) -> str:
        return f"PublicKey({self.alg}, {self.kid})"


class SigningKey:
    """A private signing key with its algorithm and key id.

    The private key never appears in ``repr``, ``str`` or pickles; store it only through
    :func:`encrypt_private_key` (or ``keyfiles.write_private_key``).

    Attributes:
        alg: The key's algorithm.
        kid: The key id of its public key.
        public_key: The matching :class:`PublicKey`.
    """

    __slots__ = ("_key", "alg", "kid", "public_key")

    def __init__(self, key: _PrivateKeyObject) -> None:
        self._key = key
        self.alg: Algorithm = _algorithm_of(key, "the private key")
        self.public_key = PublicKey(key.public_key())
        self.kid: KeyId = self.public_key.kid

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``.

        Args:
            message: The bytes to sign.

        Returns:
            64 bytes: Ed25519 ``R || S`` (RFC 8032, deterministic), or ECDSA P-256/SHA-256
            ``r || s`` with ``s`` in low-S form (randomised by OpenSSL).
        """
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        r, s = decode_dss_signature(self._key.sign(message, _ECDSA_SHA256))
        s = min(s, _P256_ORDER - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_pem(self) -> str:
        """The public key as a ``PUBLIC KEY`` PEM block (what the registry records)."""
        return self.public_key.pem

    def __repr__(self) -> str:
        return f"SigningKey({self.alg}, {self.kid})"

    def __reduce__(self) -> str:
        raise TypeError("a SigningKey cannot be pickled; use encrypt_private_key()")


def generate(alg: Algorithm) -> SigningKey:
    """A new random signing key.

    Args:
        alg: ``"Ed25519"`` (the default choice) or ``"ECDSA-P256"``.

    Returns:
        The key, from the operating system's CSPRNG (through OpenSSL).

    Raises:
        SignatureError: ``alg`` is not a cx-sig v1 algorithm.
    """
    if alg == "Ed25519":
        return SigningKey(ed25519.Ed25519PrivateKey.generate())
    if alg == "ECDSA-P256":
        return SigningKey(ec.generate_private_key(ec.SECP256R1()))
    raise SignatureError(f"unknown algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def load_raw_private_key(alg: Algorithm, raw: bytes) -> SigningKey:
    """A signing key from its raw 32-byte secret (fixed test keys, migrations).

    Args:
        alg: The algorithm.
        raw: For Ed25519 the 32-byte seed (RFC 8032 section 5.1.5); for ECDSA P-256 the
            private scalar as 32 big-endian bytes, in ``[1, n-1]``.

    Returns:
        The key.

    Raises:
        SignatureError: ``alg`` is unknown, ``raw`` is not 32 bytes, or the scalar is
            out of range.
    """
    if len(raw) != 32:
        raise SignatureError(f"a raw private key is 32 bytes, not {len(raw)}")
    if alg == "Ed25519":
        return SigningKey(ed25519.Ed25519PrivateKey.from_private_bytes(raw))
    if alg == "ECDSA-P256":
        scalar = int.from_bytes(raw, "big")
        if not 0 < scalar < _P256_ORDER:
            raise SignatureError("a P-256 private scalar must be in [1, n-1]")
        return SigningKey(ec.derive_private_key(scalar, ec.SECP256R1()))
    raise SignatureError(f"unknown algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def _wrap_public(key: object) -> PublicKey:
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        _algorithm_of(key, "the public key")  # raises with the key type in the reason
        raise AssertionError  # pragma: no cover - _algorithm_of always raises here
    return PublicKey(key)


def load_public_pem(pem: str) -> PublicKey:
    """Read a ``PUBLIC KEY`` PEM block (SubjectPublicKeyInfo, RFC 5480 / RFC 8410).

    Args:
        pem: The PEM text.

    Returns:
        The key, with its algorithm taken from the key itself.

    Raises:
        SignatureError: The text is not a PEM public key (a private key is refused
            without echoing it), or the key is not Ed25519 or ECDSA on P-256.
    """
    if "PRIVATE KEY" in pem:
        raise SignatureError("this is a private key; give the public key (PUBLIC KEY PEM)")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except UnsupportedAlgorithm:
        raise SignatureError(
            "the public key is of an unsupported type; cx-sig v1 accepts Ed25519 and ECDSA"
            " P-256 keys only"
        ) from None
    except (ValueError, UnicodeError):
        raise SignatureError("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)") from None
    return _wrap_public(key)


def load_public_der(der: bytes) -> PublicKey:
    """Read a DER SubjectPublicKeyInfo.

    Args:
        der: The DER bytes.

    Returns:
        The key.

    Raises:
        SignatureError: The bytes are not a DER public key, or the key is not Ed25519 or
            ECDSA on P-256.
    """
    try:
        key = serialization.load_der_public_key(der)
    except UnsupportedAlgorithm:
        raise SignatureError(
            "the public key is of an unsupported type; cx-sig v1 accepts Ed25519 and ECDSA"
            " P-256 keys only"
        ) from None
    except ValueError:
        raise SignatureError("not a DER SubjectPublicKeyInfo") from None
    return _wrap_public(key)


def _require_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes):
        raise SignatureError("the passphrase must be bytes")
    if not passphrase:
        raise SignatureError("a passphrase is required; cx-sig private keys are stored encrypted")


def encrypt_private_key(key: SigningKey, passphrase: bytes) -> bytes:
    """The key as encrypted PKCS#8 PEM (``BEGIN ENCRYPTED PRIVATE KEY``).

    Args:
        key: The signing key.
        passphrase: A non-empty passphrase.

    Returns:
        The PEM bytes (PBES2: PBKDF2-HMAC-SHA256 and AES-256-CBC, as chosen by
        ``cryptography``'s ``BestAvailableEncryption``).

    Raises:
        SignatureError: The passphrase is empty.
    """
    _require_passphrase(passphrase)
    return key._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def load_private_key(pem: bytes, passphrase: bytes) -> SigningKey:
    """Decrypt a key written by :func:`encrypt_private_key`.

    Args:
        pem: Encrypted PKCS#8 PEM bytes.
        passphrase: The passphrase it was encrypted with.

    Returns:
        The signing key.

    Raises:
        SignatureError: The passphrase is empty or wrong, the data is not an encrypted
            private key (an unencrypted key is refused), or the key is not Ed25519 or
            ECDSA P-256.
    """
    _require_passphrase(passphrase)
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except TypeError:  # cryptography: "Password was given but private key is not encrypted"
        raise SignatureError(
            "the private key is not encrypted; cx-sig keys at rest must be encrypted PKCS#8"
        ) from None
    except UnsupportedAlgorithm:
        raise SignatureError(
            "the private key is of an unsupported type; cx-sig v1 accepts Ed25519 and"
            " ECDSA P-256 keys only"
        ) from None
    except ValueError:
        raise SignatureError("wrong passphrase or corrupt key file") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        _algorithm_of(key, "the private key")
        raise AssertionError  # pragma: no cover - _algorithm_of always raises here
    return SigningKey(key)
