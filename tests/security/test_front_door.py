"""gunicorn alone, as `exchange serve` runs it, faced with slow and malformed clients.

A real server on 127.0.0.1 (one worker, four threads, so that four stuck threads would
starve it), driven over raw sockets: slow heads and bodies must not take the threads;
every refusal, including the ones made before the application runs, is a TAXII error
message with the right status; an early refusal leaves a kept-alive connection usable;
and the server answers normally after each case. Every loop is bounded in count, and
every read by a socket timeout.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.node.service import Exchange, init_home
from exchange.storage import open_store
from tests.integration.conftest import serving
from tests.security.front_door import (
    TAXII,
    Answer,
    basic,
    closed_by_peer,
    connect,
    exchange,
    read_answer,
    request,
)

# short deadlines keep the test quick; production defaults are 10 s and 30 s
TOML = "request_header_timeout = 3\nrequest_body_timeout = 3\n"
SLOW = 20


@dataclass
class Front:
    port: int
    keys: dict[str, str]
    collection: str  # writable by "pub", readable by "reader"

    def auth(self, account: str) -> dict[str, str]:
        return {"Authorization": basic(account, self.keys[account]), "Accept": TAXII}

    def objects(self) -> str:
        return f"/cx/collections/{self.collection}/objects/"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    home: Path = tmp_path_factory.mktemp("front-home")
    (home / "exchange.toml").write_text(TOML, encoding="utf-8")
    init_home(load_settings(home, env={}))
    settings = load_settings(home, env={})
    store = open_store(settings)
    try:
        ex = Exchange(settings, store)
        ex.add_org("UZ-CERT")
        keys = {}
        for account, role in (("pub", "publisher"), ("reader", "consumer")):
            ex.add_account(account, org="UZ-CERT", role=role)
            keys[account] = ex.create_api_key(account)[1]
        col, _ = ex.add_collection("Front", alias="front", readers=["UZ-CERT"],
                                   writers=["UZ-CERT"])
        with serving(home, ("pub", keys["pub"]), workers=1) as base:
            yield Front(int(base.rsplit(":", 1)[1]), keys, col.id)
    finally:
        store.close()


def _healthy(front: Front) -> None:
    answer = exchange(front.port, request("GET", "/taxii2/", front.auth("pub")))
    assert answer.status == 200, answer.body[:200]


def _slow_bodies(front: Front, count: int) -> list[socket.socket]:
    head = request("POST", front.objects(), {**front.auth("pub"), "Content-Type": TAXII})
    head = head.replace(b"Content-Length: 0", b"Content-Length: 5000")
    socks = []
    for _ in range(count):
        sock = connect(front.port)
        sock.sendall(head + b'{"objects": [')  # 14 of the 5,000 bytes declared
        socks.append(sock)
    return socks


def _slow_heads(front: Front, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = connect(front.port)
        sock.sendall(b"GET /taxii2/ HTTP/1.1\r\nHost: localhost\r\nAccept: ")
        socks.append(sock)
    return socks


@pytest.mark.parametrize("make_slow", [_slow_bodies, _slow_heads], ids=["body", "head"])
def test_slow_clients_do_not_starve_the_others(front: Front, make_slow: object) -> None:
    slow = make_slow(front, SLOW)  # type: ignore[operator]
    try:
        # Twenty stalled requests on a worker with four threads; a normal client is
        # answered while they are still open (the client's own timeout is the bound).
        answer = exchange(front.port, request("GET", "/taxii2/", front.auth("pub")),
                          timeout=2.5)
        assert answer.status == 200
        for sock in slow:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # still held open, unanswered, when the normal client was served
            sock.settimeout(15)
        # Then each is refused at its deadline with a TAXII 408, and closed.
        for sock in slow:
            refused = read_answer(sock, "POST")
            assert refused.status == 408
            assert "in time" in refused.taxii_error()["description"]
            assert refused.headers["Connection"] == "close"
            assert closed_by_peer(sock)
    finally:
        for sock in slow:
            sock.close()
    _healthy(front)


def _dup(name: str, a: str, b: str) -> object:
    def make(front: Front) -> bytes:
        return request("POST", front.objects(), {**front.auth("pub"), "Content-Type": TAXII},
                       b'{"objects": []}').replace(b"\r\n\r\n", f"\r\n{name}: {a}\r\n{name}: {b}"
                                                   "\r\n\r\n".encode(), 1)
    return make


MALFORMED = [
    pytest.param(_dup("Content-Type", TAXII, "text/plain"), 400, "Content-Type",
                 id="duplicate-content-type"),
    pytest.param(lambda f: request("POST", f.objects(), {**f.auth("pub"), "Content-Type": TAXII,
                                                         "Content-Length": "15"},
                                   b'{"objects": []}'), 400, "Content-Length",
                 id="duplicate-content-length"),
    pytest.param(lambda f: request("GET", "/taxii2/", {"Accept": TAXII, "Authorization":
                                                       "Basic " + "A" * 100_000}),
                 431, "larger than", id="authorization-100kb"),
    pytest.param(lambda f: request("GET", "/taxii2/", {**f.auth("pub"), "X-Padding":
                                                       "p" * 20_000}),
                 431, "header field", id="header-field-20kb"),
    pytest.param(lambda f: request("GET", "/taxii2/", {**f.auth("pub"), **{
        f"X-Field-{i}": "v" for i in range(120)}}), 431, "header fields", id="121-fields"),
    pytest.param(lambda f: request("GET", "/taxii2/?q=" + "a" * 9000, f.auth("pub")),
                 414, "request line", id="url-9kib"),
    pytest.param(lambda f: request("GET", "/taxii2/?q=" + "a" * 70_000, f.auth("pub")),
                 414, "request line", id="url-70kib"),
    pytest.param(lambda f: request("POST", f.objects(), {**f.auth("pub"),
                                                         "Content-Type": TAXII}),
                 400, "empty", id="empty-post-body"),
    pytest.param(lambda f: request("POST", f.objects(), {**f.auth("pub"), "Content-Type": TAXII,
                                                         "Transfer-Encoding": "chunked"}),
                 411, "Content-Length", id="chunked-body"),
    pytest.param(lambda f: request("POST", f.objects(), {**f.auth("pub"), "Content-Type": TAXII}
                                   ).replace(b"Content-Length: 0", b"Content-Length: 99999999"),
                 413, "max_content_length", id="declared-body-too-large"),
    pytest.param(lambda f: request("POST", f.objects(), {**f.auth("pub"), "Content-Type": TAXII}
                                   ).replace(b"Content-Length: 0", b"Content-Length: -5"),
                 400, "Content-Length", id="negative-content-length"),
    pytest.param(lambda f: b"GET /taxii2/ HTTP/9.9\r\nHost: localhost\r\n\r\n", 400,
                 "request line", id="bad-http-version"),
    pytest.param(lambda f: b"G@T /taxii2/ HTTP/1.1\r\nHost: localhost\r\n\r\n", 400,
                 "request line", id="bad-method"),
    pytest.param(lambda f: b"GET /taxii2/ HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n",
                 400, "header name", id="bad-header-name"),
]


@pytest.mark.parametrize(("make", "status", "phrase"), MALFORMED)
def test_malformed_requests_get_taxii_errors(front: Front, make: object, status: int,
                                             phrase: str) -> None:
    answer = exchange(front.port, make(front))  # type: ignore[operator]
    assert answer.status == status, answer.body[:300]
    doc = answer.taxii_error()
    assert phrase in doc["description"]
    assert b"<html" not in answer.body.lower()
    _healthy(front)


def _post(front: Front, account: str | None, path: str, body: bytes) -> bytes:
    headers = front.auth(account) if account else {"Accept": TAXII}
    return request("POST", path, {**headers, "Content-Type": TAXII}, body)


EARLY = [
    pytest.param(None, "objects", 401, id="401-no-credentials"),
    pytest.param("reader", "objects", 403, id="403-consumer-writes"),
    pytest.param("pub", "missing", 404, id="404-unknown-collection"),
]


@pytest.mark.parametrize(("account", "where", "status"), EARLY)
def test_connection_stays_usable_after_an_early_refusal(front: Front, account: str | None,
                                                        where: str, status: int) -> None:
    path = front.objects() if where == "objects" else f"/cx/collections/{uuid.uuid4()}/objects/"
    body = json.dumps({"objects": [{"type": "note", "pad": "x" * 60_000}]}).encode()
    with connect(front.port) as sock:
        sock.sendall(_post(front, account, path, body))
        refused = read_answer(sock, "POST")
        assert refused.status == status, refused.body[:300]
        refused.taxii_error()
        assert refused.headers["Connection"] == "keep-alive"
        # the same connection carries the next request
        sock.sendall(request("GET", "/taxii2/", front.auth("pub")))
        assert read_answer(sock).status == 200


def test_refused_oversize_body_closes_cleanly(front: Front) -> None:
    """A body the server will not read is refused with Connection: close, and a client
    that keeps sending it neither stalls the worker nor gets a reset before the answer."""
    head = _post(front, "pub", front.objects(), b"").replace(
        b"Content-Length: 0", f"Content-Length: {11 * 1024 * 1024}".encode())
    with connect(front.port) as sock:
        sock.sendall(head + b"x" * 65_536)
        refused = read_answer(sock, "POST")
        assert refused.status == 413
        assert refused.headers["Connection"] == "close"
        refused.taxii_error()
        # the single worker answers others while this client still holds its socket open
        answer = exchange(front.port, request("GET", "/taxii2/", front.auth("pub")),
                          timeout=1.5)
        assert answer.status == 200
        assert closed_by_peer(sock)


def test_expect_continue_is_honoured_once(front: Front) -> None:
    body = b'{"objects": []}'
    raw = _post(front, "pub", front.objects(), b"").replace(
        b"Content-Length: 0", f"Content-Length: {len(body)}\r\nExpect: 100-continue".encode())
    with connect(front.port) as sock:
        sock.sendall(raw)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer: Answer = read_answer(sock, "POST")
        assert answer.status == 400  # an empty envelope, read and judged by the app
        assert "empty" in answer.taxii_error()["description"]
