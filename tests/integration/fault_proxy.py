"""The base of the tests' fault-injecting HTTP proxies (in front of a real server).

A :class:`ForwardingProxy` is a threading HTTP server on 127.0.0.1 that forwards each
request to the server behind it and can stop listening and listen again on the same port
(:meth:`~ForwardingProxy.down`, :meth:`~ForwardingProxy.up`). A subclass decides, in
:meth:`~ForwardingProxy.handle`, what each request gets: forwarded as it is, rewritten,
answered with an error page, delayed, or cut mid-body with a reset
(:meth:`Exchange.answer` with ``cut=True``). Each connection carries one request.
Nothing is logged: the requests carry credentials.

Used by :mod:`tests.integration.taxii_proxy` (taxii2-client) and
:mod:`tests.integration.misp_proxy` (PyMISP).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-connection", "content-length", "host"})

Answer = tuple[int, str | None, list[tuple[str, str]], bytes]


class ForwardingProxy:
    """Forwards everything; subclasses override :meth:`handle` to misbehave."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.port = 0
        self.lock = threading.Lock()
        #: Requests forwarded to the server behind, so far.
        self.forwarded = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen (on a free port the first time, on the same port afterwards)."""
        proxy: ForwardingProxy = self

        class Handler(Exchange):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.listening(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def listening(self, server: ThreadingHTTPServer) -> None:
        """Prepare the listening server before it serves (a subclass may wrap its
        socket, e.g. in TLS); here: nothing."""

    def down(self) -> None:
        """Stop listening: connections to the port are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self.start()

    def stop(self) -> None:
        """Stop for good."""
        self.down()

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes) -> Answer:
        """Send the request to the server behind; its status, reason, headers and body."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
            sent["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            sent["Connection"] = "close"
            conn.request(method, path, body=body or None, headers=sent)
            answer = conn.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            with self.lock:
                self.forwarded += 1
            return answer.status, answer.reason, kept, data
        finally:
            conn.close()

    def handle(self, exchange: Exchange, body: bytes) -> None:
        """Answer one request (here: forward it unchanged)."""
        exchange.answer(*self.forward(exchange.command, exchange.path,
                                      list(exchange.headers.items()), body))


class Exchange(BaseHTTPRequestHandler):
    """One request and its answer, handed to the owner's :meth:`ForwardingProxy.handle`."""

    owner: ForwardingProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the requests carry credentials."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.close_connection = True
        self.owner.handle(self, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's names

    def answer(self, status: int, reason: str | None, headers: list[tuple[str, str]], data: bytes,
               *, cut: bool = False) -> None:
        """Send an answer; ``cut``: only half the body, then reset the connection."""
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            # SO_LINGER 0: close() sends a RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if self.command != "HEAD":
            self.wfile.write(data)
