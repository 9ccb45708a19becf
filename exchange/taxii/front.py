"""The front door: a gunicorn worker that reads whole requests before a thread sees them.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it has a byte,
and the thread then blocks on the socket, without a deadline, until the head and the body
have arrived: a client that declares 5,000 bytes and sends 14 holds that thread for good,
and a handful of them starve everyone else. :class:`FrontDoorWorker` keeps gthread's
thread pool and keep-alive handling but reads every request in the worker's event loop,
on a non-blocking socket, the way nginx does:

* the head (request line and header fields) must be complete within
  ``request_header_timeout`` seconds of the connection, or of the previous response on a
  kept-alive connection; the request line may be ``limit_request_line`` bytes long and
  the head :data:`HEAD_LIMIT` bytes; gunicorn's parser then applies its per-field limits;
* the body must come with a ``Content-Length`` no larger than the API root's
  ``max_content_length``; it may pause ``request_body_timeout`` seconds between reads and
  must be complete within ``request_body_timeout`` seconds plus one per 64 KiB;
* only a request whose body is entirely in memory goes to a thread, so a refusal made
  before the application reads the body (401, 403, 404, 503) leaves nothing on the socket
  and the connection stays usable; the bytes of all requests being read in one worker are
  bounded by :data:`BUFFER_BUDGET`, beyond which new data is answered 503.

What the front refuses it answers itself with a TAXII error message
(:mod:`exchange.taxii.refusals`) and ``Connection: close``: 408, 411, 413, 414, 431, 503.
What gunicorn's parser refuses afterwards (duplicate Content-Length or Content-Type, a
malformed request line, an over-long field) is answered the same way by
:meth:`FrontDoorWorker.handle_error` instead of gunicorn's HTML page. Connections are
closed without blocking the event loop: the write side is shut, then whatever the client
still sends is read and dropped for at most :data:`LINGER_SECONDS`.

TLS and cleartext HTTP/2 in gunicorn itself are not supported by this reading path (TLS
belongs to nginx, deploy/nginx.conf); with either configured the worker refuses to start.

The limits come from the node's settings: those ``exchange serve`` passes, or under an
external gunicorn (deploy/gunicorn.conf.py) those of ``EXCHANGE_HOME`` and ``EXCHANGE_*``.
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from exchange.config import Settings, load_settings
from exchange.errors import ConfigError
from exchange.taxii.refusals import describe_parse_error, refusal

#: The most bytes a request head (request line and all header fields) may take.
HEAD_LIMIT = 64 * 1024
#: The most bytes of unfinished requests one worker holds in memory at a time.
BUFFER_BUDGET = 64 * 1024 * 1024
#: How long a closing connection is drained of what the client still sends.
LINGER_SECONDS = 2.0
#: The most bytes drained from a closing connection.
LINGER_BYTES = 1024 * 1024
#: The pace a body must keep on average beyond request_body_timeout (bytes per second).
BODY_RATE = 64 * 1024

_RECV = 256 * 1024
_LENGTH = re.compile(rb"[0-9]{1,19}")


@dataclass(frozen=True)
class FrontLimits:
    """The limits the front door enforces."""

    header_timeout: float
    body_timeout: float
    max_body: int
    line_limit: int
    field_limit: int
    fields_limit: int

    @classmethod
    def from_settings(cls, settings: Settings, cfg: Any) -> FrontLimits:
        """The limits of a node, with gunicorn's request-line and field limits."""
        line = int(cfg.limit_request_line)
        return cls(header_timeout=float(settings.request_header_timeout),
                   body_timeout=float(settings.request_body_timeout),
                   max_body=settings.max_content_length,
                   line_limit=line if 0 < line <= 8190 else 8190,
                   field_limit=int(cfg.limit_request_field_size) or 8190,
                   fields_limit=int(cfg.limit_request_fields) or 100)


class _Refuse(Exception):
    def __init__(self, status: int, description: str,
                 extra_headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.extra_headers = extra_headers


class _Incoming:
    """One request being read: its bytes so far and its deadlines."""

    __slots__ = ("body_deadline", "buf", "conn", "head_deadline", "head_end", "idle_deadline",
                 "limits", "total")

    def __init__(self, conn: Any, buf: bytes, limits: FrontLimits, now: float) -> None:
        self.conn = conn
        self.limits = limits
        self.buf = bytearray(buf)
        self.head_deadline = now + limits.header_timeout
        self.head_end: int | None = None
        self.total: int | None = None
        self.body_deadline = 0.0
        self.idle_deadline = 0.0

    def expired(self, now: float) -> str | None:
        """Why the request is overdue, or None."""
        if self.head_end is None:
            return "the request head did not arrive in time" if now > self.head_deadline \
                else None
        if now > self.body_deadline or now > self.idle_deadline:
            return "the request body did not arrive in time"
        return None

    def feed(self, data: bytes, now: float) -> None:
        self.buf += data
        if self.head_end is not None:
            self.idle_deadline = now + self.limits.body_timeout

    def complete(self, now: float) -> bool:
        """Whether the whole request is in ``buf``.

        Raises:
            _Refuse: The head is over a limit, or the body is refused unread.
        """
        if self.head_end is None and not self._read_head(now):
            return False
        assert self.total is not None
        return len(self.buf) >= self.total

    def _read_head(self, now: float) -> bool:
        lim = self.limits
        line_end = self.buf.find(b"\r\n")
        if line_end > lim.line_limit or (line_end < 0 and len(self.buf) > lim.line_limit + 1):
            raise _Refuse(414, f"the request line is longer than {lim.line_limit} bytes")
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > HEAD_LIMIT:
                raise _Refuse(431, f"the request head is larger than {HEAD_LIMIT} bytes")
            return False
        head_end = end + 4
        if head_end > HEAD_LIMIT:
            raise _Refuse(431, f"the request head is larger than {HEAD_LIMIT} bytes")
        lengths: list[bytes] = []
        kept: list[bytes] = []
        expect_continue = False
        chunked = False
        for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                lengths.append(value.strip())
            elif key == b"transfer-encoding":
                chunked = True
            elif key == b"expect" and value.strip().lower() == b"100-continue":
                expect_continue = True
                continue  # answered here; gunicorn must not answer it a second time
            kept.append(line)
        if chunked:
            raise _Refuse(411, "send the body with a Content-Length header; chunked transfer"
                          " coding is not accepted")
        length = 0
        if len(lengths) == 1 and _LENGTH.fullmatch(lengths[0]):
            length = int(lengths[0])
        # else: none, or a framing error gunicorn's parser refuses once the head is parsed
        if length > lim.max_body:
            raise _Refuse(413, f"the request body is {length} bytes; this API root accepts"
                          f" at most {lim.max_body} (max_content_length)")
        if expect_continue:
            request_line = bytes(self.buf[:self.buf.find(b"\r\n")])
            head = b"\r\n".join([request_line, *kept]) + b"\r\n\r\n"
            self.buf[:head_end] = head
            head_end = len(head)
            if length and len(self.buf) < head_end + length:
                self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.head_end = head_end
        self.total = head_end + length
        self.body_deadline = now + lim.body_timeout + length / BODY_RATE
        self.idle_deadline = now + lim.body_timeout
        return True

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the client is gone; reading will notice
            self.conn.sock.send(data)


def _settings_of(app: Any) -> Settings:
    settings = getattr(app, "exchange_settings", None)
    return settings if isinstance(settings, Settings) else load_settings()


class FrontDoorWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with requests read whole, under deadlines, in the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: dict[Any, _Incoming] = {}
        self._lingering: dict[socket.socket, tuple[float, list[int]]] = {}
        self._buffered = 0
        self._limits: FrontLimits | None = None

    def init_process(self) -> None:
        """Read the limits, then run gthread's loop (never returns).

        Raises:
            ConfigError: gunicorn is configured for TLS or cleartext HTTP/2 itself.
        """
        if self.cfg.is_ssl or str(getattr(self.cfg, "http2_cleartext", "off")) != "off":
            raise ConfigError("the front-door worker reads HTTP/1.1 in the clear only:"
                              " terminate TLS in nginx (deploy/nginx.conf)")
        self._limits = FrontLimits.from_settings(_settings_of(self.app), self.cfg)
        super().init_process()

    # -- reading requests in the event loop ------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """Start reading a request on ``conn`` (new, kept-alive, or with bytes left
        over from the previous request); a thread gets it once it is whole."""
        limits = self._limits
        assert limits is not None
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        incoming = _Incoming(conn, leftover, limits, time.monotonic())
        self._buffered += len(leftover)
        self._reading[conn] = incoming
        try:
            conn.sock.setblocking(False)
            if leftover and self._advance(incoming):
                return
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_readable, conn))
        except (OSError, ValueError):
            self._drop(incoming)

    def _on_readable(self, conn: Any, _sock: Any) -> None:
        incoming = self._reading.get(conn)
        if incoming is None:
            return
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(incoming)  # the client went away mid-request or between requests
            return
        if self._buffered + len(data) > BUFFER_BUDGET:
            self._refuse(incoming, _Refuse(503, "the server is reading too many requests at"
                                           " once; retry shortly", (("Retry-After", "5"),)))
            return
        self._buffered += len(data)
        incoming.feed(data, time.monotonic())
        self._advance(incoming)

    def _advance(self, incoming: _Incoming) -> bool:
        """Dispatch or refuse the request if it can be; whether it left the loop."""
        try:
            if not incoming.complete(time.monotonic()):
                return False
        except _Refuse as refused:
            self._refuse(incoming, refused)
            return True
        self._forget(incoming)
        conn = incoming.conn
        conn.sock.setblocking(True)
        conn.init()  # plain HTTP/1.1 (init_process refused TLS and h2c): makes the parser
        conn.parser.unreader.unread(bytes(incoming.buf))
        conn.data_ready = True
        super().enqueue_req(conn)
        return True

    def _forget(self, incoming: _Incoming) -> None:
        self._reading.pop(incoming.conn, None)
        self._buffered -= len(incoming.buf)
        # not registered when dispatched straight from leftover bytes
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(incoming.conn.sock)

    def _drop(self, incoming: _Incoming) -> None:
        self._forget(incoming)
        self.nr_conns -= 1
        self._linger(incoming.conn.sock)

    def _refuse(self, incoming: _Incoming, refused: _Refuse) -> None:
        self._forget(incoming)
        self.nr_conns -= 1
        # gone, or its receive window is full: the close tells it enough
        with contextlib.suppress(OSError):
            incoming.conn.sock.send(refusal(refused.status, refused.description,
                                            extra_headers=refused.extra_headers))
        peer = incoming.conn.client
        self.log.warning("refused a request from %s: %d (%s)",
                         peer[0] if isinstance(peer, tuple) else "unix socket",
                         refused.status, refused.description)
        self._linger(incoming.conn.sock)

    def murder_pending(self) -> None:
        """gthread's sweep of idle connections, plus overdue requests and lingerers."""
        super().murder_pending()
        now = time.monotonic()
        for incoming in list(self._reading.values()):
            why = incoming.expired(now)
            if why is not None:
                self._refuse(incoming, _Refuse(408, why))
        for sock, (deadline, _) in list(self._lingering.items()):
            if now >= deadline:
                self._end_linger(sock)

    # -- closing without blocking the loop -------------------------------------------

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gthread's bookkeeping after a thread served a request, except that a
        connection to close lingers in the loop instead of blocking it for seconds."""
        result = False if fs.cancelled() or fs.exception() is not None else fs.result()
        if result:
            super().finish_request(conn, fs)
            return
        self.nr_conns -= 1
        self._linger(conn.sock)

    def _linger(self, sock: socket.socket) -> None:
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
            self.poller.register(sock, selectors.EVENT_READ, self._on_linger_readable)
        except (OSError, ValueError, KeyError):
            self._close(sock)
            return
        self._lingering[sock] = (time.monotonic() + LINGER_SECONDS, [0])

    def _on_linger_readable(self, sock: socket.socket) -> None:
        _, drained = self._lingering.get(sock, (0.0, [LINGER_BYTES]))
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_BYTES:
            self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        self._lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.close()
        except OSError as e:
            if e.errno not in (errno.EBADF, errno.ENOTCONN):
                raise

    # -- gunicorn's own refusals as TAXII errors --------------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer a request gunicorn's parser refused with a TAXII error message."""
        limits = self._limits
        status, description = describe_parse_error(
            exc, line_limit=limits.line_limit if limits else 8190,
            field_limit=limits.field_limit if limits else 8190,
            fields_limit=limits.fields_limit if limits else 100)
        peer = addr[0] if isinstance(addr, tuple) and addr else "unix socket"
        if status >= 500:
            self.log.exception("error handling a request from %s", peer)
        else:
            # the class name only: the exception text may quote what the client sent
            self.log.warning("refused a malformed request from %s: %d (%s)", peer, status,
                             type(exc).__name__)
        try:
            client.sendall(refusal(status, description))
        except OSError:
            self.log.debug("could not send the refusal")
