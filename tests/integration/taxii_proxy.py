"""A small fault-injecting HTTP proxy between taxii2-client and a real TAXII server.

A threading HTTP server on 127.0.0.1 that forwards each request to the server behind it.
Faults apply to ``Get Objects`` requests (paths ending in ``/objects/``) only:

* :meth:`TaxiiProxy.cut_after`: let ``n`` pages through, then on the next one send the
  status line, the headers and half the body and reset the connection (a cut mid-page);
* :meth:`TaxiiProxy.down` / :meth:`TaxiiProxy.up`: stop listening (connections are
  refused) and listen again on the same port;
* misbehaving servers: :meth:`TaxiiProxy.drop_next` removes ``next`` from every
  envelope (a server that pages by ``more`` alone); :meth:`TaxiiProxy.ignore_next`
  removes the ``next`` parameter from requests (a server that ignores it and answers the
  first page again, as one paging by offset would); :meth:`TaxiiProxy.more_forever`
  sets ``more: true`` on every envelope.

Each connection carries one request. Nothing is logged (requests carry credentials).
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                         "upgrade", "proxy-connection", "content-length", "host"})


class TaxiiProxy:
    """The proxy; :meth:`start` it, point the client at :meth:`url`, :meth:`stop` it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.port = 0
        self.lock = threading.Lock()
        self.pages = 0  # Get Objects requests answered whole
        self.cuts = 0
        self._cut_at: int | None = None
        self.rewrite = {"drop_next": False, "ignore_next": False, "more_forever": False}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        """A URL of the proxy (``path`` as on the server behind it)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> TaxiiProxy:
        """Listen (on a free port the first time, the same port afterwards)."""
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
        """Stop listening: connections are refused."""
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

    stop = down

    def cut_after(self, pages: int) -> None:
        """Answer ``pages`` more Get Objects requests whole, then cut the next one."""
        with self.lock:
            self._cut_at = self.pages + pages

    def heal(self) -> None:
        """No more faults or rewriting."""
        with self.lock:
            self._cut_at = None
            self.rewrite = dict.fromkeys(self.rewrite, False)

    def drop_next(self) -> None:
        """Remove ``next`` from every envelope."""
        self.rewrite["drop_next"] = True

    def ignore_next(self) -> None:
        """Remove the ``next`` parameter from every request."""
        self.rewrite["ignore_next"] = True

    def more_forever(self) -> None:
        """Say ``more: true`` in every envelope."""
        self.rewrite["more_forever"] = True

    def _fault(self, path: str) -> str:
        if not urlsplit(path).path.endswith("/objects/"):
            return "forward"
        with self.lock:
            if self._cut_at is not None and self.pages >= self._cut_at:
                self._cut_at = None
                self.cuts += 1
                return "cut"
            self.pages += 1
            return "objects"

    def forward(self, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.host, self.upstream_port, timeout=60)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
            sent["Host"] = f"{self.host}:{self.upstream_port}"
            sent["Connection"] = "close"
            conn.request(method, path, body=body or None, headers=sent)
            answer = conn.getresponse()
            data = answer.read()
            kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
            return answer.status, answer.reason, kept, data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    owner: TaxiiProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the requests carry credentials."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy = self.owner
        self.close_connection = True
        fault = proxy._fault(self.path)
        path = self.path
        if fault != "forward" and proxy.rewrite["ignore_next"]:
            parts = urlsplit(path)
            query = [(k, v) for k, v in parse_qsl(parts.query) if k != "next"]
            path = urlunsplit(("", "", parts.path, urlencode(query), ""))
        status, reason, headers, data = proxy.forward(self.command, path,
                                                      list(self.headers.items()), body)
        if fault == "objects" and status == 200 and (proxy.rewrite["drop_next"]
                                                     or proxy.rewrite["more_forever"]):
            envelope = json.loads(data)
            if proxy.rewrite["drop_next"]:
                envelope.pop("next", None)
            if proxy.rewrite["more_forever"]:
                envelope["more"] = True
            data = json.dumps(envelope).encode()
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.wfile.write(data)

    do_GET = do_POST = _handle  # noqa: N815 - http.server's names
