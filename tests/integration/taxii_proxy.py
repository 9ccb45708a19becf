"""A small fault-injecting HTTP proxy between taxii2-client and a real TAXII server.

A :class:`~tests.integration.fault_proxy.ForwardingProxy` on 127.0.0.1 that forwards
each request to the server behind it.
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

import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.integration.fault_proxy import Exchange, ForwardingProxy


class TaxiiProxy(ForwardingProxy):
    """The proxy; :meth:`start` it, point the client at :meth:`url`, :meth:`stop` it."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.pages = 0  # Get Objects requests answered whole
        self.cuts = 0
        self._cut_at: int | None = None
        self.rewrite = {"drop_next": False, "ignore_next": False, "more_forever": False}

    def url(self, path: str = "/") -> str:
        """A URL of the proxy (``path`` as on the server behind it)."""
        return f"http://127.0.0.1:{self.port}{path}"

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

    def handle(self, exchange: Exchange, body: bytes) -> None:
        """Forward, rewriting or cutting Get Objects as told."""
        fault = self._fault(exchange.path)
        path = exchange.path
        if fault != "forward" and self.rewrite["ignore_next"]:
            parts = urlsplit(path)
            query = [(k, v) for k, v in parse_qsl(parts.query) if k != "next"]
            path = urlunsplit(("", "", parts.path, urlencode(query), ""))
        status, reason, headers, data = self.forward(exchange.command, path,
                                                     list(exchange.headers.items()), body)
        if fault == "objects" and status == 200 and (self.rewrite["drop_next"]
                                                     or self.rewrite["more_forever"]):
            envelope = json.loads(data)
            if self.rewrite["drop_next"]:
                envelope.pop("next", None)
            if self.rewrite["more_forever"]:
                envelope["more"] = True
            data = json.dumps(envelope).encode()
        exchange.answer(status, reason, headers, data, cut=fault == "cut")
