"""Ed25519 and ECDSA P-256 keys, key ids and keys at rest (exchange.signing.keys).

Known answers: RFC 8032 section 7.1 TEST 1 and TEST 2 (Ed25519), RFC 6979 appendix A.2.5
(P-256, SHA-256, message "sample"), whose ``s`` happens to be high: cx-sig accepts only
its low-S twin ``(r, n - s)``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from exchange.errors import ConfigError, SignatureError
from exchange.signing.keyfiles import read_private_key, write_private_key
from exchange.signing.keys import (
    ALGORITHMS,
    SIGNATURE_BYTES,
    Algorithm,
    encrypt_private_key,
    generate,
    key_id,
    load_private_key,
    load_public_der,
    load_public_pem,
    load_raw_private_key,
)
from tests.unit.signing.helpers import fixed_key, spki_kid

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")  # RFC 8410
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
P256_COMPRESSED_PREFIX = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")

RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="rfc8032-test-1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="rfc8032-test-2",
    ),
]

RFC6979_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979_UX = "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6"
RFC6979_UY = "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299"
RFC6979_R = 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716
RFC6979_S = 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8

# Public keys of types cx-sig refuses (generated with openssl genpkey; public halves only).
RSA_1024_PEM = """-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCw98K2RpV1PCRFzpxOdVTe9Pt/
3GrGir5IH9rRM6AtFCcs+gCu9d3ubZdqu7TJebbXaaWcAGywnHZ29ApSfxPDCF8u
S9TCORSS9Go1zqkx/meMTVidO4ciIKs+5IX0n5EOnr9p1BRS/RSDDNAesb78u7Oj
NkwifhAIub5hJSHlvwIDAQAB
-----END PUBLIC KEY-----
"""
P384_PEM = """-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE1vo0uYnK5TEuUI8gVjJP0EjLK+JndXmR
q+lKuu9Ax2lT3V6ACTAE0CS9sPbwrRxLm6V5J8p6wZeBIX84C8p2l+IzvWd+x94h
uLRewcTGSSIbajYPsoE9vOsKqeib29Mm
-----END PUBLIC KEY-----
"""
ED448_PEM = """-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoA7BZZb+LprHmMvYG+cQ0AvSyBNiLD2DUF1hO1r57MBmTYph3Z
DkkKZox06vjM/mirtqj4GhWMbQwA
-----END PUBLIC KEY-----
"""
X25519_PEM = """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VuAyEAqQJrUhRUVsbAE830akqEl52LEYcZRNErMorKSuEDDTI=
-----END PUBLIC KEY-----
"""

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(params=ALGORITHMS)
def alg(request: pytest.FixtureRequest) -> Algorithm:
    result: Algorithm = request.param
    return result


# --- known answers ------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_ed25519_rfc8032_known_answers(
    seed: str, public: str, message: str, signature: str
) -> None:
    key = load_raw_private_key("Ed25519", bytes.fromhex(seed))
    assert key.public_key.spki_der == ED25519_SPKI_PREFIX + bytes.fromhex(public)
    assert key.sign(bytes.fromhex(message)).hex() == signature
    verifier = load_public_der(ED25519_SPKI_PREFIX + bytes.fromhex(public))
    verifier.verify(bytes.fromhex(message), bytes.fromhex(signature))
    with pytest.raises(SignatureError, match="signature does not verify"):
        verifier.verify(bytes.fromhex(message) + b"x", bytes.fromhex(signature))


def _rfc6979_public() -> bytes:
    return P256_SPKI_PREFIX + b"\x04" + bytes.fromhex(RFC6979_UX + RFC6979_UY)


def test_ecdsa_rfc6979_vector_low_s_twin_verifies() -> None:
    key = load_public_der(_rfc6979_public())
    assert key.alg == "ECDSA-P256"
    low = RFC6979_R.to_bytes(32, "big") + (P256_ORDER - RFC6979_S).to_bytes(32, "big")
    key.verify(b"sample", low)
    with pytest.raises(SignatureError, match="signature does not verify"):
        key.verify(b"samplf", low)


def test_ecdsa_rfc6979_vector_as_published_is_refused_for_its_high_s() -> None:
    key = load_public_der(_rfc6979_public())
    high = RFC6979_R.to_bytes(32, "big") + RFC6979_S.to_bytes(32, "big")
    with pytest.raises(SignatureError, match="low-S"):
        key.verify(b"sample", high)


def test_ecdsa_private_scalar_gives_the_rfc6979_public_key() -> None:
    key = load_raw_private_key("ECDSA-P256", RFC6979_X.to_bytes(32, "big"))
    assert key.public_key.spki_der == _rfc6979_public()


def test_ecdsa_signatures_are_raw_low_s_and_randomised() -> None:
    key = fixed_key("ECDSA-P256")
    signatures = {key.sign(b"message") for _ in range(20)}
    assert len(signatures) == 20  # randomised
    for signature in signatures:
        assert len(signature) == SIGNATURE_BYTES
        assert int.from_bytes(signature[32:], "big") <= P256_ORDER // 2
        key.public_key.verify(b"message", signature)


def test_ed25519_signatures_are_deterministic() -> None:
    key = fixed_key("Ed25519")
    assert key.sign(b"message") == key.sign(b"message")


# --- key ids ------------------------------------------------------------------------------


def test_key_id_is_sha256_of_the_spki(alg: Algorithm) -> None:
    key = fixed_key(alg)
    assert key.kid == spki_kid(key.public_pem())  # computed without cryptography
    assert key.kid == key_id(key.public_key.spki_der)
    assert key.kid.startswith("sha256:")
    assert len(key.kid) == 7 + 43
    assert "=" not in key.kid


def test_key_id_ignores_the_point_encoding_of_the_input() -> None:
    uncompressed = load_public_der(_rfc6979_public())
    y_is_odd = int(RFC6979_UY, 16) % 2
    compressed = load_public_der(
        P256_COMPRESSED_PREFIX + bytes([2 + y_is_odd]) + bytes.fromhex(RFC6979_UX)
    )
    assert compressed.kid == uncompressed.kid
    assert compressed == uncompressed


def test_different_keys_have_different_ids() -> None:
    kids = {fixed_key(alg, n).kid for alg in ALGORITHMS for n in (1, 2)}
    assert len(kids) == 4


# --- public keys --------------------------------------------------------------------------


def test_public_pem_round_trip(alg: Algorithm) -> None:
    key = fixed_key(alg)
    public = load_public_pem(key.public_pem())
    assert public == key.public_key
    assert public.alg == alg
    assert public.kid == key.kid
    assert public.pem == key.public_pem()
    public.verify(b"m", key.sign(b"m"))


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        pytest.param(RSA_1024_PEM, "accepts Ed25519 and ECDSA P-256 keys only", id="rsa"),
        pytest.param(P384_PEM, "curve secp384r1", id="ecdsa-p384"),
        pytest.param(ED448_PEM, "Ed25519 and ECDSA P-256", id="ed448"),
        pytest.param(X25519_PEM, "Ed25519 and ECDSA P-256", id="x25519"),
        pytest.param("hello", "not a PEM public key", id="not-pem"),
        pytest.param(
            RSA_1024_PEM.replace("MIGf", "MIGg"), "not a PEM public key", id="corrupt-der"
        ),
        pytest.param(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "this is a private key",
            id="private-key-given",
        ),
        pytest.param(
            "-----BEGIN PUBLIC KEY-----\n\u0416\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
            id="non-ascii",
        ),
    ],
)
def test_load_public_pem_refuses(pem: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        load_public_pem(pem)


def test_load_public_der_refuses_garbage() -> None:
    with pytest.raises(SignatureError, match="not a DER SubjectPublicKeyInfo"):
        load_public_der(b"\x30\x03\x02\x01\x01")


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 63, id="63-bytes"),
        pytest.param(b"\x00" * 65, id="65-bytes"),
        pytest.param(b"\x00" * 72, id="der-sized"),
    ],
)
def test_verify_refuses_signatures_of_the_wrong_size(alg: Algorithm, signature: bytes) -> None:
    with pytest.raises(SignatureError, match="cx-sig v1 signatures are 64 bytes"):
        fixed_key(alg).public_key.verify(b"m", signature)


def test_verify_refuses_zero_signature(alg: Algorithm) -> None:
    with pytest.raises(SignatureError, match="signature does not verify"):
        fixed_key(alg).public_key.verify(b"m", b"\x00" * 64)


def test_verify_refuses_another_keys_signature(alg: Algorithm) -> None:
    with pytest.raises(SignatureError, match="signature does not verify"):
        fixed_key(alg, 1).public_key.verify(b"m", fixed_key(alg, 2).sign(b"m"))


# --- private keys -------------------------------------------------------------------------


def test_generate_gives_fresh_keys(alg: Algorithm) -> None:
    first, second = generate(alg), generate(alg)
    assert first.alg == second.alg == alg
    assert first.kid != second.kid


def test_generate_refuses_unknown_algorithm() -> None:
    with pytest.raises(SignatureError, match="unknown algorithm 'RSA'"):
        generate("RSA")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alg", "raw", "reason"),
    [
        pytest.param("Ed25519", b"\x01" * 31, "32 bytes, not 31", id="short-seed"),
        pytest.param("ECDSA-P256", b"\x00" * 32, r"\[1, n-1\]", id="zero-scalar"),
        pytest.param("ECDSA-P256", P256_ORDER.to_bytes(32, "big"), r"\[1, n-1\]", id="scalar-n"),
        pytest.param("Ed448", b"\x01" * 32, "unknown algorithm", id="unknown-alg"),
    ],
)
def test_load_raw_private_key_refuses(alg: Algorithm, raw: bytes, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        load_raw_private_key(alg, raw)


def test_repr_never_shows_key_material(alg: Algorithm) -> None:
    key = fixed_key(alg)
    shown = repr(key) + str(key) + repr(key.public_key)
    assert shown == f"SigningKey({alg}, {key.kid})SigningKey({alg}, {key.kid})" + (
        f"PublicKey({alg}, {key.kid})"
    )
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)


def test_encrypted_private_key_round_trip(alg: Algorithm) -> None:
    key = fixed_key(alg)
    pem = encrypt_private_key(key, PASSPHRASE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    loaded = load_private_key(pem, PASSPHRASE)
    assert loaded.kid == key.kid
    assert loaded.alg == alg
    key.public_key.verify(b"m", loaded.sign(b"m"))


def test_wrong_passphrase_is_refused(alg: Algorithm) -> None:
    pem = encrypt_private_key(fixed_key(alg), PASSPHRASE)
    with pytest.raises(SignatureError, match="wrong passphrase or corrupt key file"):
        load_private_key(pem, b"correct horse battery stapler")


def test_corrupt_key_file_is_refused() -> None:
    pem = encrypt_private_key(fixed_key("Ed25519"), PASSPHRASE)
    lines = pem.splitlines(keepends=True)
    lines[1] = lines[1][:10] + (b"B" if lines[1][10:11] != b"B" else b"C") + lines[1][11:]
    with pytest.raises(SignatureError, match="wrong passphrase or corrupt key file"):
        load_private_key(b"".join(lines), PASSPHRASE)


def test_empty_passphrase_is_refused() -> None:
    key = fixed_key("Ed25519")
    with pytest.raises(SignatureError, match="a passphrase is required"):
        encrypt_private_key(key, b"")
    pem = encrypt_private_key(key, PASSPHRASE)
    with pytest.raises(SignatureError, match="a passphrase is required"):
        load_private_key(pem, b"")


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def test_unencrypted_private_key_is_refused() -> None:
    pem = _openssl("genpkey", "-algorithm", "ED25519")
    with pytest.raises(SignatureError, match="not encrypted"):
        load_private_key(pem, PASSPHRASE)


def test_encrypted_key_of_another_curve_is_refused() -> None:
    plain = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
    pem = _openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:pw", data=plain)
    with pytest.raises(SignatureError, match="curve secp384r1"):
        load_private_key(pem, b"pw")


def test_openssl_reads_our_key_file_with_the_passphrase() -> None:
    pem = encrypt_private_key(fixed_key("Ed25519"), PASSPHRASE)
    public = _openssl("pkey", "-pubout", "-passin", "pass:" + PASSPHRASE.decode(), data=pem)
    assert public.decode() == fixed_key("Ed25519").public_pem()


# --- key files ----------------------------------------------------------------------------


def test_key_file_round_trip_with_mode_0600(alg: Algorithm, tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    old_umask = os.umask(0o022)
    try:
        write_private_key(path, fixed_key(alg), PASSPHRASE)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_private_key(path, PASSPHRASE).kid == fixed_key(alg).kid
    assert [p.name for p in tmp_path.iterdir()] == ["signing.key"]  # no temporary left


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_private_key(path, fixed_key("Ed25519", 1), PASSPHRASE)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists; refusing to overwrite"):
        write_private_key(path, fixed_key("Ed25519", 2), PASSPHRASE)
    assert path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_private_key(path, fixed_key("Ed25519"), PASSPHRASE)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"accessible by group or others \(mode 0644\)"):
        read_private_key(path, PASSPHRASE)


def test_key_file_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    write_private_key(path, fixed_key("ECDSA-P256"), PASSPHRASE)
    with pytest.raises(SignatureError, match="wrong passphrase or corrupt key file"):
        read_private_key(path, b"nope")


@pytest.mark.parametrize("kind", ["missing", "directory", "symlink"])
def test_unreadable_key_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    if kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "symlink":
        write_private_key(tmp_path / "real.key", fixed_key("Ed25519"), PASSPHRASE)
        path.symlink_to(tmp_path / "real.key")
    with pytest.raises(ConfigError, match="key file"):
        read_private_key(path, PASSPHRASE)


def test_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write key file"):
        write_private_key(tmp_path / "nope" / "signing.key", fixed_key("Ed25519"), PASSPHRASE)


def test_write_refuses_empty_passphrase_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="a passphrase is required"):
        write_private_key(tmp_path / "signing.key", fixed_key("Ed25519"), b"")
    assert list(tmp_path.iterdir()) == []
