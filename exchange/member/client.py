"""Client side of the exchange: publish to and pull from a TAXII 2.1 collection.

Uses the real ``taxii2-client`` (the client member CERTs and SOC tools already run),
with two things it lacks by default: a timeout on every request and access to the
``X-TAXII-Date-Added-Last`` header, which is the exact cursor for incremental pulls.

``pull`` is at-least-once: objects are appended and flushed to the output file (or, when
a screen rejects them, to its quarantine file) before the cursor file is replaced
atomically, so a crash can repeat the last page but never skip one. Each line is the
object's RFC 8785 canonical JSON, which for objects served by cert-exchange is exactly
the stored bytes (and what a signature covers). A cursor whose feed file is gone is an
error, never a silent empty pull; :func:`reset_pull` starts a feed over.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import requests
import rfc8785
from taxii2client.common import _HTTPConnection
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection

from exchange.errors import ExchangeError, InvalidInput, RemoteError

DEFAULT_TIMEOUT = 60.0

_TAXII: Final = "application/taxii+json;version=2.1"
_EXAMPLE: Final = "http://127.0.0.1:8421/cx/collections/<id or alias>/"


def check_url(url: str) -> str:
    """``url`` with a trailing slash, if it can be a TAXII URL at all.

    Raises:
        InvalidInput: Not an http(s) URL with a host, or it has a query, a fragment,
            credentials or whitespace.
    """
    shown = url if len(url) <= 120 else url[:117] + "..."
    if not url or any(ch.isspace() for ch in url) or not url.isprintable():
        raise InvalidInput(f"--url {shown!r} is not a URL (e.g. {_EXAMPLE})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput(f"--url {shown!r} is not a valid URL (e.g. {_EXAMPLE})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"--url {shown!r} is not an http:// or https:// URL with a host"
                           f" (e.g. {_EXAMPLE})")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("--url must not carry credentials: pass --user, and the API key"
                           " in EXCHANGE_API_KEY or --api-key-file")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidInput(f"--url {shown!r} has a query or fragment; give the collection's"
                           f" URL alone (e.g. {_EXAMPLE})")
    return url if url.endswith("/") else url + "/"


def _kind(body: dict[str, Any], url: str) -> str:
    """What a TAXII resource is, from its members (TAXII 2.1 sections 4.1, 4.2, 5.1, 5.2)."""
    if "id" in body and "can_read" in body and "can_write" in body:
        return "collection"
    if "api_roots" in body or ("title" in body and "versions" not in body
                               and "collections" not in body and "default" in body):
        return "discovery"
    if "versions" in body and "max_content_length" in body:
        return "api-root"
    if "collections" in body or (not body and urlsplit(url).path.endswith("/collections/")):
        return "collections"
    return "unknown"


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class Connection:
    """An authenticated TAXII connection that remembers the last response's headers."""

    def __init__(self, user: str, api_key: str, *, verify: bool | str = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._conn = _HTTPConnection(user=user, password=api_key, verify=verify,
                                     version="2.1")
        session = _TimeoutSession(timeout)
        session.auth = self._conn.session.auth
        session.verify = verify
        session.hooks["response"].append(self._remember)
        self._conn.session = session
        self._user = user
        self._collections: dict[str, Collection] = {}
        self.last_headers: dict[str, str] = {}

    def __repr__(self) -> str:
        return "Connection(api_key='********')"

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_headers = dict(response.headers)

    def collection(self, url: str) -> Collection:
        """The taxii2-client Collection at ``url``, which may name the collection by id
        or by alias; its ``url`` is the canonical one (by id).

        Raises:
            InvalidInput: ``url`` is malformed, or is a discovery, API-root or
                collections URL rather than a collection's (the reason lists the
                collections this account can see).
            RemoteError: The server cannot be reached, refuses the account, or has no
                collection there that this account may use.
        """
        url = check_url(url)
        known = self._collections.get(url)
        if known is not None:
            return known
        body, status = self._get(url)
        if status == 404:
            raise self._not_a_collection(url, "there is no collection at {url} that account"
                                         " {user} may read or write")
        kind = _kind(body, url)
        if kind != "collection":
            what = {"discovery": "a TAXII discovery URL", "api-root": "an API root",
                    "collections": "a collection list"}.get(kind, "not a TAXII collection")
            raise self._not_a_collection(url, f"{{url}} is {what}, not a collection")
        identifier = str(body["id"])
        path = urlsplit(url).path
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        # named by its alias: address the collection by its id from now on
        canonical = url if segment == identifier else urljoin(url, f"../{identifier}/")
        collection = Collection(canonical, conn=self._conn, collection_info=body)
        self._collections[url] = self._collections[canonical] = collection
        return collection

    def _get(self, url: str) -> tuple[dict[str, Any], int]:
        """GET a TAXII resource: its JSON object and status (200 or 404)."""
        try:
            response = self._conn.session.get(url, headers={"Accept": _TAXII})
        except requests.RequestException as e:
            raise remote_error(e, f"cannot reach {url}") from e
        if response.status_code in (401, 403):
            raise RemoteError(f"{url}: HTTP {response.status_code}: the server refused"
                              f" account {self._user!r} (check --user and the API key)")
        if response.status_code == 404:
            return {}, 404
        if response.status_code != 200:
            raise remote_error(requests.HTTPError(response=response), f"GET {url} failed")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RemoteError(f"{url} did not answer with a TAXII resource (JSON object);"
                              " is it a TAXII 2.1 server?")
        return body, 200

    def _collections_listing(self, url: str) -> tuple[str, list[dict[str, Any]]] | None:
        """The collections of the API root ``url`` is in or under, as far as it can tell."""
        candidates: list[str] = []
        body, status = self._get(url)
        kind = _kind(body, url) if status == 200 else "unknown"
        if kind == "discovery":
            roots = [str(r) for r in body.get("api_roots", [])]
            default = body.get("default")
            if isinstance(default, str) and default in roots:
                roots.remove(default)
                roots.insert(0, default)
            candidates = [urljoin(url, r) for r in roots]
        elif kind == "api-root":
            candidates = [url]
        elif kind == "collections":
            candidates = [urljoin(url, "../")]
        else:
            path = urlsplit(url).path
            marker = path.rfind("/collections/")
            if marker >= 0:
                candidates = [urljoin(url, path[:marker + 1])]
        for root in candidates:
            listing, status = self._get(urljoin(root if root.endswith("/") else root + "/",
                                                "collections/"))
            if status == 200 and isinstance(listing.get("collections", []), list):
                items = [c for c in listing.get("collections", []) if isinstance(c, dict)]
                return (root if root.endswith("/") else root + "/"), items
        return None

    def _not_a_collection(self, url: str, problem: str) -> ExchangeError:
        first = problem.format(url=url, user=repr(self._user))
        found = self._collections_listing(url)
        if found is None:
            return RemoteError(f"{first}; give a collection URL such as {_EXAMPLE}")
        root, items = found
        if not items:
            return RemoteError(f"{first}; account {self._user!r} can see no collection"
                               f" under {root}")
        lines = [f"{first}; the collections account {self._user!r} can see:"]
        for item in items:
            access = "/".join(a for a, flag in (("read", item.get("can_read")),
                                                ("write", item.get("can_write"))) if flag)
            name = item.get("alias") or item.get("id")
            lines.append(f"  {root}collections/{item.get('alias') or item.get('id')}/"
                         f"  {item.get('title', '')} ({access or 'no access'})"
                         + ("" if name == item.get("id") else f" id {item.get('id')}"))
        return InvalidInput("\n".join(lines))

    def close(self) -> None:
        """Close the HTTP session."""
        self._conn.close()

    def whoami(self, collection_url: str) -> dict[str, Any]:
        """Who the server says this connection is: ``account``, ``role``,
        ``organisation`` and ``identity`` (``GET <API root>/cx/whoami/``).

        Raises:
            InvalidInput: The URL is not a collection URL (``.../collections/<id>/``).
            RemoteError: The server refused or could not be reached.
        """
        root, sep, _ = collection_url.partition("/collections/")
        if not sep:
            raise InvalidInput(
                f"{collection_url!r} is not a collection URL (.../collections/<id>/), so"
                " the API root to ask for your identity is unknown"
            )
        try:
            response = self._conn.session.get(
                root.rstrip("/") + "/cx/whoami/",
                headers={"Accept": "application/taxii+json;version=2.1"})
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as e:
            raise remote_error(e, "asking the server for your identity failed") from e
        if not isinstance(document, dict) or not isinstance(document.get("identity"), str):
            raise RemoteError("the server's answer about your identity has no identity id")
        return document


def remote_error(e: Exception, what: str) -> RemoteError:
    """Turn a client-side failure into one readable line (TAXII error text if any)."""
    if isinstance(e, requests.HTTPError) and e.response is not None:
        detail = ""
        try:
            body = e.response.json()
            detail = body.get("description") or body.get("title") or ""
        except ValueError:
            detail = ""
        return RemoteError(f"{what}: HTTP {e.response.status_code}"
                           + (f": {detail}" if detail else ""))
    if isinstance(e, requests.ConnectionError):
        return RemoteError(f"{what}: cannot connect to the server")
    if isinstance(e, requests.Timeout):
        return RemoteError(f"{what}: the server did not answer in time")
    return RemoteError(f"{what}: {e}")


@dataclass
class PublishReport:
    """What the server said about every object sent."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, message)
    status_ids: list[str] = field(default_factory=list)


def batches(objects: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Split objects into envelopes of at most ``size``."""
    if size < 1:
        raise InvalidInput("batch size must be at least 1")
    for start in range(0, len(objects), size):
        yield list(objects[start:start + size])


def publish(conn: Connection, collection_url: str, objects: Sequence[dict[str, Any]], *,
            batch_size: int = 100,
            progress: Callable[[int], None] | None = None) -> PublishReport:
    """Send objects in envelopes of ``batch_size`` and collect the status resources.

    Raises:
        RemoteError: The server refused a whole envelope or could not be reached;
            the report up to that point is lost only for the failing batch.
    """
    collection = conn.collection(collection_url)
    report = PublishReport()
    for batch in batches(objects, batch_size):
        try:
            status = collection.add_objects({"objects": batch}, wait_for_completion=False)
        except (requests.RequestException, TAXIIServiceException) as e:
            raise remote_error(e, "publish failed") from e
        report.total += int(status.total_count)
        report.succeeded += int(status.success_count)
        report.failed += int(status.failure_count)
        report.status_ids.append(str(status.id))
        for failure in status.failures or []:
            report.failures.append((str(failure.get("id", "?")),
                                    str(failure.get("message", ""))))
        if progress is not None:
            progress(len(batch))
    return report


def _write_cursor(path: Path, state: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_cursor(path: Path, collection_url: str) -> str | None:
    """The saved ``added_after`` for a collection, or None to start from the beginning.

    Raises:
        InvalidInput: The cursor file is unreadable or belongs to another collection.
    """
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInput(f"cursor file {path} is unreadable: {e}") from e
    if state.get("collection") != collection_url.rstrip("/") + "/":
        raise InvalidInput(
            f"cursor file {path} belongs to {state.get('collection')!r}, not {collection_url!r}"
        )
    value = state.get("added_after")
    return value if isinstance(value, str) else None


#: A screen judges one page of pulled objects: per object, None to keep it in the feed,
#: or the reason it goes to the quarantine file instead (see :func:`pull`).
Screen = Callable[[Sequence[dict[str, Any]]], Sequence[str | None]]


@dataclass
class PullReport:
    """Result of one pull.

    Attributes:
        objects: Objects received (kept and rejected).
        pages: Pages read.
        cursor: The ``added_after`` saved (the one read when nothing new arrived).
        kept: Objects appended to the feed file.
        rejected: Objects of this run written to the quarantine file instead.
        rejected_file: The quarantine file.
        held_before: Objects the quarantine file already held when the run started.
    """

    objects: int = 0
    pages: int = 0
    cursor: str | None = None
    kept: int = 0
    rejected: int = 0
    rejected_file: Path | None = None
    held_before: int = 0

    @property
    def held(self) -> int:
        """Objects in the quarantine file now."""
        return self.held_before + self.rejected


def pull_files(out: Path, cursor_file: Path | None = None) -> tuple[Path, Path]:
    """The cursor and quarantine files of a feed file: ``OUT.cursor`` (unless given) and
    ``OUT.rejected``."""
    return (cursor_file or out.with_name(out.name + ".cursor"),
            out.with_name(out.name + ".rejected"))


def reset_pull(out: Path, cursor_file: Path | None = None) -> list[Path]:
    """Start a feed over: remove the feed file, its cursor and its quarantine file.

    Returns:
        The files removed (those that existed).

    Raises:
        InvalidInput: A file could not be removed.
    """
    removed = []
    for path in (out, *pull_files(out, cursor_file)):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise InvalidInput(f"cannot remove {path}: {e.strerror}") from e
        removed.append(path)
    return removed


def count_lines(path: Path) -> int:
    """Non-empty lines of a file (0 when it does not exist).

    Raises:
        InvalidInput: The file exists but cannot be read.
    """
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e


def quarantine_line(obj: dict[str, Any], reason: str, received: str) -> bytes:
    """One line of the quarantine file: the object's id, why it was rejected, when it was
    received, and the object itself, as RFC 8785 canonical JSON."""
    identifier = obj.get("id")
    return rfc8785.dumps({
        "id": identifier if isinstance(identifier, str) else None,
        "reason": reason,
        "received": received,
        "object": obj,
    }) + b"\n"


def pull(conn: Connection, collection_url: str, out: Path, *, cursor_file: Path | None = None,
         page_size: int = 1000, max_pages: int | None = None,
         screen: Screen | None = None,
         progress: Callable[[int], None] | None = None) -> PullReport:
    """Append new objects of a collection to a JSON-lines file, resuming from a cursor.

    With ``screen``, each page is judged before anything of it is written: the objects
    it rejects go to the quarantine file ``OUT.rejected`` (:func:`quarantine_line`),
    never into ``out``. Both files are flushed to disk before the cursor moves past the
    page, so the cursor covers exactly what was handled, kept or rejected.

    Raises:
        RemoteError: The server failed or refused.
        InvalidInput: The cursor file is unusable, or it exists while ``out`` does not
            (the feed it counted was removed: pulling on would skip everything before it).
    """
    collection = conn.collection(collection_url)
    collection_url = collection.url  # by id, also when the caller named an alias
    cursor_path, rejected_path = pull_files(out, cursor_file)
    added_after = read_cursor(cursor_path, collection_url)
    if cursor_path.exists() and not out.exists():
        raise InvalidInput(
            f"the cursor file {cursor_path} exists but the feed file {out} does not, so"
            f" pulling on would skip every object before the cursor; run again with"
            f" --reset to pull everything into a new {out}, or restore {out}"
        )
    report = PullReport(cursor=added_after, rejected_file=rejected_path,
                        held_before=count_lines(rejected_path))
    token: str | None = None
    with out.open("ab") as sink:
        while max_pages is None or report.pages < max_pages:
            kwargs: dict[str, Any] = {"limit": page_size}
            if token:
                kwargs["next"] = token
            elif added_after:
                kwargs["added_after"] = added_after
            try:
                envelope = collection.get_objects(**kwargs)
            except (requests.RequestException, TAXIIServiceException) as e:
                raise remote_error(e, "pull failed") from e
            objects = envelope.get("objects", [])
            # read before the screen, which may make requests of its own
            last = conn.last_headers.get("X-TAXII-Date-Added-Last")
            reasons = list(screen(objects)) if screen is not None else [None] * len(objects)
            if len(reasons) != len(objects):
                raise ValueError("the screen must judge every object of the page")
            received = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            quarantined = [quarantine_line(obj, reason, received)
                           for obj, reason in zip(objects, reasons, strict=True)
                           if reason is not None]
            if quarantined:
                _append_synced(rejected_path, quarantined)
            for obj, reason in zip(objects, reasons, strict=True):
                if reason is None:
                    sink.write(rfc8785.dumps(obj) + b"\n")
            sink.flush()
            os.fsync(sink.fileno())
            report.pages += 1
            report.objects += len(objects)
            report.rejected += len(quarantined)
            report.kept += len(objects) - len(quarantined)
            if objects and last:
                report.cursor = last
                _write_cursor(cursor_path, {"collection": collection_url, "added_after": last})
            if progress is not None:
                progress(len(objects))
            if not envelope.get("more"):
                break
            token = envelope.get("next")
            if not token:
                break
    return report


def _append_synced(path: Path, lines: Sequence[bytes]) -> None:
    with path.open("ab") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """Objects of a JSON-lines file written by :func:`pull`."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
