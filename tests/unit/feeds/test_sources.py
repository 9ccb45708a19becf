"""feeds/sources.yaml: the shipped example loads, broken documents are refused with the
file, the key path and the reason, and passwords are read only from where they are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.errors import ConfigError
from exchange.feeds.sources import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    Kind,
    Schedule,
    TaxiiSource,
    client_certificate,
    load_sources,
    parse_sources,
    read_password,
)
from tests.integration.tls_pki import encrypted_copy, make_pki

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "feeds" / "sources.yaml"
F = "feeds/sources.yaml"

MINIMAL = """\
sources:
  vendor:
    kind: vendor
    api_root: https://taxii.vendor.example/api1
    collection: indicators
    org: ExampleVendor
    into: jwg
    schedule: {interval: 900}
"""


def test_shipped_example_has_the_pk_node_as_a_peer_and_a_vendor_feed() -> None:
    sources = {s.name: s for s in load_sources(SHIPPED)}
    assert set(sources) == {"pk-node", "vendor-intel"}
    pk, vendor = sources["pk-node"], sources["vendor-intel"]
    assert (pk.kind, pk.trust, pk.org, pk.into) == (Kind.PEER, "pk-node", "PK-CERT", "jwg")
    assert pk.password_file is not None
    assert pk.ca_file is not None
    assert pk.schedule == Schedule(interval=300)
    assert (vendor.kind, vendor.trust, vendor.org) == (Kind.VENDOR, None, "ExampleVendor")
    assert vendor.password_env == "EXCHANGE_SOURCE_KEY_VENDOR_INTEL"
    assert vendor.schedule == Schedule(cron="*/30 * * * *")
    assert (vendor.timeout, vendor.page_size) == (60.0, 1000)


def test_defaults_and_a_trailing_slash_on_urls() -> None:
    (source,) = parse_sources(F, MINIMAL.encode())
    assert source.api_root == "https://taxii.vendor.example/api1/"
    assert source.discovery is None
    assert (source.timeout, source.page_size) == (DEFAULT_TIMEOUT, DEFAULT_PAGE_SIZE)
    assert source.sign_workers == 0


def test_a_vendor_source_may_sign_in_worker_processes() -> None:
    (source,) = parse_sources(F, (MINIMAL + "    sign_workers: 2\n").encode())
    assert source.sign_workers == 2
    assert (source.user, source.password_file, source.password_env) == (None, None, None)


BAD = [
    ("unknown-key", MINIMAL + "    colour: blue\n", "sources.vendor.colour: unknown key 'colour'"),
    ("inline-password", MINIMAL + "    password: hunter2\n",
     "sources.vendor.password: a password is never written in this file"),
    ("peer-without-trust", MINIMAL.replace("kind: vendor", "kind: peer"),
     "sources.vendor: a peer source names the pinned peer"),
    ("vendor-with-trust", MINIMAL + "    trust: pk-node\n",
     "sources.vendor.trust: a vendor source takes no trust"),
    ("bad-kind", MINIMAL.replace("kind: vendor", "kind: friend"),
     "sources.vendor.kind: 'friend' is not one of peer, vendor"),
    ("plain-http", MINIMAL.replace("https://taxii.vendor.example", "http://taxii.example"),
     "must use https (plain http is allowed only to a loopback address)"),
    ("credentials-in-url", MINIMAL.replace("https://", "https://u:p@"),
     "the URL must not carry credentials"),
    ("no-url", MINIMAL.replace("    api_root: https://taxii.vendor.example/api1\n", ""),
     "sources.vendor: give discovery"),
    ("user-without-password", MINIMAL + "    user: uz\n",
     "a user needs a password"),
    ("password-without-user", MINIMAL + "    password_env: VENDOR_KEY\n",
     "a user needs a password"),
    ("exchange-variable", MINIMAL + "    user: uz\n    password_env: EXCHANGE_DATABASE_URL\n",
     "must be named EXCHANGE_SOURCE_KEY_"),
    ("both-secrets", MINIMAL + "    user: uz\n    password_env: K\n    password_file: /k\n",
     "give at most one of password_file and password_env"),
    ("short-interval", MINIMAL.replace("900", "5"), "5 s is outside 60..604800 s"),
    ("bad-cron", MINIMAL.replace("{interval: 900}", "{cron: '* *'}"),
     "is not a cron expression of five fields"),
    ("page-size-zero", MINIMAL + "    page_size: 0\n", "0 is outside (0, 10000]"),
    ("timeout-text", MINIMAL + "    timeout: soon\n", "expected a number, found 'soon'"),
    ("one-sign-worker", MINIMAL + "    sign_workers: 1\n", "give 0 (sign here) or 2..4"),
    ("many-sign-workers", MINIMAL + "    sign_workers: 9\n", "expected a whole number 0..4"),
    ("peer-sign-workers", MINIMAL.replace("kind: vendor", "kind: peer\n    trust: pk")
     + "    sign_workers: 2\n", "only a vendor source's objects are signed by this node"),
    ("duplicate-key", MINIMAL + "    org: Other\n", "duplicate key 'org'"),
    ("same-collection-twice", MINIMAL + MINIMAL.split("\n", 1)[1].replace("vendor:", "v2:", 1),
     "sources.v2: collection 'indicators' of https://taxii.vendor.example/api1/ is already"
     " read by source 'vendor'"),
    ("bad-name", MINIMAL.replace("  vendor:", "  Vendor Feed:"),
     "source name 'Vendor Feed' is not lowercase"),
    ("empty", "", "empty file"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD],
                         ids=[i for i, _, _ in BAD])
def test_a_broken_file_is_refused_with_path_and_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sources(F, text.encode())
    assert caught.value.reason.startswith(F)
    assert message in caught.value.reason


def test_a_password_is_read_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    key = tmp_path / "vendor.key"
    key.write_text("s3cret-value\n")
    key.chmod(0o644)
    text = MINIMAL + f"    user: uz\n    password_file: {key}\n"
    (source,) = parse_sources(F, text.encode())
    assert "s3cret" not in repr(source)
    with pytest.raises(ConfigError, match="readable by others") as caught:
        read_password(source)
    assert "s3cret" not in caught.value.reason
    key.chmod(0o600)
    assert read_password(source) == "s3cret-value"
    (env_source,) = parse_sources(F, (MINIMAL + "    user: uz\n    password_env: VK\n").encode())
    assert read_password(env_source, {"VK": " from-env "}) == "from-env"
    with pytest.raises(ConfigError, match="VK is not set"):
        read_password(env_source, {})


def test_a_client_certificate_is_checked_before_any_connection(tmp_path: Path) -> None:
    """Mutual TLS: client_cert and client_key come together; the key must be private to
    its owner, unencrypted and the certificate's own, each refusal saying which."""
    pki = make_pki(tmp_path / "pki")
    with pytest.raises(ConfigError, match="give both client_cert and client_key"):
        parse_sources(F, (MINIMAL + f"    client_cert: {pki.client_cert}\n").encode())

    def source(cert: Path, key: Path) -> TaxiiSource:
        (found,) = parse_sources(F, (MINIMAL + f"    client_cert: {cert}\n"
                                     f"    client_key: {key}\n").encode())
        return found

    assert client_certificate(source(pki.client_cert, pki.client_key)) == (
        str(pki.client_cert), str(pki.client_key))
    (plain,) = parse_sources(F, MINIMAL.encode())
    assert client_certificate(plain) is None
    with pytest.raises(ConfigError, match="do not load as a pair"):
        client_certificate(source(pki.client_cert, pki.stranger_key))
    with pytest.raises(ConfigError, match="cannot read client certificate or key file"):
        client_certificate(source(tmp_path / "missing.crt", pki.client_key))
    pki.client_key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        client_certificate(source(pki.client_cert, pki.client_key))
    pki.client_key.chmod(0o600)
    encrypted = encrypted_copy(pki.client_key, tmp_path / "encrypted.key", b"not in a file")
    with pytest.raises(ConfigError, match="is encrypted") as refused:
        client_certificate(source(pki.client_cert, encrypted))
    assert "BEGIN" not in str(refused.value)  # no key material in the message
