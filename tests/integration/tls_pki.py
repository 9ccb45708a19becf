"""Certificates for the tests' mutual-TLS cases, made with ``cryptography`` on the fly.

:func:`make_pki` writes, under one directory: a test CA, a server certificate for
127.0.0.1 (and ``localhost``) and a client certificate (``uz-node``), both issued by that
CA, and a second client certificate issued by another CA; keys are unencrypted PEM, mode
0600. :class:`TlsProxy` is a forwarding proxy (:mod:`tests.integration.fault_proxy`) that
speaks TLS with the server certificate and, when told, requires a client certificate
issued by the test CA (mutual TLS), in front of a plain-HTTP TAXII server.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.fault_proxy import ForwardingProxy


@dataclass(frozen=True)
class Pki:
    ca: Path  # the test CA's certificate (a source's ca_file)
    server_cert: Path
    server_key: Path
    client_cert: Path  # issued by the test CA
    client_key: Path
    stranger_cert: Path  # a client certificate issued by another CA
    stranger_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(where: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = where / f"{name}.crt", where / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def make_pki(where: Path) -> Pki:
    """A test CA and the certificates of :class:`Pki`, written under ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("cx test CA", ca_key, _name("cx test CA"), ca_key, ca=True)
    ca_path, _ = _write(where, "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _write(where, "server", _issue("127.0.0.1", server_key, ca.subject, ca_key,
                                            server=True), server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _write(where, "client", _issue("uz-node", client_key, ca.subject, ca_key),
                    client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue("another CA", other_key, _name("another CA"), other_key, ca=True)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _write(where, "stranger", _issue("uz-node", stranger_key, other.subject,
                                                other_key), stranger_key)
    return Pki(ca_path, *server, *client, *stranger)


def encrypted_copy(key: Path, target: Path, passphrase: bytes) -> Path:
    """``key`` (an unencrypted PEM key) written to ``target`` encrypted with
    ``passphrase`` (PKCS#8), mode 0600."""
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    target.write_bytes(loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase)))
    target.chmod(0o600)
    return target


class TlsProxy(ForwardingProxy):
    """Forwards to a plain-HTTP server, speaking TLS to its clients; with
    ``require_client_cert`` only to a client presenting a certificate of the test CA."""

    def __init__(self, upstream: str, pki: Pki, *, require_client_cert: bool) -> None:
        super().__init__(upstream)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(pki.ca)

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def listening(self, server: ThreadingHTTPServer) -> None:
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
