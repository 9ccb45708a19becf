"""Ingestion of one TAXII source: every object version once, resuming where it stopped.

:func:`ingest` reads one source (issue 20 item 2; DESIGN.md decision 9) with the real
taxii2-client and imports what it reads into the source's local collection:

* **Incremental.** It asks for objects ``added_after`` the source's cursor: the server's
  ``X-TAXII-Date-Added-Last`` of the last page fully stored (TAXII 2.1 section 3.4.1).
  The request goes back one microsecond before the cursor, so objects a server stamped
  with the same ``date_added`` as the last one stored, but sent on the next page, are
  never skipped; the ones already stored come back as counted duplicates.
* **Paging** (:class:`Paging`). It follows ``next`` while the server gives one with
  ``more: true``. A server that says ``more`` without ``next`` is read by stepping
  ``added_after`` to each page's ``X-TAXII-Date-Added-Last`` (``more``). A server whose
  ``next`` answers the same page again (it pages by offset, or ignores the parameter) is
  detected and read by stepping too (``offset``). A server that says ``more`` while its
  page is empty, or does not move past the cursor, is stopped with a note (its ``more`` is
  wrong). At most ``max_pages`` pages are read per run; the rest waits for the next run.
  The mode detected is kept in the source's state and shown by ``exchange sync status``.
* **Exactly once.** Each page's objects, their publish records and the ledger entries
  commit in one transaction (``Store.add_objects``); the cursor is saved after that
  commit. A version already held as the source organisation's (same id and
  ``modified``) is a counted ``duplicate`` and stores nothing, so a crash, a refused
  connection or a cut between the commit and the cursor only means reading a page
  again. A failure mid-page stores nothing of that page.
* **What is stored.** Every object is a contribution of the source's organisation
  (``TaxiiSource.org``), checked by the ingest rules of a TAXII publish: the strict STIX
  2.1 profile and limits, the collection's ``custom_content`` rule, the authorship rule
  (no other registered organisation's identity as author) and the policy's TLP reading.
  A ``vendor`` source's objects are signed by this node as attestations (decision 8), as
  MISP imports are (in the source's ``sign_workers`` forked processes when it names
  some: :mod:`exchange.feeds.attest`). A ``peer`` source's objects keep their authors'
  cx-sig signatures: each must pass the :class:`ObjectVerifier` of the pinned peer
  (``trust``), or it is refused with the verifier's reason and never stored; a peer
  source without a verifier refuses to run. The publish records (channel ``taxii:pull``, account
  ``taxii-source-<name>`` of the organisation, created on first use without an API key)
  are this node's attestation of the import.
* **Known server defects** tolerated for vendor sources, each named in the run's
  message: ``spec_version`` equal to the object's type (:data:`SPEC_VERSION_NOTE`).
* **Refusals** are counted (``refused``) with a stable rule and a reason each
  (:class:`Refusal`), kept in the state for ``sync status``.

Counts: ``created`` (versions stored), ``duplicate`` (already held), ``refused``,
``pages``. Recording the run in the source's state is :mod:`exchange.feeds.run`'s; this
module saves only the cursor and paging mode after each page it committed.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import requests
from requests.adapters import HTTPAdapter
from taxii2client import exceptions as taxii_errors
from taxii2client.v21 import ApiRoot, Server
from taxii2client.v21 import Collection as TaxiiCollection

from exchange.errors import (
    AuthError,
    ConfigError,
    ExchangeError,
    InvalidObject,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    StorageError,
)
from exchange.feeds.attest import Attester, Refused, rule_of
from exchange.feeds.sources import Kind, TaxiiSource, client_certificate, read_password
from exchange.model.objects import StixObject, Tlp
from exchange.model.stix import custom_content_of, is_observable, validate_object
from exchange.model.stixkinds import parse_timestamp
from exchange.node.base import now_micros
from exchange.node.collector import collector_paused
from exchange.node.imports import import_account, store_import
from exchange.node.publish import version_to_store
from exchange.node.service import Exchange
from exchange.policy import level_of
from exchange.policy.tlp import split_marking_refs
from exchange.signing.canonical import EXTENSION_ID
from exchange.signing.published import TrustedKeys
from exchange.storage.base import (
    Account,
    AddOutcome,
    AddResult,
    Collection,
    IdOwnership,
    NewVersion,
    ObjectQuery,
    Organisation,
    SourceState,
    VersionMatch,
)
from exchange.storage.timestamps import to_micros

__all__ = [
    "CHANNEL",
    "MAX_ANSWER_BYTES",
    "MAX_PAGES",
    "IngestReport",
    "ObjectVerifier",
    "Outcome",
    "Paging",
    "Refusal",
    "TaxiiReader",
    "VerifierFor",
    "ingest",
    "source_account",
    "tls_reason",
]

log = logging.getLogger(__name__)

#: The channel of the publish records an ingestion writes.
CHANNEL: Final = "taxii:pull"
#: The most pages one run reads.
MAX_PAGES: Final = 10_000
#: The largest answer read (a page of objects at the per-object limit would be larger:
#: a server sending one is asked for smaller pages).
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
#: Ids per store query.
_CHUNK: Final = 200
_ONE_MICROSECOND: Final = timedelta(microseconds=1)
#: OpenTAXII 0.9.3 writes each object's type as its ``spec_version`` in Get Objects
#: answers (its server.py); a vendor object so marked is read as STIX 2.1, the version a
#: TAXII 2.1 collection of that server accepts, and the run says so. A peer's objects are
#: never changed (their signatures cover every byte).
SPEC_VERSION_NOTE: Final = ("the server writes each object's type as its spec_version"
                            " (an OpenTAXII 0.9.3 defect); read as STIX 2.1")


class ObjectVerifier(Protocol):
    """Verifies a peer's object against the peer's published registry and pinned keys."""

    def verify(self, obj: Mapping[str, Any], recorded: int | None = None) -> str | None:
        """None when the object's cx-sig signature verifies, else the refusal reason;
        ``recorded``: when the source recorded the object (µs), when known."""

    def compromised_since(self, obj: Mapping[str, Any]) -> int | None:
        """When the key that signed the object was compromised, if it is known to be
        (only then is its recording time asked of the source)."""

    @property
    def keys(self) -> TrustedKeys | None:
        """The peer's registry as last verified, whose keys of the source's organisation
        this node mirrors into its own (None: nothing to mirror)."""


#: ``verifier_for(node, trust_name)``: the verifier of a pinned peer (exchange.feeds.peers).
VerifierFor = Callable[[Exchange, str], ObjectVerifier]


class Outcome(enum.StrEnum):
    """How a run ended."""

    OK = "ok"
    PARTIAL = "partial"  # objects were refused (each with a reason); the rest is stored
    FAILED = "failed"  # the server could not be read to the end; the cursor holds
    AUTH_FAILED = "auth-failed"  # the server refused the login (or it cannot be read)
    RUNNING = "running"


class Paging(enum.StrEnum):
    """How a server pages, as detected."""

    NEXT = "next"  # TAXII 2.1 next + more
    MORE = "more"  # more without next: added_after stepping
    OFFSET = "offset"  # next repeats the page (offset paging, or next ignored): stepping


@dataclass(frozen=True, slots=True)
class Refusal:
    """An object not stored, and why (``rule`` is stable, ``reason`` is for people)."""

    id: str
    rule: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """The stored form (``SourceState.reasons``)."""
        return {"id": self.id, "rule": self.rule, "reason": self.reason, "kind": "refused"}


@dataclass(slots=True)
class IngestReport:
    """What one run of one source did.

    Attributes:
        source: The source's name.
        counts: ``created``, ``duplicate``, ``refused``, ``pages``.
        refusals: Every object refused, with its reason.
        cursor_before: The cursor the run started from.
        cursor_after: The cursor after the last page committed.
        paging: The paging mode detected.
        notes: What the run noticed about the server (a wrong ``more``...).
        outcome: How it ended.
        message: One sentence on the outcome (never a secret).
    """

    source: str
    counts: Counter[str] = field(default_factory=Counter)
    refusals: list[Refusal] = field(default_factory=list)
    cursor_before: str | None = None
    cursor_after: str | None = None
    paging: Paging | None = None
    notes: list[str] = field(default_factory=list)
    outcome: Outcome = Outcome.OK
    message: str = ""

    def refuse(self, object_id: str, rule: str, reason: str) -> None:
        """Count and keep one refused object."""
        self.counts["refused"] += 1
        self.refusals.append(Refusal(object_id, rule, reason))
        if self.outcome is Outcome.OK:
            self.outcome = Outcome.PARTIAL


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a TAXII 2.1 ``Get Objects`` answer."""

    objects: list[Any]
    more: bool
    next: str | None
    date_added_last: str | None


class _SourceAdapter(HTTPAdapter):
    """Sends every request of a source's session with its timeout (taxii2-client sets
    none), and with its ``ca_file`` and client certificate when it names them.

    They are set here, on each request as sent, because taxii2-client can only set them
    on the session, and requests lets the environment (``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``) override a session's ``verify``: the CA file the operator named
    for this source would be ignored wherever those variables are set.
    """

    def __init__(self, timeout: float, ca_file: str | None,
                 cert: tuple[str, str] | None) -> None:
        super().__init__(max_retries=0)
        self._timeout = timeout
        self._ca_file = ca_file
        self._cert = cert

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        kwargs["timeout"] = self._timeout
        if self._ca_file is not None:
            kwargs["verify"] = self._ca_file
        if self._cert is not None:  # mutual TLS: presented on every connection
            kwargs["cert"] = self._cert
        return super().send(request, *args, **kwargs)


class TaxiiReader:
    """The source's collection through taxii2-client, one page at a time.

    Nothing is sent on construction; :meth:`page` finds the collection on first use.
    """

    def __init__(self, source: TaxiiSource, password: str | None) -> None:
        """Raises ConfigError for a client certificate or key that cannot be used
        (:func:`~exchange.feeds.sources.client_certificate`)."""
        self.source = source
        self._password = password
        self._cert = client_certificate(source)
        self._collection: TaxiiCollection | None = None
        self._last: requests.Response | None = None
        self._lock = threading.Lock()  # one request at a time (_request)

    def __repr__(self) -> str:
        return f"TaxiiReader({self.source.name!r})"

    def _session(self, target: Any) -> None:
        session: requests.Session = target._conn.session
        adapter = _SourceAdapter(self.source.timeout, self.source.ca_file, self._cert)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.hooks["response"].append(self._keep)

    def _keep(self, response: requests.Response, *_: Any, **__: Any) -> None:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            response.close()
            raise ExchangeError(f"source {self.source.name!r}: an answer of {int(length):,}"
                                f" bytes is over the {MAX_ANSWER_BYTES:,} the exchange reads;"
                                " lower page_size")
        self._last = response

    def _verify(self) -> bool | str:
        return self.source.ca_file if self.source.ca_file is not None else True

    def collection(self) -> TaxiiCollection:
        """The source's collection (found by id or title on first use).

        Raises:
            AuthError: The server refused the login.
            ExchangeError: The server cannot be read, or has no such collection.
        """
        if self._collection is not None:
            return self._collection
        source = self.source
        with _Translated(source):
            root_url = source.api_root
            if root_url is None:
                server = Server(str(source.discovery), user=source.user,
                                password=self._password, verify=self._verify())
                self._session(server)
                default = server.default
                if default is None:
                    roots = server.api_roots
                    if len(roots) != 1:
                        raise NotFound(f"source {source.name!r}: the discovery names no"
                                       f" default API root and {len(roots)} others; set"
                                       " api_root")
                    default = roots[0]
                root_url = default.url
            root = ApiRoot(root_url, user=source.user, password=self._password,
                           verify=self._verify())
            self._session(root)
            for found in root.collections:
                if source.collection in (found.id, found.title):
                    self._session(found)
                    self._collection = found
                    return found
        raise NotFound(f"source {source.name!r}: the API root has no collection"
                       f" {source.collection!r} readable by this account")

    def _request(self, endpoint: Callable[..., Any], what: str, **kwargs: Any
                 ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """The collection's ``endpoint`` (a taxii2-client method) called with ``kwargs``:
        its TAXII envelope and the headers of its answer, one request at a time: the
        read-ahead thread reads pages while the importing thread may ask for a manifest
        (:meth:`recorded`), and each must read its own answer's headers.

        Raises:
            AuthError, ExchangeError: As :class:`_Translated` turns the failure; or the
                answer (``what``, for the message) is not a TAXII envelope.
        """
        with self._lock:
            collection = self.collection()
            with _Translated(self.source):
                answer = endpoint(collection, **kwargs)
            headers = self._last.headers if self._last is not None else {}
        if not isinstance(answer, dict):
            raise ExchangeError(f"source {self.source.name!r}: {what} is not a TAXII"
                                " envelope")
        return answer, headers

    def page(self, *, added_after: str | None, next_token: str | None, limit: int) -> Page:
        """One page of objects.

        Raises:
            AuthError: The server refused the login.
            ExchangeError: The server could not be read (the reason says why).
        """
        kwargs: dict[str, Any] = {"limit": limit}
        if added_after is not None:
            kwargs["added_after"] = added_after
        if next_token is not None:
            kwargs["next"] = next_token
        envelope, headers = self._request(TaxiiCollection.get_objects, "the server's answer",
                                          **kwargs)
        objects = envelope.get("objects") or []
        if not isinstance(objects, list):
            raise ExchangeError(f"source {self.source.name!r}: the envelope's objects are"
                                " not a list")
        nxt = envelope.get("next")
        return Page(objects=objects, more=envelope.get("more") is True,
                    next=str(nxt) if isinstance(nxt, str | int) and str(nxt) else None,
                    date_added_last=headers.get("X-TAXII-Date-Added-Last"))

    def recorded(self, ids: Sequence[str]) -> dict[tuple[str, int], int]:
        """When the source recorded every version of these ids: (id, version) ->
        ``date_added``, both in µs, from its manifest (TAXII 2.1 section 5.6), read in
        requests of :data:`_MANIFEST_IDS` ids and at most :data:`_MANIFEST_PAGES` pages
        each. A record that cannot be read is left out (its object's time is unknown).

        Raises:
            AuthError: The server refused the login.
            ExchangeError: The server could not be read (the reason says why).
        """
        out: dict[tuple[str, int], int] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), _MANIFEST_IDS):
            part = unique[start:start + _MANIFEST_IDS]
            token: str | None = None
            for _ in range(_MANIFEST_PAGES):
                kwargs: dict[str, Any] = {"id": part, "version": "all",
                                          "limit": _MANIFEST_LIMIT}
                if token is not None:
                    kwargs["next"] = token
                answer, _ = self._request(TaxiiCollection.get_manifest, "the manifest answer",
                                          **kwargs)
                for record in answer.get("objects") or ():
                    kept = _manifest_time(record)
                    if kept is not None:
                        out[kept[0]] = kept[1]
                nxt = answer.get("next")
                if answer.get("more") is not True or not isinstance(nxt, str) or not nxt:
                    break
                token = nxt
        return out


#: Ids per manifest request (a URL of about 3 KiB), its page size, and the pages read.
_MANIFEST_IDS: Final = 50
_MANIFEST_LIMIT: Final = 1000
_MANIFEST_PAGES: Final = 10


def _manifest_time(record: Any) -> tuple[tuple[str, int], int] | None:
    """((id, version), date_added) of one manifest record, in µs; None when malformed."""
    if not isinstance(record, Mapping):
        return None
    object_id, version, added = record.get("id"), record.get("version"), \
        record.get("date_added")
    if not (isinstance(object_id, str) and isinstance(version, str)
            and isinstance(added, str)):
        return None
    try:
        return (object_id, to_micros(version)), to_micros(added)
    except (ValueError, TypeError):
        return None


#: OpenSSL's reason code in an SSL error's text (``[SSL: CERTIFICATE_VERIFY_FAILED]``).
_SSL_REASON: Final = re.compile(r"\[SSL: ([A-Z0-9_]{1,80})\]")


def tls_reason(error: BaseException) -> str:
    """OpenSSL's reason code for a failed TLS connection (``CERTIFICATE_VERIFY_FAILED``),
    else the error's type name: never more of its text."""
    found = _SSL_REASON.search(str(error))
    return found[1] if found else type(error).__name__


class _Translated:
    """Turns requests' and taxii2-client's errors into the exchange's (no secret kept)."""

    def __init__(self, source: TaxiiSource) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: object) -> Literal[False]:
        if error is None or isinstance(error, ExchangeError):
            return False
        name = self.source.name
        if isinstance(error, requests.HTTPError) and error.response is not None:
            code = error.response.status_code
            if code in (401, 403):
                raise AuthError(f"source {name!r}: the server refused the login (HTTP"
                                f" {code})") from None
            raise ExchangeError(f"source {name!r}: the server answered HTTP {code}") from None
        if isinstance(error, requests.exceptions.SSLError):
            raise ExchangeError(
                f"source {name!r}: TLS with the server failed ({tls_reason(error)}): check"
                " ca_file for the server's certificate, and client_cert and client_key if"
                " it asks for one"
            ) from None
        if isinstance(error, requests.Timeout):
            raise ExchangeError(f"source {name!r}: no answer within"
                                f" {self.source.timeout:g} s") from None
        if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError
                      | requests.exceptions.ContentDecodingError):
            raise ExchangeError(f"source {name!r}: cannot connect or the connection broke"
                                f" ({type(error).__name__})") from None
        if isinstance(error, taxii_errors.TAXIIServiceException | ValueError):
            raise ExchangeError(f"source {name!r}: not a valid TAXII 2.1 answer"
                                f" ({type(error).__name__})") from None
        if isinstance(error, requests.RequestException):
            raise ExchangeError(f"source {name!r}: request failed"
                                f" ({type(error).__name__})") from None
        return False


@dataclass(frozen=True, slots=True)
class _Context:
    node: Exchange
    source: TaxiiSource
    owner: Organisation
    collection: Collection
    verifier: ObjectVerifier | None
    now: int
    attester: Attester | None  # a vendor source's: the node signs what it imports
    reader: TaxiiReader  # also for a peer's recording times (manifest)
    verifying: ThreadPoolExecutor | None = None  # a peer's: verifies beside this thread
    verify_threads: int = 1  # this thread and the verifying pool's


def ingest(node: Exchange, source: TaxiiSource, *, reader: TaxiiReader | None = None,
           verifier_for: VerifierFor | None = None, max_pages: int = MAX_PAGES,
           now: int | None = None, workers: int | None = None) -> IngestReport:
    """Read a source from its cursor and import what is new (module docstring).

    Args:
        node: The exchange (its policy source set).
        source: The source; its organisation must be registered and may write ``into``.
        reader: The reader to use (default: one built from the source and its password).
        verifier_for: For a peer source, gives the pinned peer's verifier.
        max_pages: The most pages to read in this run.
        now: The current time, µs since the epoch (signing time and ledger).
        workers: For a vendor source, the processes that sign its objects
            (:class:`~exchange.feeds.attest.Attester`; default: the source's
            ``sign_workers``; 0 or 1: sign in this process).

    Returns:
        The report; ``failed`` or ``auth-failed`` when the server could not be read to
        the end (everything committed before stays, and the cursor with it).

    Raises:
        ConfigError: A peer source without a verifier, or a password that cannot be read.
        NotFound: The organisation or the local collection does not exist.
        PermissionDenied: The organisation may not write to the local collection.
        StorageError: The database failed (the page being stored is not stored).
    """
    at = now_micros() if now is None else now
    store = node.store
    state = store.source_state(source.name) or SourceState(source.name)
    moved_from = state.endpoint if state.endpoint not in (None, source.endpoint) else None
    if moved_from is not None:  # its cursor is a position in another collection
        state = replace(state, cursor=None, paging=None)
    report = IngestReport(source.name, cursor_before=state.cursor, cursor_after=state.cursor,
                          paging=Paging(state.paging) if state.paging else None)
    if moved_from is not None:
        report.notes.append(f"the source now reads {source.endpoint} (its cursor was for"
                            f" {moved_from}): read from the start, what is held already"
                            " counting as duplicate")
    destination = _destination(node, source)
    verifier = _verifier(node, source, verifier_for)
    if reader is None:
        reader = TaxiiReader(source, read_password(source))
    attester = None
    if source.kind is Kind.VENDOR:
        attester = Attester(node.node_key(), signed_at=_signed_at(at), limits=node.limits,
                            workers=source.sign_workers if workers is None else workers)
        attester.start()  # forks before the read-ahead thread exists
    threads = min(VERIFY_THREADS, os.cpu_count() or 1)
    verifying = ThreadPoolExecutor(threads - 1, thread_name_prefix=f"verify-{source.name}") \
        if verifier is not None and threads > 1 else None
    ctx = _Context(node, source, *destination, verifier=verifier, now=at, attester=attester,
                   reader=reader, verifying=verifying, verify_threads=threads)
    mirrored = _mirror_keys(ctx, report, None)
    cursor = state.cursor
    chain_start = _before(cursor)
    previous: list[tuple[str, str]] | None = None
    # One page is read ahead while the page before it is imported: the next request
    # depends only on the page's envelope and headers, never on what was stored.
    ahead = ThreadPoolExecutor(1, thread_name_prefix=f"taxii-source-{source.name}")

    def fetch(added_after: str | None, next_token: str | None) -> Future[Page]:
        return ahead.submit(reader.page, added_after=added_after, next_token=next_token,
                            limit=source.page_size)

    sent_next: str | None = None
    try:
        pending = fetch(chain_start, None)
        for _ in range(max_pages):
            page = pending.result()
            keys = [_key(o) for o in page.objects]
            if sent_next is not None and keys and keys == previous:
                report.paging = Paging.OFFSET
                report.notes.append("the server answered `next` with the same page again"
                                    " (it pages by offset or ignores next): read by"
                                    " added_after instead")
                sent_next, chain_start, previous = None, _before(cursor), None
                pending = fetch(chain_start, None)
                continue
            previous = keys
            report.counts["pages"] += 1
            advanced = _later_of(cursor, page.date_added_last)
            follow, stop = _follow_up(page, report, chain_start, cursor, advanced)
            if follow is not None:
                chain_start, sent_next = follow
                pending = fetch(chain_start, sent_next)
            with collector_paused():  # a page allocates much and makes no cycles
                _import_page(ctx, page.objects, report)
            if page.objects and page.date_added_last is None and "no-header" not in \
                    report.notes:
                report.notes.append("no-header")
            cursor = advanced
            report.cursor_after = cursor
            store.save_source_state(replace(
                store.source_state(source.name) or SourceState(source.name),
                cursor=cursor, paging=(report.paging or Paging.NEXT).value,
                endpoint=source.endpoint))
            if stop is not None:
                report.notes.append(stop)
            if follow is None:
                break
        else:
            report.notes.append(f"stopped after {max_pages} pages; the rest waits for the"
                                " next run")
    except StorageError:
        raise
    except AuthError as e:
        report.outcome, report.message = Outcome.AUTH_FAILED, e.reason
    except ExchangeError as e:
        report.outcome, report.message = Outcome.FAILED, e.reason
    finally:
        ahead.shutdown(wait=True, cancel_futures=True)
        if verifying is not None:
            verifying.shutdown(wait=True, cancel_futures=True)
        if attester is not None:
            attester.close()
    _mirror_keys(ctx, report, mirrored)  # a key learnt mid-run (registry fetched again)
    if report.paging is None:
        report.paging = Paging.NEXT
    report.notes = [_note(n) for n in report.notes]
    if not report.message:
        report.message = _summary(report, ctx.collection)
    return report


def _mirror_keys(ctx: _Context, report: IngestReport, done: TrustedKeys | None
                 ) -> TrustedKeys | None:
    """Mirror the keys a peer publishes for the source's organisation into this node's
    registry (:meth:`exchange.node.peers.Peers.mirror_peer_keys`), unless the verifier's
    registry is the one already mirrored (``done``); returns the registry mirrored. The
    changes are notes of the run; a failure to mirror is one too, never the run's."""
    keys = ctx.verifier.keys if ctx.verifier is not None else None
    if keys is None or keys is done:
        return done
    try:
        changes = ctx.node.mirror_peer_keys(str(ctx.source.trust), keys, ctx.owner.name)
    except StorageError:
        raise
    except ExchangeError as e:
        report.notes.append(f"{ctx.owner.name}'s keys could not be mirrored from the"
                            f" peer's registry: {e.reason}")
        return done
    if changes:
        report.notes.append(f"{ctx.owner.name}'s keys mirrored from the peer's registry:"
                            f" {'; '.join(changes)}")
    return keys


def _follow_up(page: Page, report: IngestReport, chain_start: str | None,
               cursor: str | None, advanced: str | None
               ) -> tuple[tuple[str | None, str | None] | None, str | None]:
    """The request after ``page`` as (added_after, next), or None to stop; and why the run
    stops early, if it does. Sets the paging mode detected."""
    if not page.more:
        return None, None
    if not page.objects:
        return None, ("the server said `more` with an empty page (its more is wrong);"
                      " stopped")
    if page.next is not None and report.paging is not Paging.OFFSET:
        report.paging = report.paging if report.paging is Paging.MORE else Paging.NEXT
        return (chain_start, page.next), None
    if report.paging is not Paging.OFFSET:
        report.paging = Paging.MORE
    if advanced == cursor:
        return None, (f"the server said `more` but its page did not move past"
                      f" {cursor or 'the start'} (its more is wrong, or more than a page"
                      " of objects share one date_added); stopped")
    return (_before(advanced), None), None


def _note(note: str) -> str:
    if note == "no-header":
        return ("the server sends no X-TAXII-Date-Added-Last: the cursor cannot advance and"
                " each run reads the collection again (as duplicates)")
    return note


def _summary(report: IngestReport, collection: Collection) -> str:
    c = report.counts
    text = (f"{c['pages']} pages read ({report.paging} paging): {c['created']} created in"
            f" {collection.alias or collection.id}, {c['duplicate']} duplicate,"
            f" {c['refused']} refused")
    return "; ".join([text, *report.notes])


def _destination(node: Exchange, source: TaxiiSource) -> tuple[Organisation, Collection]:
    owner = node.store.find_org(source.org)
    collection = node.store.get_collection(node.settings.api_root, source.into)
    grant = node.store.grant_for(collection.id, owner.id)
    if grant is None or not grant.can_write:
        raise PermissionDenied(f"source {source.name!r}: {owner.name} may not write to"
                               f" collection {source.into!r}; grant it or import elsewhere")
    return owner, collection


def _verifier(node: Exchange, source: TaxiiSource, verifier_for: VerifierFor | None
              ) -> ObjectVerifier | None:
    if source.kind is not Kind.PEER:
        return None
    if verifier_for is None:
        raise ConfigError(f"source {source.name!r} is a peer, but this installation cannot"
                          f" verify peer signatures (no pinned-peer verifier for"
                          f" {source.trust!r}); it does not run")
    return verifier_for(node, str(source.trust))


def _key(obj: Any) -> tuple[str, str]:
    if not isinstance(obj, Mapping):
        return ("", "")
    return (str(obj.get("id")), str(obj.get("modified") or obj.get("created") or ""))


def _micros_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _before(cursor: str | None) -> str | None:
    """``added_after`` for a cursor: one microsecond earlier (objects at the cursor's own
    ``date_added`` are read again, as duplicates, never skipped)."""
    if cursor is None:
        return None
    moment = parse_timestamp(cursor)
    if moment is None:
        return cursor
    return _micros_text(moment.replace(tzinfo=UTC) - _ONE_MICROSECOND)


def _later_of(cursor: str | None, seen: str | None) -> str | None:
    if seen is None or parse_timestamp(seen) is None:
        return cursor
    if cursor is None:
        return seen
    before, after = parse_timestamp(cursor), parse_timestamp(seen)
    if before is None or (after is not None and after > before):
        return seen
    return cursor


# -- one page ---------------------------------------------------------------------------
@dataclass(slots=True)
class _Candidate:
    obj: StixObject
    version: int | None
    signed_kid: str | None


def _import_page(ctx: _Context, objects: Sequence[Any], report: IngestReport) -> None:
    """Check, sign (vendor) and store one page's objects (one transaction)."""
    node, owner, collection = ctx.node, ctx.owner, ctx.collection
    policy = node.policy.current() if node.policy is not None else None
    custom_rule = node.custom_content_rule(collection, policy)
    registered = node.registered_identities()
    checked: list[_Candidate] = []
    # Objects a peer signed with a key it revoked as compromised: checked again once the
    # peer's manifest says when it recorded them (position in the page, object, refusal).
    again: list[tuple[int, Mapping[str, Any], _SignatureRefused]] = []
    verdicts = _verdicts(ctx, objects)
    for position, received in enumerate(objects):
        raw = received
        object_id = str(raw.get("id")) if isinstance(raw, Mapping) else "(not an object)"
        if ctx.source.kind is Kind.VENDOR and isinstance(raw, Mapping) and \
                raw.get("type") is not None and raw.get("spec_version") == raw.get("type"):
            raw = {**raw, "spec_version": "2.1"}
            if SPEC_VERSION_NOTE not in report.notes:
                report.notes.append(SPEC_VERSION_NOTE)
        try:
            checked.append(_check(ctx, raw, owner, registered, custom_rule,
                                  verdict=verdicts[position] if verdicts else _UNSET))
        except _SignatureRefused as e:
            if ctx.verifier is not None and ctx.verifier.compromised_since(raw) is not None:
                again.append((len(checked), raw, e))
            else:
                report.refuse(object_id, _rule(e), e.reason)
        except ExchangeError as e:
            report.refuse(object_id, _rule(e), e.reason)
    if again:
        checked = _check_again(ctx, checked, again, report, owner, registered, custom_rule)
    held = _held(ctx, checked)
    fresh: list[_Candidate] = []
    in_page: set[tuple[str, int | None]] = set()
    for candidate in checked:
        mark = (candidate.obj.id, candidate.version)
        if mark in held or mark in in_page:
            report.counts["duplicate"] += 1
            continue
        in_page.add(mark)
        fresh.append(candidate)
    attester = ctx.attester
    signed: Sequence[StixObject | Refused] = (
        attester.sign([c.obj for c in fresh]) if attester is not None
        else [c.obj for c in fresh])
    kid = attester.kid if attester is not None else None
    levels: dict[tuple[tuple[str, ...], tuple[str, ...]], Tlp | None] = {}
    versions: list[NewVersion] = []
    for candidate, obj in zip(fresh, signed, strict=True):
        if isinstance(obj, Refused):
            report.refuse(candidate.obj.id, obj.rule, obj.reason)
            continue
        try:
            if policy is not None:
                marks = split_marking_refs(obj.data)
                if marks not in levels:  # the policy's reading of markings, once a page
                    levels[marks] = level_of(marks[0], policy, {}, granular=marks[1])
                tlp = levels[marks]
            else:
                tlp = obj.tlp
        except ExchangeError as e:
            report.refuse(obj.id, _rule(e), e.reason)
            continue
        versions.append(version_to_store(
            obj, producer_org=owner.id, tlp=tlp.value if tlp else None,
            effective_tlp=tlp.value if tlp else collection.default_tlp,
            signed_kid=kid if kid is not None else candidate.signed_kid,
            ownership=_ownership(obj)))
    if versions:
        stored = _store(ctx, versions, kid, report)
        if ctx.verifier is not None:
            _cover(ctx, stored, report)


#: Threads that verify a peer's page (the importing one and the others): Ed25519
#: verification, most of a peer object's check, releases the interpreter lock.
VERIFY_THREADS: Final = 4


class _Unset:
    """``_check``'s verdict when none was made beforehand."""


_UNSET: Final = _Unset()
_Verdict = str | None | _Unset


def _verdicts(ctx: _Context, objects: Sequence[Any]) -> list[_Verdict]:
    """The verifier's verdict on each object of a peer's page (None: its signature
    holds; else the reason), made on this thread and the verifying threads at once; an
    empty list when there is no verifier or no other thread. A non-object gets
    :data:`_UNSET` (``_check`` refuses it as malformed)."""
    verifier, pool = ctx.verifier, ctx.verifying
    if verifier is None or pool is None or len(objects) < 2:
        return []

    def judge(part: Sequence[Any]) -> list[_Verdict]:
        return [verifier.verify(o) if isinstance(o, Mapping) else _UNSET for o in part]

    parts = ctx.verify_threads
    size = -(-len(objects) // parts)
    later = [pool.submit(judge, objects[start:start + size])
             for start in range(size, len(objects), size)]
    out = judge(objects[:size])
    for future in later:
        out += future.result()
    return out


def _check_again(ctx: _Context, checked: list[_Candidate],
                 again: Sequence[tuple[int, Mapping[str, Any], _SignatureRefused]],
                 report: IngestReport, owner: Organisation, registered: Mapping[str, str],
                 custom_rule: str) -> list[_Candidate]:
    """``checked`` with the objects of ``again`` that verify by the time the peer
    recorded them, each at its place in the page; the others refused with the reason
    (the first one's, when the peer's manifest does not give the time)."""
    recorded: dict[tuple[str, int], int] = {}
    ids = [str(raw["id"]) for _, raw, _ in again if isinstance(raw.get("id"), str)]
    if ids:
        try:
            recorded = ctx.reader.recorded(ids)
        except ExchangeError as e:
            log.warning("source %s: the manifest could not be read for %d object(s) signed"
                        " by a revoked key: %s", ctx.source.name, len(ids), e.reason)
    placed: list[tuple[int, _Candidate]] = []
    for index, raw, first in again:
        object_id = str(raw.get("id"))
        key = _version_key(raw)
        when = recorded.get(key) if key is not None else None
        if when is None:
            report.refuse(object_id, _rule(first), first.reason)
            continue
        try:
            placed.append((index, _check(ctx, raw, owner, registered, custom_rule, when)))
        except ExchangeError as e:
            report.refuse(object_id, _rule(e), e.reason)
    out = list(checked)
    for index, candidate in reversed(placed):  # from the end, so earlier places hold
        out.insert(index, candidate)
    return out


def _version_key(raw: Any) -> tuple[str, int] | None:
    """(id, version in µs) of a received object, as a manifest names it."""
    if not isinstance(raw, Mapping):
        return None
    version = raw.get("modified") or raw.get("created")
    if not isinstance(raw.get("id"), str) or not isinstance(version, str):
        return None
    try:
        return str(raw["id"]), to_micros(version)
    except (ValueError, TypeError):
        return None


def _check(ctx: _Context, raw: Any, owner: Organisation, registered: Mapping[str, str],
           custom_rule: str, recorded: int | None = None, *,
           verdict: _Verdict = _UNSET) -> _Candidate:
    """The object checked by the ingest rules (and, for a peer, its signature, with
    ``recorded`` the time the peer recorded it when that was asked, or ``verdict`` the
    verifier's, made beforehand without it: :func:`_verdicts`).

    Raises:
        ExchangeError: It may not be stored (the reason says why).
    """
    if not isinstance(raw, Mapping):
        raise InvalidObject("an element of the envelope's objects is not a JSON object")
    signed_kid = None
    if ctx.verifier is not None:
        why = ctx.verifier.verify(raw, recorded) if isinstance(verdict, _Unset) else verdict
        if why is not None:
            raise _SignatureRefused(why)
        entry = (raw.get("extensions") or {}).get(EXTENSION_ID) or {}
        signed_kid = str(entry.get("kid")) if isinstance(entry, Mapping) and \
            entry.get("kid") else None
    obj = validate_object(dict(raw), ctx.node.limits)
    if custom_rule != "accept":
        found = custom_content_of(obj.data)
        if found.custom_type or (custom_rule == "predefined-only" and found.properties):
            what = (f"objects of type {obj.type!r}" if found.custom_type
                    else f"custom properties ({', '.join(found.properties[:5])})")
            raise PolicyDenied(f"{what} are refused in collection"
                               f" {ctx.collection.alias or ctx.collection.id} (policy:"
                               f" custom_content {custom_rule})")
    author = obj.created_by_ref
    if author is not None and author != owner.identity_id and author in registered:
        raise PermissionDenied(f"created_by_ref {author} is the registered identity of"
                               f" {registered[author]}, not of {owner.name}, whom the source"
                               " stands for")
    return _Candidate(obj, to_micros(obj.version) if obj.version else None, signed_kid)


class _SignatureRefused(ExchangeError):
    """The peer's verifier refused the object's signature."""

    title = "Signature refused"


def _rule(error: ExchangeError) -> str:
    if isinstance(error, _SignatureRefused):
        return "signature"
    return rule_of(error)


def _held(ctx: _Context, candidates: Sequence[_Candidate]) -> set[tuple[str, int | None]]:
    """(id, version) of the candidates the source's organisation already holds in the
    collection; a version-less object (an SCO) is held when any version of its id is."""
    store, collection, owner = ctx.node.store, ctx.collection, ctx.owner
    out: set[tuple[str, int | None]] = set()
    versioned = sorted({(c.obj.id, c.version) for c in candidates if c.version is not None})
    plain = sorted({c.obj.id for c in candidates if c.version is None})
    for start in range(0, len(versioned), _CHUNK):
        part = versioned[start:start + _CHUNK]
        ids = tuple(sorted({i for i, _ in part}))
        wanted = tuple(sorted({v for _, v in part if v is not None}))
        rows = store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=ids, versions=VersionMatch(exact=wanted),
            limit=len(part) * 8, include_body=False)).rows
        out |= {(r.id, r.version) for r in rows if r.producer_org == owner.id}
    for start in range(0, len(plain), _CHUNK):
        ids = tuple(plain[start:start + _CHUNK])
        rows = store.get_objects(ObjectQuery(
            collection_id=collection.id, ids=ids, versions=VersionMatch(all=True),
            limit=len(ids) * 8, include_body=False)).rows
        out |= {(r.id, None) for r in rows if r.producer_org == owner.id}
    return out


def _ownership(obj: StixObject) -> IdOwnership:
    return IdOwnership.CONTRIBUTOR if is_observable(obj.data) else IdOwnership.CREATOR


def _signed_at(now: int) -> str:
    moment = datetime.fromtimestamp(now / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def source_account(node: Exchange, source: TaxiiSource, owner: Organisation) -> Account:
    """The account a source's imports are recorded under: ``taxii-source-<name>``
    (:func:`exchange.node.imports.import_account`).

    Raises:
        ConfigError: The name is taken by an account of another organisation.
    """
    return import_account(node, f"taxii-source-{source.name}", owner,
                          what=f"source {source.name!r}")


def _cover(ctx: _Context, stored: Sequence[tuple[AddResult, NewVersion]],
           report: IngestReport) -> None:
    """After a peer's page is stored: keep each retired key of the peer's organisation
    valid here for what was just imported under it
    (:meth:`exchange.node.peers.Peers.cover_peer_imports`); the changes are notes."""
    last: dict[str, int] = {}
    for result, version in stored:
        if result.outcome is AddOutcome.ADDED and version.signed_kid and result.date_added:
            last[version.signed_kid] = max(last.get(version.signed_kid, 0),
                                           result.date_added)
    if last:
        report.notes += ctx.node.cover_peer_imports(str(ctx.source.trust), ctx.owner.name,
                                                    last)


def _store(ctx: _Context, versions: list[NewVersion], kid: str | None,
           report: IngestReport) -> list[tuple[AddResult, NewVersion]]:
    node, owner, source = ctx.node, ctx.owner, ctx.source
    stored = store_import(
        node, collection=ctx.collection, owner=owner,
        account=source_account(node, source, owner), channel=CHANNEL,
        request=f"taxii:{source.name}:{uuid.uuid4()}", now=ctx.now, versions=versions,
        kid=kid)
    for result, version in stored:
        if result.outcome is AddOutcome.ADDED:
            report.counts["created"] += 1
        elif result.outcome is AddOutcome.EXISTS:
            report.counts["duplicate"] += 1
        else:
            report.refuse(version.id, f"store-{result.outcome.value}",
                          f"the collection refused {version.id}: {result.outcome.value}")
    return stored
