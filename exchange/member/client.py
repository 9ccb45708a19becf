"""Client side of the exchange: publish to and pull from a TAXII 2.1 collection.

Uses the real ``taxii2-client`` (the client member CERTs and SOC tools already run),
with two things it lacks by default: a timeout on every request and access to the
``X-TAXII-Date-Added-Last`` header, which is the exact cursor for incremental pulls.

``pull`` is at-least-once: objects are appended and flushed to the output file before
the cursor file is replaced atomically, so a crash can repeat the last page but never
skip one. Each line is the object's RFC 8785 canonical JSON, which for objects served by
cert-exchange is exactly the stored bytes (and what a signature covers).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import rfc8785
from taxii2client.common import _HTTPConnection
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection

from exchange.errors import InvalidInput, RemoteError

DEFAULT_TIMEOUT = 60.0


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
        self.last_headers: dict[str, str] = {}

    def __repr__(self) -> str:
        return "Connection(api_key='********')"

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_headers = dict(response.headers)

    def collection(self, url: str) -> Collection:
        """A taxii2-client Collection over this connection."""
        if not url.endswith("/"):
            url += "/"
        return Collection(url, conn=self._conn)

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


@dataclass
class PullReport:
    """Result of one pull."""

    objects: int = 0
    pages: int = 0
    cursor: str | None = None


def pull(conn: Connection, collection_url: str, out: Path, *, cursor_file: Path | None = None,
         page_size: int = 1000, max_pages: int | None = None,
         on_object: Callable[[dict[str, Any]], None] | None = None,
         progress: Callable[[int], None] | None = None) -> PullReport:
    """Append new objects of a collection to a JSON-lines file, resuming from a cursor.

    Raises:
        RemoteError: The server failed or refused.
        InvalidInput: The cursor file is unusable.
    """
    collection_url = collection_url.rstrip("/") + "/"
    cursor_path = cursor_file or out.with_name(out.name + ".cursor")
    added_after = read_cursor(cursor_path, collection_url)
    collection = conn.collection(collection_url)
    report = PullReport(cursor=added_after)
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
            for obj in objects:
                sink.write(rfc8785.dumps(obj) + b"\n")
                if on_object is not None:
                    on_object(obj)
            sink.flush()
            os.fsync(sink.fileno())
            report.pages += 1
            report.objects += len(objects)
            last = conn.last_headers.get("X-TAXII-Date-Added-Last")
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


def read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    """Objects of a JSON-lines file written by :func:`pull`."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
