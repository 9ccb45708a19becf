"""Raw-socket helpers for the front-door tests: one HTTP/1.1 exchange on 127.0.0.1 at a
time, read with the standard library's response parser, every read bounded by a socket
timeout. Shared by test_front_door.py (gunicorn alone) and test_front_door_nginx.py."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from typing import Any

TAXII = "application/taxii+json;version=2.1"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def taxii_error(self) -> dict[str, Any]:
        """The body as a TAXII 2.1 error message (section 3.6.1), checked."""
        assert self.headers.get("Content-Type") == TAXII, (self.status, self.body[:200])
        doc = json.loads(self.body)
        assert doc["http_status"] == str(self.status)
        assert isinstance(doc["title"], str)
        assert doc["title"]
        return doc  # type: ignore[no-any-return]


def basic(account: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{account}:{key}".encode()).decode()


def connect(port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 10.0
            ) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname="localhost")
    return sock


def read_answer(sock: socket.socket, method: str = "GET") -> Answer:
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    return Answer(resp.status, resp.headers, body)


def exchange(port: int, raw: bytes, *, tls: ssl.SSLContext | None = None,
             timeout: float = 10.0) -> Answer:
    """Send ``raw`` on a fresh connection and read one answer."""
    with connect(port, tls=tls, timeout=timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock, raw.split(b" ", 1)[0].decode())


def request(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost",
             *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def closed_by_peer(sock: socket.socket) -> bool:
    """Read what the server still sends until it closes (within the socket timeout)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset: closed too
    return True
