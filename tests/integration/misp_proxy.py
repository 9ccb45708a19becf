"""A small fault-injecting HTTP proxy between PyMISP and a real MISP, for the fault tests.

A real threading HTTP server on 127.0.0.1 that forwards every request to the MISP behind
it, unless told to misbehave for the next ``n`` requests:

* :meth:`FaultProxy.fail`: answer with a 5xx status and an HTML body (what a reverse
  proxy in front of a broken MISP sends), without forwarding;
* :meth:`FaultProxy.slow`: wait ``seconds`` before forwarding (past the client's timeout);
* :meth:`FaultProxy.reset`: forward, send the status line, the headers and half the
  body, then reset the connection;
* :meth:`FaultProxy.down` / :meth:`FaultProxy.up`: close the listening socket (the
  client's connections are refused) and open it again on the same port.

Every connection is closed after one answer, so each request is one connection. Nothing
is logged (the requests carry the API key in a header).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
              b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to"
              b" service your request.</p></body></html>\n")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-connection", "content-length"})


class FaultProxy:
    """The proxy; :meth:`start` it, point the client at :attr:`url`, :meth:`stop` it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._mode = "forward"
        self._remaining = 0
        self._status = 503
        self._delay = 0.0
        self._closing = threading.Event()
        #: Requests answered with a fault, and requests forwarded to MISP, so far.
        self.faults = 0
        self.forwarded = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy's base URL (give it to the client instead of MISP's)."""
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen (on a free port the first time, on the same port afterwards)."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

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
        """Stop for good; wake any request that is being delayed."""
        self._closing.set()
        self.down()

    # -- faults ------------------------------------------------------------------------
    def _set(self, mode: str, n: int, **values: Any) -> None:
        with self._lock:
            self._mode, self._remaining = mode, n
            for name, value in values.items():
                setattr(self, f"_{name}", value)

    def fail(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` and an HTML page."""
        self._set("fail", n, status=status)

    def slow(self, n: int, seconds: float) -> None:
        """Delay the next ``n`` requests by ``seconds`` before forwarding them."""
        self._set("slow", n, delay=seconds)

    def reset(self, n: int) -> None:
        """Reset the next ``n`` connections after half of MISP's answer."""
        self._set("reset", n)

    def heal(self) -> None:
        """Forward everything from now on."""
        self._set("forward", 0)

    def _next(self) -> str:
        """The fault for the request that just arrived ("forward" for none)."""
        with self._lock:
            if self._mode == "forward" or self._remaining <= 0:
                return "forward"
            self._remaining -= 1
            self.faults += 1
            return self._mode

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                          timeout=60)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP | {"host"}}
            sent["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            sent["Connection"] = "close"
            conn.request(method, path, body=body or None, headers=sent)
            answer = conn.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            with self._lock:
                self.forwarded += 1
            return answer.status, answer.reason, kept, data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the requests carry the API key."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy = self.owner
        fault = proxy._next()
        self.close_connection = True
        if fault == "fail":
            self.send_response(proxy._status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(ERROR_PAGE)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(ERROR_PAGE)
            return
        if fault == "slow" and proxy._closing.wait(proxy._delay):
            return
        status, reason, headers, data = proxy._forward(
            self.command, self.path, list(self.headers.items()), body)
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if fault == "reset":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            # SO_LINGER 0: close() sends a RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815 - http.server's names
