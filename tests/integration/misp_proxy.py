"""A small fault-injecting HTTP proxy between PyMISP and a real MISP, for the fault tests.

A real threading HTTP server on 127.0.0.1 (a
:class:`~tests.integration.fault_proxy.ForwardingProxy`) that forwards every request to
the MISP behind it, unless told to misbehave for the next ``n`` requests:

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

import threading
from typing import Any

from tests.integration.fault_proxy import Exchange, ForwardingProxy

ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
              b"<body><h1>Service Unavailable</h1><p>The server is temporarily unable to"
              b" service your request.</p></body></html>\n")


class FaultProxy(ForwardingProxy):
    """The proxy; :meth:`start` it, point the client at :attr:`url`, :meth:`stop` it."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self._mode = "forward"
        self._remaining = 0
        self._status = 503
        self._delay = 0.0
        self._only: str | None = None
        self._closing = threading.Event()
        #: Requests answered with a fault so far (:attr:`forwarded`: forwarded to MISP).
        self.faults = 0

    @property
    def url(self) -> str:
        """The proxy's base URL (give it to the client instead of MISP's)."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop for good; wake any request that is being delayed."""
        self._closing.set()
        self.down()

    # -- faults ------------------------------------------------------------------------
    def _set(self, mode: str, n: int, **values: Any) -> None:
        with self.lock:
            self._mode, self._remaining = mode, n
            for name, value in values.items():
                setattr(self, f"_{name}", value)

    def fail(self, n: int, status: int = 503, *, path: str | None = None) -> None:
        """Answer the next ``n`` requests (whose path holds ``path``, if given) with
        ``status`` and an HTML page."""
        self._set("fail", n, status=status, only=path)

    def slow(self, n: int, seconds: float) -> None:
        """Delay the next ``n`` requests by ``seconds`` before forwarding them."""
        self._set("slow", n, delay=seconds, only=None)

    def reset(self, n: int) -> None:
        """Reset the next ``n`` connections after half of MISP's answer."""
        self._set("reset", n, only=None)

    def heal(self) -> None:
        """Forward everything from now on."""
        self._set("forward", 0, only=None)

    def _next(self, path: str) -> str:
        """The fault for the request that just arrived ("forward" for none)."""
        with self.lock:
            if self._mode == "forward" or self._remaining <= 0:
                return "forward"
            if self._only is not None and self._only not in path:
                return "forward"
            self._remaining -= 1
            self.faults += 1
            return self._mode

    def handle(self, exchange: Exchange, body: bytes) -> None:
        """Forward, fail, delay or reset as told."""
        fault = self._next(exchange.path)
        if fault == "fail":
            exchange.answer(self._status, None, [("Content-Type", "text/html; charset=utf-8")],
                            ERROR_PAGE)
            return
        if fault == "slow" and self._closing.wait(self._delay):
            return
        answer = self.forward(exchange.command, exchange.path,
                              list(exchange.headers.items()), body)
        exchange.answer(*answer, cut=fault == "reset")
