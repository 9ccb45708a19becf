"""deploy/nginx.conf and deploy/gunicorn.conf.py as shipped, in front of a real node.

nginx (Debian's, installed here when missing and possible) runs the shipped server block
with only its port, upstream port and certificate paths replaced, inside a minimal main
configuration of the test's own (pid and temp paths in a temporary directory); gunicorn
runs with the shipped configuration file and only ``--bind`` changed. Checked: TLS,
slow bodies held by nginx and never reaching the server, nginx's own refusals as TAXII
JSON, the server's refusals passed through, keep-alive after an early refusal.
Outside CI a missing nginx skips with the reason; in CI (CI=true) it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from exchange.taxii.procs import stop_child
from tests.integration.conftest import free_port
from tests.security.front_door import (
    TAXII,
    basic,
    closed_by_peer,
    connect,
    exchange,
    read_answer,
    request,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "-q", "nginx-light"],
                        ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "nginx-light"]):
            subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
            found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
            if found:
                break
    if found is None:
        reason = "nginx is not installed and could not be installed (needs root and apt-get)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _certificates(where: Path) -> None:
    """A CA, a server certificate for localhost/127.0.0.1 and a member CA bundle."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True,
                       timeout=60)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (where / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    shutil.copy(where / "ca.crt", where / "member-cas.pem")


def _template(shipped: str, *, port: int, upstream: int, certs: Path) -> str:
    replacements = [("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
                    ("server 127.0.0.1:8421;", f"server 127.0.0.1:{upstream};"),
                    ("/etc/ssl/cert-exchange/", f"{certs}/")]
    for old, new in replacements:
        assert old in shipped, f"deploy/nginx.conf no longer contains {old!r}"
        shipped = shipped.replace(old, new)
    return shipped


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen within 30 s")


@dataclass
class Proxied:
    port: int
    tls: ssl.SSLContext
    auth: dict[str, str]
    objects: str
    backend_log: Path


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    nginx = _nginx()
    tmp = tmp_path_factory.mktemp("nginx")
    certs = tmp / "certs"
    certs.mkdir()
    _certificates(certs)
    home = tmp / "home"
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    ex = Exchange(settings, store)
    ex.add_org("UZ-CERT")
    ex.add_account("pub", org="UZ-CERT", role="publisher")
    key = ex.create_api_key("pub")[1]
    col, _ = ex.add_collection("Proxied", alias="proxied", readers=["UZ-CERT"],
                               writers=["UZ-CERT"])
    store.close()

    upstream, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update(EXCHANGE_HOME=str(home), EXCHANGE_AUDIT_SEQUENCE_MS="0")  # as the unit sets
    backend_log = tmp / "gunicorn.log"
    conf = tmp / "cert-exchange.conf"
    conf.write_text(_template((DEPLOY / "nginx.conf").read_text(), port=port,
                              upstream=upstream, certs=certs))
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / name).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = tmp / "nginx-main.conf"
    main.write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n  access_log {tmp}/access.log;\n"
        + "".join(f"  {n}_temp_path {tmp}/{n};\n" if n != "body" else
                  f"  client_body_temp_path {tmp}/body;\n"
                  for n in ("body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {conf};\n}}\n")
    check = subprocess.run([nginx, "-t", "-p", str(tmp), "-c", str(main)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr

    with backend_log.open("ab") as log:
        backend = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(DEPLOY / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{upstream}"], env=env, stdout=log, stderr=log)
        front = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(main), "-g", "daemon off;"],
                                 stdout=log, stderr=log)
        try:
            _wait_port(upstream, backend, "gunicorn")
            _wait_port(port, front, "nginx")
            tls = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            yield Proxied(port, tls, {"Authorization": basic("pub", key), "Accept": TAXII},
                          f"/cx/collections/{col.id}/objects/", backend_log)
        finally:
            stop_child(front, timeout=10)
            stop_child(backend, timeout=20)


def test_tls_and_a_normal_read(proxied: Proxied) -> None:
    with connect(proxied.port, tls=proxied.tls) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
        sock.sendall(request("GET", "/taxii2/", proxied.auth))
        answer = read_answer(sock)
    assert answer.status == 200
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "nginx/" not in (answer.headers.get("Server") or "")


def test_plain_http_is_not_served(proxied: Proxied) -> None:
    with connect(proxied.port) as sock:
        sock.sendall(request("GET", "/taxii2/", proxied.auth))
        answer = read_answer(sock)
    assert answer.status == 400  # nginx: plain HTTP sent to an HTTPS port
    answer.taxii_error()


def test_slow_bodies_stop_at_nginx(proxied: Proxied) -> None:
    head = request("POST", proxied.objects, {**proxied.auth, "Content-Type": TAXII}).replace(
        b"Content-Length: 0", b"Content-Length: 5000")
    slow = []
    try:
        for _ in range(20):
            sock = connect(proxied.port, tls=proxied.tls, timeout=20)
            sock.sendall(head + b'{"objects": [')
            slow.append(sock)
        answer = exchange(proxied.port, request("GET", "/taxii2/", proxied.auth),
                          tls=proxied.tls, timeout=5)
        assert answer.status == 200
        # nginx buffers request bodies: none of the stalled POSTs reached gunicorn
        assert b'"POST ' not in proxied.backend_log.read_bytes()
        for sock in slow[1:]:
            sock.close()
        # the shipped client_body_timeout (10 s) ends the stalled request
        assert closed_by_peer(slow[0])
    finally:
        for sock in slow:
            sock.close()


def _dup_content_length(p: Proxied) -> bytes:
    return request("POST", p.objects, {**p.auth, "Content-Type": TAXII,
                                       "Content-Length": "15"}, b'{"objects": []}')


def _dup_content_type(p: Proxied) -> bytes:
    return request("POST", p.objects, {**p.auth, "Content-Type": TAXII},
                   b'{"objects": []}').replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain"
                                               b"\r\n\r\n", 1)


REFUSALS = [
    pytest.param(_dup_content_length, 400, id="duplicate-content-length-nginx"),
    pytest.param(_dup_content_type, 400, id="duplicate-content-type-gunicorn"),
    pytest.param(lambda p: request("GET", "/taxii2/", {"Accept": TAXII, "Authorization":
                                                       "Basic " + "A" * 100_000}),
                 431, id="authorization-100kb-nginx"),
    pytest.param(lambda p: request("GET", "/taxii2/?q=" + "a" * 9000, p.auth), 414,
                 id="url-9kib-gunicorn"),
    pytest.param(lambda p: request("GET", "/taxii2/?q=" + "a" * 20_000, p.auth), 414,
                 id="url-20kib-nginx"),
    pytest.param(lambda p: request("POST", p.objects, {**p.auth, "Content-Type": TAXII}
                                   ).replace(b"Content-Length: 0",
                                             f"Content-Length: {11 * 1024 * 1024}".encode()),
                 413, id="declared-11mib-nginx"),
    pytest.param(lambda p: request("GET", "/.cx-errors/400", p.auth), 404,
                 id="internal-page-nginx"),
    pytest.param(lambda p: request("POST", p.objects, {**p.auth, "Content-Type": TAXII}), 400,
                 id="empty-post-body-app"),
]


@pytest.mark.parametrize(("make", "status"), REFUSALS)
def test_refusals_through_nginx_are_taxii_errors(proxied: Proxied, make: object,
                                                 status: int) -> None:
    answer = exchange(proxied.port, make(proxied), tls=proxied.tls)  # type: ignore[operator]
    assert answer.status == status, answer.body[:300]
    answer.taxii_error()
    healthy = exchange(proxied.port, request("GET", "/taxii2/", proxied.auth), tls=proxied.tls)
    assert healthy.status == 200


def test_keep_alive_after_an_early_refusal(proxied: Proxied) -> None:
    body = b'{"objects": [{"type": "note", "pad": "' + b"x" * 60_000 + b'"}]}'
    with connect(proxied.port, tls=proxied.tls) as sock:
        sock.sendall(request("POST", proxied.objects, {"Accept": TAXII, "Content-Type": TAXII},
                             body))
        refused = read_answer(sock, "POST")
        assert refused.status == 401
        refused.taxii_error()
        sock.sendall(request("GET", "/taxii2/", proxied.auth))
        assert read_answer(sock).status == 200
