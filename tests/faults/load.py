"""Load for the fault suite, and the checks made after a fault.

Writers POST envelopes of indicators (every other one signed with cx-sig) and keep,
per envelope, what was sent and what came back: acknowledged (202 with a status whose
every object succeeded), refused (a TAXII 503), or unknown (the connection died, the
fault struck mid-request). Readers page a collection (``next``, then ``added_after``)
and keep the request id of every 200 received whole with objects in it (an empty page
discloses nothing). Anything else - a 500, HTML, a body that is not a TAXII error - is
kept as a bad answer, which every test asserts there are none of.

Every loop is bounded in count and in time; the fault is struck from the test's thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from exchange.member.generate import generate_indicators
from exchange.model.objects import Tlp
from exchange.signing.canonical import canonical, normal_form
from exchange.signing.cxsig import sign_object
from exchange.signing.keys import SigningKey
from exchange.storage.timestamps import to_micros
from tests.faults.conftest import START, Served, cli
from tests.integration.conftest import TAXII

ACKED, REFUSED, UNKNOWN = "acknowledged", "refused", "unknown"


@dataclass
class Attempt:
    """One envelope POSTed, and what the client learnt of its fate."""

    objects: list[dict[str, Any]]
    outcome: str


@dataclass
class Observed:
    """What the clients saw, shared by their threads."""

    attempts: list[Attempt] = field(default_factory=list)
    received: list[str] = field(default_factory=list)  # request ids of whole 200 reads
    refusals: int = 0
    bad: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {o["id"]: o for a in self.attempts if a.outcome == ACKED
                    for o in a.objects}

    def count(self, outcome: str) -> int:
        with self.lock:
            return sum(1 for a in self.attempts if a.outcome == outcome)


def check_refusal(answer: requests.Response) -> str | None:
    """None for a proper TAXII 503 (JSON body, Retry-After); else what is wrong."""
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status_code} with a body that is not JSON: {answer.text[:200]!r}"
    if not answer.headers.get("Content-Type", "").startswith("application/taxii+json"):
        return f"{answer.status_code} with Content-Type {answer.headers.get('Content-Type')}"
    if answer.status_code != 503 or body.get("http_status") != "503":
        return f"{answer.status_code}: {body}"
    if int(answer.headers.get("Retry-After", "0")) <= 0:
        return "503 without Retry-After"
    return None


class Load:
    """Writer and reader threads against a node; :meth:`stop` ends them.

    ``target`` is read on every request, so a test may point the clients at a
    restarted server.
    """

    def __init__(self, target: Served, key: SigningKey | None, *, tag: int) -> None:
        self.target = target
        self.key = key
        self.tag = tag
        self.seen = Observed()
        self.going = threading.Event()
        self.threads: list[threading.Thread] = []
        # asked once, now: the test's own store connection may be down during a fault
        self.identity = target.exchange.store.find_org("UZ-CERT").identity_id

    def _envelope(self, writer: int, n: int) -> list[dict[str, Any]]:
        objects = list(generate_indicators(
            5, identity_id=self.identity, seed=self.tag * 1_000_000 + writer * 1000 + n,
            start=START, tlp_weights={Tlp.GREEN: 1.0}))
        if self.key is not None and n % 2 == 0:
            objects = [sign_object(normal_form(o), self.key) for o in objects]
        return objects

    def _write(self, writer: int, envelopes: int, deadline: float) -> None:
        for n in range(envelopes):
            if not self.going.is_set() or time.monotonic() > deadline:
                return
            objects = self._envelope(writer, n)
            served = self.target
            try:
                answer = requests.post(
                    f"{served.base}/cx/collections/{served.collection}/objects/",
                    data=json.dumps({"objects": objects}),
                    auth=("uz-pub", served.keys["uz-pub"]),
                    headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=60)
            except requests.RequestException:
                self._note(Attempt(objects, UNKNOWN))
                time.sleep(0.05)
                continue
            if answer.status_code == 202:
                status = answer.json()
                if status.get("success_count") == len(objects) == status.get("total_count"):
                    self._note(Attempt(objects, ACKED))
                else:
                    self._note(Attempt(objects, UNKNOWN), bad=f"202 not a success: {status}")
            else:
                self._note(Attempt(objects, REFUSED), bad=check_refusal(answer),
                           refused=True)
                time.sleep(0.25)  # a short back-off (Retry-After would outlast the test)

    def _read(self, deadline: float, pages: int) -> None:
        params: dict[str, str] = {"limit": "7"}
        for _ in range(pages):
            if not self.going.is_set() or time.monotonic() > deadline:
                return
            served = self.target
            try:
                answer = requests.get(
                    f"{served.base}/cx/collections/{served.collection}/objects/",
                    params=params, auth=("pk-reader", served.keys["pk-reader"]),
                    headers={"Accept": TAXII}, timeout=60)
                body = answer.json() if answer.status_code == 200 else None
            except (requests.RequestException, ValueError):
                params = {"limit": "7"}  # a new server: its tokens are its own too
                time.sleep(0.05)
                continue
            if body is None:
                self._note(None, bad=check_refusal(answer), refused=True)
                time.sleep(0.25)
                continue
            if body.get("objects"):  # an empty page discloses nothing: no record
                with self.seen.lock:
                    self.seen.received.append(answer.headers["X-Request-ID"])
            if body.get("more"):
                # the same listing's next page: its filters again, with the token (a
                # token is bound to the collection and the filters it was issued for)
                params = {**{k: v for k, v in params.items() if k != "next"},
                          "next": body["next"]}
            else:  # again from just before the first page's end: added_after
                first = answer.headers.get("X-TAXII-Date-Added-First")
                params = {"limit": "7", **({"added_after": first} if first else {})}

    def _note(self, attempt: Attempt | None, *, bad: str | None = None,
              refused: bool = False) -> None:
        with self.seen.lock:
            if attempt is not None:
                self.seen.attempts.append(attempt)
            if bad:
                self.seen.bad.append(bad)
            elif refused:
                self.seen.refusals += 1

    def _guarded(self, work: Any, *args: Any) -> None:
        """Run a client loop; a crash of the client is a bad answer, never unnoticed."""
        try:
            work(*args)
        except Exception as e:  # noqa: BLE001 - reported through seen.bad
            self._note(None, bad=f"client crashed: {e!r}")

    def begin(self, *, writers: int, readers: int, envelopes: int = 40, pages: int = 400,
              seconds: float = 60) -> None:
        """Start the threads: each ends after its count, ``seconds``, or :meth:`stop`."""
        deadline = time.monotonic() + seconds
        self.going.set()
        self.threads = [threading.Thread(target=self._guarded,
                                         args=(self._write, w, envelopes, deadline))
                        for w in range(writers)]
        self.threads += [threading.Thread(target=self._guarded, args=(self._read, deadline, pages))
                         for _ in range(readers)]
        for thread in self.threads:
            thread.start()

    def wait_for(self, *, acked: int = 0, received: int = 0, seconds: float = 60) -> None:
        """Wait (bounded) until that many envelopes were acknowledged and reads received."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.seen.lock:
                done = (sum(1 for a in self.seen.attempts if a.outcome == ACKED) >= acked
                        and len(self.seen.received) >= received)
            if done:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.going.clear()
        for thread in self.threads:
            thread.join(timeout=90)


def _pages(served: Served, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a paged resource, read as the publisher (bounded)."""
    out: list[dict[str, Any]] = []
    query = dict(params, limit="500")
    for _ in range(200):
        answer = requests.get(f"{served.base}/cx/collections/{served.collection}/{path}",
                              params=query, auth=("uz-pub", served.keys["uz-pub"]),
                              headers={"Accept": TAXII}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        out.extend(body.get("objects", []))
        if not body.get("more"):
            return out
        query = dict(params, limit="500", next=body["next"])
    raise AssertionError("paging did not end")


def assert_stored_once_and_whole(served: Served, seen: Observed) -> None:
    """Every acknowledged object is stored once and whole; every envelope whose fate the
    client did not learn is stored entirely or not at all; nothing refused is stored;
    the publish records name exactly the stored versions; the ledger verifies."""
    stored = _pages(served, "objects/", {"match[version]": "all"})
    versions = Counter(o["id"] for o in stored)
    by_id = {o["id"]: o for o in stored}
    manifest = Counter(m["id"] for m in _pages(served, "manifest/", {"match[version]": "all"}))
    assert all(n == 1 for n in versions.values()), versions.most_common(3)
    assert manifest == versions
    for attempt in seen.attempts:
        present = [o["id"] in by_id for o in attempt.objects]
        if attempt.outcome == ACKED:
            assert all(present)
        else:
            # The fault struck mid-request, or the answer was a 503: all or nothing. A 503
            # does not prove nothing was stored: when PostgreSQL dies during COMMIT the
            # server cannot know whether the commit landed (a retried POST of the same
            # versions then succeeds without storing them twice).
            assert all(present) or not any(present), (attempt.outcome, present)
        for sent in attempt.objects:
            if sent["id"] in by_id:
                assert canonical(by_id[sent["id"]]) == canonical(sent)
    acked = seen.acknowledged()
    for object_id in list(acked)[:: max(1, len(acked) // 10)]:  # GET by id, a sample
        answer = requests.get(
            f"{served.base}/cx/collections/{served.collection}/objects/{object_id}/",
            auth=("uz-pub", served.keys["uz-pub"]), headers={"Accept": TAXII}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert [canonical(o) for o in answer.json()["objects"]] == [canonical(acked[object_id])]
    published = Counter()
    records = cli(served.home, "audit", "records", "--kind", "publish")
    assert records.returncode == 0, records.stderr
    for line in records.stdout.splitlines():
        for entry in json.loads(line)["objects"]:
            published[(entry[0] if isinstance(entry, list) else entry["object_id"],
                       _micros(entry[1] if isinstance(entry, list)
                               else entry["object_version"]))] += 1
    assert published == Counter((o["id"], to_micros(o["modified"])) for o in stored)
    verified = cli(served.home, "audit", "verify")
    assert verified.returncode == 0, verified.stderr


def _micros(value: int | str) -> int:
    return value if isinstance(value, int) else to_micros(value)
