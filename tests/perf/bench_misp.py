"""The MISP push and pull against real MISP, measured beside MISP's own speed; ONE JSON line.

    .venv/bin/python tests/perf/bench_misp.py
    .venv/bin/python tests/perf/bench_misp.py --attributes 1000
    CX_BENCH_MISP_KEY=... .venv/bin/python tests/perf/bench_misp.py --misp-url URL

Without ``--misp-url`` it starts its own real MISP 2.5.1 with ``../shared/misp/start-misp.sh``
(instance ``cx-bench``, data kept between runs) and stops it at the end; with it, it uses
that MISP, whose site admin's API key is in ``CX_BENCH_MISP_KEY`` (never on the command
line). In the same run, one function per measurement:

* :func:`misp_bulk_add` (``misp_add_event``): MISP's own rate, one ``add_event`` of N
  attributes (``--attributes``, half ``ip-dst``, half ``domain``, distinct values of this
  run) through plain PyMISP, as the site admin -> attributes/s;
* :func:`exchange_push` (``exchange_push``): a fresh SQLite home with the shipped policies
  (signatures not required), N TLP:GREEN indicators published by UZ-CERT, all created
  the same UTC day (producer-day grouping makes one event of them, like MISP's bulk add;
  ``exchange_push_two_levels`` does the same with half GREEN, half CLEAR: two events),
  pushed by :func:`exchange.misp.push.run_push` to a target owned by PK-CERT, through a
  sync user of a fresh organisation -> attributes/s, its ratio to MISP's rate
  (``ratio_to_misp``, the target is >= 0.8), and where the time goes: store reads,
  mapping, ledger, store writes and MISP calls (the client's methods wrapped with timers;
  a call inside another is counted once, in the outer one), the rest as ``other``;
* :func:`emotet_push` (``emotet``): the Unit 42 Emotet playbook
  (../shared/data/real/stix20/unit42-emotet.json, STIX 2.0, 886 indicators) upgraded to
  2.1 (:mod:`exchange.member.upgrade`), published by UZ-CERT and pushed end to end:
  seconds to publish, to push, attributes pushed, attributes/s;
* :func:`misp_rest_search` (``misp_rest_search``): MISP's own rate serving attributes
  (a restSearch page of the pull's events, the bulk event, and the pull's own index +
  ``get_event`` calls) -> attributes/s;
* :func:`exchange_pull` (``exchange_pull``): N attributes in ``--pull-events`` published
  events of a fresh organisation carrying this run's tag (:func:`pull_source`), pulled
  by :func:`exchange.misp.pull.run_pull` for a target owned by UZ-CERT that takes only
  that tag -> attributes/s and where the time goes (:class:`SelfTimers`); ``--rounds``
  times, each with fresh events and a fresh node, the median round reported;
* :func:`emotet_pull` (``emotet.pull``): the Emotet events pulled back into a second
  fresh node, the listing limited to them by the target's cursor.

MISP keeps its data between runs, so every run uses values, ids and a producer day of
its own (the Emotet ids get a UUIDv5 under a fresh salt; its hash values repeat across
runs, so MISP correlates them with earlier runs' copies, as it would in production).
Progress goes to standard error; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import gc
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pymisp import MISPTag, PyMISP  # noqa: E402

import exchange.misp.convert as convert_module  # noqa: E402
import exchange.misp.pull as pull_module  # noqa: E402
import exchange.misp.push as push_module  # noqa: E402
from exchange.config import load_settings  # noqa: E402
from exchange.member.upgrade import upgrade_objects  # noqa: E402
from exchange.misp.client import MispClient  # noqa: E402
from exchange.misp.report import Outcome, RunReport  # noqa: E402
from exchange.misp.targets import (  # noqa: E402
    Direction,
    EventGrouping,
    MispTarget,
    Schedule,
    TargetFilters,
)
from exchange.model.objects import Principal  # noqa: E402
from exchange.node.policy_source import PolicySource  # noqa: E402
from exchange.node.service import Exchange, init_home  # noqa: E402
from exchange.storage import open_store  # noqa: E402
from exchange.storage.base import MispSyncState  # noqa: E402
from tests.integration.conftest import misp_account  # noqa: E402

START_MISP = ROOT.parent / "shared" / "misp" / "start-misp.sh"
EMOTET = ROOT.parent / "shared" / "data" / "real" / "stix20" / "unit42-emotet.json"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
#: Inside the shipped agreement's term, whatever the machine's clock says.
NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * 1_000_000
ENVELOPE = 1000
_ID = re.compile(r'"((?!marking-definition)[a-z0-9-]+)--([0-9a-f-]{36})"')


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settle() -> None:
    """Collect garbage just before a timed section (MISP's bulk add, the push, MISP's add of
    the push's body, the pull). The setup before a measurement (publishing N objects,
    earlier rounds) leaves the collector a full collection due, which otherwise lands in
    whichever measurement comes next: about 0.09 s here, 4 to 5 % of a push, on one side
    of the comparison and not the other. The timed code's own collections still count."""
    gc.collect()


# -- MISP ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Misp:
    url: str
    key: str = field(repr=False)


@contextlib.contextmanager
def misp_instance(url: str | None) -> Iterator[Misp]:
    """The MISP to measure: ``url`` (key in CX_BENCH_MISP_KEY), or instance cx-bench
    started here and stopped at the end."""
    if url:
        key = os.environ.get("CX_BENCH_MISP_KEY", "").strip()
        if not key:
            raise SystemExit("--misp-url needs the site admin's API key in CX_BENCH_MISP_KEY")
        yield Misp(url, key)
        return
    _log("starting MISP instance cx-bench ...")
    done = subprocess.run([str(START_MISP), "start", "cx-bench"], capture_output=True,
                          text=True, timeout=900, check=False)
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "MISP_URL" not in values:
        tail = done.stderr.strip().splitlines()[-3:]
        raise SystemExit(f"MISP cx-bench did not start (exit {done.returncode}): {tail}")
    try:
        yield Misp(values["MISP_URL"], values["MISP_KEY"])
    finally:
        subprocess.run([str(START_MISP), "stop", "cx-bench"], capture_output=True,
                       timeout=120, check=False)
        _log("stopped MISP instance cx-bench")


def sync_account(misp: Misp, tag: str, role: str = "Sync user") -> str:
    """A fresh organisation with a user of ``role`` (a sync user, as a deployment sets
    one up for the exchange); the user's key."""
    admin = PyMISP(misp.url, misp.key, timeout=120)
    return misp_account(admin, f"cert-exchange bench {tag}", role,
                        f"bench-{tag}@exchange.test")


def values(count: int, tag: str, prefix: str) -> list[tuple[str, str]]:
    """``count`` distinct (MISP type, value): half ip-dst, half domain, of this run."""
    seed = random.Random(f"{tag}/{prefix}")
    base = seed.randrange(1 << 20)
    out = []
    for n in range(count):
        if n % 2 == 0:
            x = base + n
            out.append(("ip-dst", f"10.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"))
        else:
            out.append(("domain", f"{prefix}-{n}-{tag}.bench.example"))
    return out


# -- the exchange ------------------------------------------------------------------------

class Node:
    """A fresh exchange home with the shipped policies, signatures not required."""

    def __init__(self, tmp: Path) -> None:
        policies = tmp / "policies"
        shutil.copytree(ROOT / "policies", policies)
        collections = policies / "collections.yaml"
        collections.write_text(collections.read_text().replace(
            "require_signatures: true", "require_signatures: false"))
        home = tmp / "home"
        home.mkdir(parents=True)
        (home / "exchange.toml").write_text(f'policy_dir = "{policies}"\n')
        init_home(load_settings(home, env={}))
        settings = load_settings(home, env={})
        assert settings.policy_path is not None
        policy = PolicySource(settings.policy_path)
        policy.load()
        self.ex = Exchange(settings, open_store(settings), policy=policy)
        self.uz = self.ex.add_org("UZ-CERT").identity_id
        self.ex.add_org("PK-CERT")
        self.ex.add_account("uz-pub", org="UZ-CERT", role="publisher")
        secret = self.ex.create_api_key("uz-pub")[1]
        self.principal: Principal = self.ex.authenticate("uz-pub", secret)
        self.ex.add_collection("UZ-PK Joint Working Group", alias="jwg",
                               readers=["UZ-CERT", "PK-CERT"], writers=["UZ-CERT"],
                               default_tlp="green")

    def publish(self, objects: list[dict[str, Any]]) -> int:
        stored = 0
        for start in range(0, len(objects), ENVELOPE):
            body = json.dumps({"objects": objects[start:start + ENVELOPE]}).encode()
            status = self.ex.publish(self.principal, self.ex.settings.api_root, "jwg", body)
            if status.failure_count:
                raise SystemExit(f"publish refused objects: {status.failures[:3]}")
            stored += status.success_count
        return stored

    def close(self) -> None:
        self.ex.audit.drain()
        self.ex.store.close()


class Timers:
    """Seconds per part of a push, outermost calls only (no double counting)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth = 0

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[part] += time.perf_counter() - t0
                    self.calls[part] += 1
        return timed


class SelfTimers:
    """Seconds per part of a pull, each call's own time: a timed call inside another is
    taken out of the outer one's (so parts nest and never count twice). Nesting is per
    thread: the pull reads the next event from MISP in a worker thread while it imports
    the current one, so the ``misp:`` parts overlap the others and the parts can add up
    to more than the run's wall-clock seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.main_thread_seconds = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            inner: list[float] = self._local.__dict__.setdefault("inner", [])
            inner.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                nested = inner.pop()
                with self._lock:
                    self.seconds[part] += spent - nested
                    self.calls[part] += 1
                    if threading.current_thread() is threading.main_thread():
                        self.main_thread_seconds += spent - nested
                if inner:
                    inner[-1] += spent
        return timed


class TimedClient(MispClient):
    """The real client, each public method timed as ``misp:<name>`` (the first call
    includes PyMISP's constructor, which talks to MISP); inside them, PyMISP's own calls
    timed apart (``inner``) and the bodies of the events added kept (``added``)."""

    def __init__(self, target: MispTarget, key: str, timers: Timers) -> None:
        self.inner = Timers()
        self.added: list[dict[str, Any]] = []

        by_id: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def factory(*args: Any, **kwargs: Any) -> PyMISP:
            api = PyMISP(*args, **kwargs)
            add, add_attributes = api.add_event, api.add_attribute

            def keep(event: Any, *a: Any, **k: Any) -> Any:
                kept = json.loads(json.dumps(event))
                with lock:
                    self.added.append(kept)
                answer = add(event, *a, **k)
                if isinstance(answer, dict) and isinstance(answer.get("Event"), dict):
                    with lock:
                        by_id[str(answer["Event"].get("id"))] = kept
                return answer

            def keep_parts(event_id: Any, attributes: Any, *a: Any, **k: Any) -> Any:
                # An event added in parts (exchange.misp.client): its attributes join
                # the body kept for it, which was published once whole.
                with lock:
                    kept = by_id.get(str(event_id))
                    if kept is not None and isinstance(attributes, list):
                        kept.setdefault("Attribute", []).extend(
                            json.loads(json.dumps(attributes)))
                        kept["published"] = True
                return add_attributes(event_id, attributes, *a, **k)

            def keep_last(event: Any, *a: Any, **k: Any) -> Any:
                # ... and its last attribute, in the edit that publishes it.
                with lock:
                    kept = next((e for e in self.added if isinstance(event, dict)
                                 and e.get("uuid") == event.get("uuid")), None)
                    if kept is not None and isinstance(event.get("Attribute"), list):
                        kept.setdefault("Attribute", []).extend(
                            json.loads(json.dumps(event["Attribute"])))
                return edit(event, *a, **k)

            edit = api.update_event
            api.add_event = keep  # type: ignore[method-assign]
            api.add_attribute = keep_parts  # type: ignore[method-assign]
            api.update_event = keep_last  # type: ignore[method-assign]
            for name in ("get_event", "add_event", "update_event", "publish",
                         "delete_attribute", "organisations", "get_sharing_group",
                         "add_sharing_group", "add_attribute"):
                setattr(api, name, self.inner.wrap(f"pymisp:{name}", getattr(api, name)))
            return api

        super().__init__(target, key, factory=factory)
        for name in ("get_event", "push_event", "delete_attribute", "would_push",
                     "is_sync_user", "may_create_sharing_groups", "own_organisation",
                     "find_organisation", "ensure_sharing_group", "publish_event"):
            setattr(self, name, timers.wrap(f"misp:{name}", getattr(self, name)))


@contextlib.contextmanager
def timed_push(node: Node, timers: Timers) -> Iterator[None]:
    """Time the store's reads and writes, the mapping and the ledger during a push."""
    store, audit = node.ex.store, node.ex.audit
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, part: str) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, timers.wrap(part, getattr(owner, name)))

    for name in ("get_objects", "list_collections", "grant_for", "misp_state",
                 "misp_pushed", "misp_sharing_groups", "find_org"):
        patch(store, name, "store read")
    for name in ("record_misp_pushed", "save_misp_sharing_group"):
        patch(store, name, "store write")
    patch(audit, "record", "ledger")
    patch(push_module, "map_for_target", "mapping")
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def run_timed(node: Node, misp: Misp, key: str, name: str
              ) -> tuple[RunReport, float, dict[str, Any], TimedClient]:
    target = MispTarget(name, misp.url, None, "CX_UNUSED", "PK-CERT", Direction.PUSH,
                        Schedule(interval=900), TargetFilters(), None, 600.0,
                        EventGrouping.PRODUCER_DAY)
    timers = Timers()
    client = TimedClient(target, key, timers)
    with timed_push(node, timers):
        settle()
        t0 = time.perf_counter()
        report = push_module.run_push(node.ex, target, client, now=NOW)
        total = time.perf_counter() - t0
    if report.outcome is not Outcome.OK:
        raise SystemExit(f"push {name}: {report.outcome.value}: {report.message}")
    parts = {k: round(v, 3) for k, v in sorted(timers.seconds.items())}
    misp = sum(v for k, v in timers.seconds.items() if k.startswith("misp:"))
    parts["misp (all calls)"] = round(misp, 3)
    parts["other"] = round(total - sum(timers.seconds.values()), 3)
    parts["calls"] = dict(sorted(timers.calls.items()))
    parts["inside misp calls"] = {k: round(v, 3) for k, v in sorted(
        client.inner.seconds.items())}
    return report, total, parts, client


def attributes_written(misp: Misp, names: list[str]) -> int:
    """Attributes the pushed events hold on MISP (read back as site admin)."""
    admin = PyMISP(misp.url, misp.key, timeout=120)
    total = 0
    for event_uuid in names:
        event = admin.get_event(event_uuid)
        assert isinstance(event, dict), event
        assert "Event" in event, event
        total += len(event["Event"].get("Attribute", []))
    return total


# -- the pull ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PullSource:
    """Published events on MISP for the pull to read: a fresh organisation's, all
    carrying this run's tag (``tag``), which the pull's target takes alone."""

    tag: str
    events: tuple[str, ...]
    attributes: int
    reader_key: str = field(repr=False)


def make_tag(admin: PyMISP, name: str) -> None:
    """Create an exportable tag (MISP's users may attach tags, only admins create them);
    one that exists already is fine."""
    tag = MISPTag()
    tag.name, tag.exportable = name, True
    admin.add_tag(tag)


def pull_source(misp: Misp, count: int, events: int, tag: str) -> PullSource:
    """``count`` attributes in ``events`` published events of a fresh organisation (a
    Publisher user of its own), half ``ip-dst``, half ``domain``, ``to_ids`` on three in
    four (the rest become observed-data), TLP:GREEN, this run's tag on each event; and
    the exchange's account on this MISP (a sync user of another fresh organisation)."""
    admin = PyMISP(misp.url, misp.key, timeout=120)
    name = f"cx-bench-pull:{tag}"
    make_tag(admin, name)
    make_tag(admin, "tlp:green")
    api = PyMISP(misp.url, sync_account(misp, f"source-{tag}", "Publisher"), timeout=600)
    rows = values(count, tag, "pull")
    size = -(-count // events)
    made = []
    _log(f"MISP: adding {events} published events of {count} attributes in all ...")
    for n in range(events):
        part = rows[n * size:(n + 1) * size]
        attributes = [{"type": t, "category": "Network activity", "value": v,
                       "to_ids": i % 4 != 3, "distribution": "5", "comment": f"bench {i}"}
                      for i, (t, v) in enumerate(part)]
        event = {"uuid": str(uuid.uuid4()), "info": f"bench {tag} pull source {n}",
                 "distribution": "3", "threat_level_id": "2", "analysis": "2",
                 "published": True, "Tag": [{"name": "tlp:green"}, {"name": name}],
                 "Attribute": attributes}
        answer = api.add_event(event)  # type: ignore[arg-type]
        assert isinstance(answer, dict), answer
        assert "Event" in answer, str(answer)[:300]
        assert answer["Event"].get("published") in (True, 1, "1"), str(answer)[:300]
        made.append(event["uuid"])
    return PullSource(name, tuple(made), count, sync_account(misp, f"pull-{tag}"))


def _attribute_count(event: dict[str, Any]) -> int:
    body = event.get("Event", event)
    inner = sum(len(o.get("Attribute") or ()) for o in body.get("Object") or ())
    return len(body.get("Attribute") or ()) + inner


def _median_run(rounds: int, run: Callable[[], int]) -> tuple[float, int]:
    """Median seconds of ``rounds`` runs of ``run``, and the attributes it served."""
    times, served = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        served = run()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], served


def misp_rest_search(misp: Misp, bulk_uuid: str | None, source: PullSource,
                     rounds: int = 3) -> dict[str, Any]:
    """MISP's own rate serving attributes through plain PyMISP (median of ``rounds``):

    * ``restsearch_page``: one ``search(controller="events")`` page holding every event
      of the pull's source (the tag filter, published only), as the exchange's account;
    * ``bulk_event``: ``search(controller="events")`` of the single bulk event of
      :func:`misp_bulk_add` (N attributes), as the site admin (not measured without the
      push's part, which makes that event);
    * ``index_and_get``: what the pull asks for: the index of published events with the
      tag (``search_index``, minimal), then each event by UUID with soft-deleted
      attributes (``get_event(deleted=True)``), as the exchange's account.
    """
    reader = PyMISP(misp.url, source.reader_key, timeout=600)
    admin = PyMISP(misp.url, misp.key, timeout=600)

    def page() -> int:
        found = reader.search(controller="events", tags=[source.tag], published=True,
                              limit=len(source.events), page=1)
        assert isinstance(found, list), str(found)[:300]
        return sum(_attribute_count(e) for e in found)

    def bulk() -> int:
        found = admin.search(controller="events", uuid=bulk_uuid)
        assert isinstance(found, list), str(found)[:300]
        return sum(_attribute_count(e) for e in found)

    def index_and_get() -> int:
        rows = reader.search_index(published=True, minimal=True, tags=[source.tag],
                                   sort="timestamp", desc=False, limit=500, page=1)
        assert isinstance(rows, list), str(rows)[:300]
        total = 0
        for row in rows:
            event = reader.get_event(row["uuid"], deleted=True)
            assert isinstance(event, dict), str(event)[:300]
            assert "Event" in event, str(event)[:300]
            total += _attribute_count(event)
        return total

    _log("MISP: restSearch rates ...")
    out: dict[str, Any] = {"rounds": rounds}
    runs: list[tuple[str, Callable[[], int]]] = [("restsearch_page", page)]
    if bulk_uuid is not None:
        runs.append(("bulk_event", bulk))
    runs.append(("index_and_get", index_and_get))
    for name, run in runs:
        seconds, served = _median_run(rounds, run)
        out[name] = {"attributes": served, "seconds": round(seconds, 3),
                     "attrs_per_s": round(served / seconds, 1)}
    out["attrs_per_s"] = out["restsearch_page"]["attrs_per_s"]
    return out


class TimedPullClient(MispClient):
    """The real client for a pull, its methods and PyMISP's beneath them timed (self
    time, :class:`SelfTimers`): ``misp: HTTP`` is PyMISP's request with MISP's answer
    read, ``misp: JSON decode`` PyMISP's parse of it; the events fetched are counted."""

    def __init__(self, target: MispTarget, key: str, timers: SelfTimers) -> None:
        self.served = 0
        self.fetched = 0

        def factory(*args: Any, **kwargs: Any) -> PyMISP:
            api = PyMISP.__new__(PyMISP)
            api._prepare_request = timers.wrap(  # type: ignore[method-assign]
                "misp: HTTP", functools.partial(PyMISP._prepare_request, api))
            api._check_json_response = timers.wrap(  # type: ignore[method-assign]
                "misp: JSON decode", functools.partial(PyMISP._check_json_response, api))
            timers.wrap("misp: PyMISP constructor (rest)", api.__init__)(*args, **kwargs)
            for name in ("search_index", "get_event"):
                setattr(api, name, timers.wrap(f"misp: pymisp.{name} (rest)",
                                               getattr(api, name)))
            return api

        super().__init__(target, key, factory=factory)
        get_event = self.get_event

        def counted(event_uuid: str) -> dict[str, Any] | None:
            event = get_event(event_uuid)
            if event is not None:
                self.fetched += 1
                self.served += _attribute_count(event)
            return event

        self.get_event = timers.wrap("misp: client checks", counted)  # type: ignore[method-assign]
        self.search_index = timers.wrap(  # type: ignore[method-assign]
            "misp: client checks", self.search_index)


class _TimedParser(convert_module._Parser):
    """misp-stix's parser, filled in by :func:`timed_pull` with its timers."""

    timers: SelfTimers

    def __init__(self) -> None:
        self.timers.wrap("misp-stix: parser construction", super().__init__)()

    def parse_misp_event(self, *args: Any, **kwargs: Any) -> Any:
        return self.timers.wrap("misp-stix: parse", super().parse_misp_event)(*args, **kwargs)


@contextlib.contextmanager
def timed_pull(node: Node, timers: SelfTimers) -> Iterator[None]:
    """Time the parts of a pull: store reads and writes, the ledger, misp-stix and the
    compensation, echo detection, validation and node signing (self times)."""
    store = node.ex.store
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, part: str) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, timers.wrap(part, getattr(owner, name)))

    for name in ("get_objects", "list_collections", "get_collection", "grant_for",
                 "misp_state", "misp_pulled", "misp_pushed_events", "find_org",
                 "find_account", "list_orgs"):
        if hasattr(store, name):
            patch(store, name, "store read")
    patch(store, "add_objects", "store write")
    patch(store, "record_misp_pulled", "store write")
    patch(store, "_write_audit", "ledger")
    patch(pull_module, "convert_event", "conversion: misp-stix serialise, json.loads")
    patch(convert_module, "simple_objects", "conversion: direct (simple attributes)")
    patch(convert_module, "_without", "conversion: copy without echoes")
    patch(convert_module, "_compensate", "compensation")
    patch(convert_module, "without_twins", "conversion: twins left out (ADR 0005)")
    patch(pull_module, "_echoes", "echo check")
    patch(pull_module, "validate_object", "validation")
    patch(pull_module, "sign_validated", "node signing")
    patch(pull_module._Reader, "event", "misp: waiting for the event read ahead")
    patch(pull_module, "version_to_store", "store: version rows")
    _TimedParser.timers = timers
    saved.append((convert_module, "_Parser", convert_module._Parser))
    convert_module._Parser = _TimedParser  # type: ignore[misc]
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def pull_target(name: str, misp: Misp, tags: tuple[str, ...]) -> MispTarget:
    return MispTarget(name, misp.url, None, "CX_UNUSED", "UZ-CERT", Direction.PULL,
                      Schedule(interval=900), TargetFilters(collections=("jwg",),
                                                            include_tags=tags),
                      None, 600.0, EventGrouping.PRODUCER_DAY)


#: ``--profile FILE``: the exchange pull's cProfile statistics (main thread) go to FILE.
PROFILE: dict[str, str] = {}


def run_pull_timed(node: Node, target: MispTarget, key: str
                   ) -> tuple[RunReport, float, dict[str, Any], TimedPullClient]:
    timers = SelfTimers()
    client = TimedPullClient(target, key, timers)
    # CPU time of this thread: the read-ahead thread's share of the lock is not counted
    profiler = cProfile.Profile() if PROFILE.get("pull") else None
    with timed_pull(node, timers):
        settle()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = pull_module.run_pull(node.ex, target, client, now=NOW)
        if profiler is not None:
            profiler.disable()
        total = time.perf_counter() - t0
    if profiler is not None:
        profiler.dump_stats(PROFILE["pull"])
    if report.outcome is not Outcome.OK:
        raise SystemExit(f"pull {target.name}: {report.outcome.value}: {report.message}")
    parts: dict[str, Any] = {k: round(v, 3) for k, v in sorted(
        timers.seconds.items(), key=lambda kv: -kv[1])}
    parts["misp (all)"] = round(sum(v for k, v in timers.seconds.items()
                                    if k.startswith("misp: ") and "read ahead" not in k), 3)
    parts["conversion (misp-stix + compensation)"] = round(sum(
        v for k, v in timers.seconds.items()
        if k.startswith(("misp-stix", "conversion")) or k == "compensation"), 3)
    # The worker thread's reads overlap the import: "other" is the main thread's rest.
    parts["other"] = round(total - timers.main_thread_seconds, 3)
    parts["calls"] = dict(sorted(timers.calls.items()))
    return report, total, parts, client


def exchange_pull(misp: Misp, tmp: Path, source: PullSource) -> dict[str, Any]:
    """The exchange's pull rate: the source's events, one run, into a fresh node."""
    node = Node(tmp / "pull")
    try:
        target = pull_target("uz-misp-bench", misp, (source.tag,))
        _log("exchange: pulling ...")
        report, seconds, parts, client = run_pull_timed(node, target, source.reader_key)
        assert client.fetched == len(source.events), (client.fetched, len(source.events))
        assert client.served == source.attributes, (client.served, source.attributes)
        assert report.counts["failed"] == 0, report.items[:3]
        assert report.counts["imported"] > 0, report.message
        return {"events": client.fetched, "attributes": client.served,
                "seconds": round(seconds, 3),
                "attrs_per_s": round(client.served / seconds, 1), "breakdown_s": parts,
                "counts": dict(report.counts)}
    finally:
        node.close()


# -- the measurements --------------------------------------------------------------------

def misp_bulk_add(misp: Misp, count: int, tag: str) -> dict[str, Any]:
    """MISP's own rate: one add_event of ``count`` attributes through plain PyMISP."""
    api = PyMISP(misp.url, misp.key, timeout=600)
    attributes = [{"type": t, "category": "Network activity", "value": v, "to_ids": True,
                   "distribution": "1", "comment": "bench"}
                  for t, v in values(count, tag, "misp")]
    event = {"uuid": str(uuid.uuid4()), "info": f"bench {tag} MISP bulk add",
             "distribution": "1", "threat_level_id": "4", "analysis": "2",
             "Tag": [{"name": "tlp:green"}], "Attribute": attributes}
    _log(f"MISP: one add_event of {count} attributes ...")
    settle()
    t0 = time.perf_counter()
    answer = api.add_event(event)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    assert isinstance(answer, dict), answer
    assert "Event" in answer, str(answer)[:300]
    kept = len(answer["Event"].get("Attribute", []))
    assert kept == count, (kept, count)
    return {"attributes": count, "seconds": round(seconds, 3),
            "attrs_per_s": round(count / seconds, 1), "event_uuid": event["uuid"]}


def misp_same_body(misp: Misp, sent: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """MISP's rate for the very events the exchange sent (fields, tags per attribute,
    published by the same sync user in the add), through plain PyMISP, with UUIDs and
    values of their own (so MISP correlates nothing new): what MISP itself costs for the
    exchange's payload. The push makes one event per producer, day and TLP level, so the
    bench's GREEN and CLEAR indicators go in two events; both are re-sent, one by one."""
    api = PyMISP(misp.url, key, timeout=600)
    count, seconds = 0, 0.0
    for event in sent:
        body = json.loads(json.dumps(event))
        body["uuid"] = str(uuid.uuid4())
        body["info"] = f"{body['info']} (same body, plain PyMISP)"
        for attribute in body["Attribute"]:
            attribute["uuid"] = str(uuid.uuid4())
            value = str(attribute["value"])
            attribute["value"] = ("11." + value[3:] if attribute["type"] == "ip-dst"
                                  else f"same-{value}")
        settle()
        t0 = time.perf_counter()
        answer = api.add_event(body)  # type: ignore[arg-type]
        seconds += time.perf_counter() - t0
        assert isinstance(answer, dict), answer
        assert "Event" in answer, str(answer)[:300]
        count += len(answer["Event"].get("Attribute", []))
    return {"events": len(sent), "attributes": count, "seconds": round(seconds, 3),
            "attrs_per_s": round(count / seconds, 1)}


def exchange_push(misp: Misp, tmp: Path, count: int, tag: str,
                  levels: tuple[str, ...] = (GREEN,)) -> dict[str, Any]:
    """The exchange's push rate: ``count`` indicators of one producer-day, one run; their
    TLP markings taken in turn from ``levels`` (one level: one event, as MISP's bulk
    add; two: two events of half the size)."""
    label = f"{len(levels)}-levels"
    (tmp / f"push-{label}").mkdir(parents=True)
    node = Node(tmp / f"push-{label}")
    try:
        day = date(1990, 1, 1) + timedelta(days=random.Random(f"{tag}/{label}").randrange(
            36_500))
        stamp = f"{day.isoformat()}T09:00:00.000Z"
        patterns = {"ip-dst": "ipv4-addr", "domain": "domain-name"}
        objects = [{
            "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": stamp, "modified": stamp, "name": f"bench {n}",
            "pattern": f"[{patterns[t]}:value = '{v}']", "pattern_type": "stix",
            "pattern_version": "2.1", "valid_from": stamp, "created_by_ref": node.uz,
            "object_marking_refs": [levels[n % len(levels)]],
        } for n, (t, v) in enumerate(values(count, tag, f"push-{label}"))]
        _log(f"exchange: publishing {count} indicators ...")
        t0 = time.perf_counter()
        node.publish(objects)
        published = time.perf_counter() - t0
        key = sync_account(misp, f"push-{label}-{tag}")
        _log("exchange: pushing ...")
        report, seconds, parts, client = run_timed(node, misp, key, "pk-misp-bench")
        events = sorted({e.event_uuid for e in node.ex.store.misp_pushed(
            "pk-misp-bench").values()})
        written = attributes_written(misp, events)
        assert written == count, (written, count)
        same_body = misp_same_body(misp, client.added, key)
        return {"indicators": count, "misp_add_event_same_body": same_body,
                "events": len(events), "attributes": written,
                "publish_seconds": round(published, 3), "seconds": round(seconds, 3),
                "attrs_per_s": round(written / seconds, 1), "breakdown_s": parts,
                "counts": dict(report.counts)}
    finally:
        node.close()


def emotet_push(misp: Misp, tmp: Path, tag: str) -> dict[str, Any]:
    """The Unit 42 Emotet playbook, upgraded, published and pushed end to end."""
    salt = uuid.uuid5(uuid.NAMESPACE_URL, f"cx-bench/{tag}")
    text = _ID.sub(lambda m: f'"{m[1]}--{uuid.uuid5(salt, m[2])}"', EMOTET.read_text())
    node = Node(tmp / "emotet")
    try:
        t0 = time.perf_counter()
        upgraded = upgrade_objects(json.loads(text)["objects"]).objects
        indicators = sum(1 for o in upgraded if o.get("type") == "indicator")
        stored = node.publish(upgraded)
        published = time.perf_counter() - t0
        key = sync_account(misp, f"emotet-{tag}")
        _log(f"Emotet: {indicators} indicators published, pushing ...")
        report, seconds, parts, _ = run_timed(node, misp, key, "pk-misp-emotet")
        pushed = node.ex.store.misp_pushed("pk-misp-emotet")
        events = sorted({e.event_uuid for e in pushed.values()})
        written = attributes_written(misp, events)
        return {"indicators": indicators, "objects_stored": stored,
                "objects_pushed": len(pushed), "events": len(events),
                "attributes": written, "upgrade_publish_seconds": round(published, 3),
                "push_seconds": round(seconds, 3),
                "end_to_end_seconds": round(published + seconds, 3),
                "attrs_per_s": round(written / seconds, 1), "breakdown_s": parts,
                "counts": dict(report.counts)}
    finally:
        node.close()


def emotet_pull(misp: Misp, tmp: Path, tag: str, since: int) -> dict[str, Any]:
    """The Emotet events :func:`emotet_push` wrote, pulled back into a second fresh node
    (as UZ-CERT's MISP) by a sync user of a fresh organisation. The listing sees only
    them: the target's cursor is set to ``since``, the first second after everything
    the earlier measurements wrote to MISP and before the Emotet push began (MISP runs
    on this machine's clock, and no one else writes to it meanwhile)."""
    node = Node(tmp / "emotet-pull")
    try:
        target = pull_target("uz-misp-emotet", misp, ())
        node.ex.store.save_misp_state(MispSyncState(target.name, "pull", cursor=str(since)))
        key = sync_account(misp, f"emotet-pull-{tag}")
        _log("Emotet: pulling back into a second node ...")
        report, seconds, parts, client = run_pull_timed(node, target, key)
        assert report.counts["failed"] == 0, report.items[:3]
        return {"events": client.fetched, "attributes": client.served,
                "seconds": round(seconds, 3),
                "attrs_per_s": round(client.served / seconds, 1), "breakdown_s": parts,
                "counts": dict(report.counts)}
    finally:
        node.close()


def next_second() -> int:
    """Wait for the next whole second of the clock; that second."""
    second = int(time.time()) + 1
    time.sleep(max(0.0, second - time.time()))
    return second


def median_by_rate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median attributes/s (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["attrs_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attributes", type=int, default=1000)
    parser.add_argument("--misp-url", default=None,
                        help="use this MISP (site admin key in CX_BENCH_MISP_KEY)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating MISP bulk adds and pushes (medians compared);"
                             " pulls of fresh events (the median reported)")
    parser.add_argument("--pull-events", type=int, default=5,
                        help="events the pull's N attributes are spread over")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="write the exchange pull's cProfile statistics to FILE")
    parser.add_argument("--parts", default="push,pull,emotet",
                        help="which measurements (comma-separated: push, pull, emotet)")
    args = parser.parse_args()
    if args.profile:
        PROFILE["pull"] = args.profile
    parts = set(args.parts.split(","))
    if not parts or parts - {"push", "pull", "emotet"}:
        parser.error("--parts takes push, pull and emotet, comma-separated")
    tag = uuid.uuid4().hex[:10]
    result: dict[str, Any] = {"benchmark": "misp_push_pull", "attributes": args.attributes}
    with tempfile.TemporaryDirectory(prefix="cx-bench-misp-") as tmp, \
            misp_instance(args.misp_url) as misp:
        # MISP's speed varies by a tenth or more from one call to the next here: MISP's
        # bulk add and the exchange's push alternate, and the medians are compared.
        misp_rate = None
        if "push" in parts:
            rounds = []
            for n in range(args.rounds):
                rate = misp_bulk_add(misp, args.attributes, f"{tag}-{n}")
                push = exchange_push(misp, Path(tmp) / f"round-{n}", args.attributes,
                                     f"{tag}-{n}")
                rounds.append((rate, push))
            misp_rate = median_by_rate([r for r, _ in rounds])
            pushed = median_by_rate([p for _, p in rounds])
            pushed["ratio_to_misp"] = round(pushed["attrs_per_s"] / misp_rate["attrs_per_s"],
                                            3)
            pushed["ratios_per_round"] = [round(p["attrs_per_s"] / r["attrs_per_s"], 3)
                                          for r, p in rounds]
            result["misp_add_event"] = misp_rate
            result["exchange_push"] = pushed
            mixed = exchange_push(misp, Path(tmp), args.attributes, tag, (GREEN, CLEAR))
            mixed["ratio_to_misp"] = round(mixed["attrs_per_s"] / misp_rate["attrs_per_s"], 3)
            result["exchange_push_two_levels"] = mixed
        if "pull" in parts:
            # One fresh source and one fresh node per round; the median round is
            # reported, every round's rate beside it (a single pull varies by a third
            # from one run to the next here, the first after a pause the slowest).
            pulls = []
            for n in range(args.rounds):
                source = pull_source(misp, args.attributes, args.pull_events, f"{tag}-p{n}")
                if n == 0:
                    served = misp_rest_search(
                        misp, misp_rate["event_uuid"] if misp_rate is not None else None,
                        source)
                    result["misp_rest_search"] = served
                pulls.append(exchange_pull(misp, Path(tmp) / f"pull-{n}", source))
            pulled = median_by_rate(pulls)
            pulled["ratio_to_misp"] = round(pulled["attrs_per_s"] / served["attrs_per_s"], 3)
            pulled["attrs_per_s_per_round"] = [p["attrs_per_s"] for p in pulls]
            result["exchange_pull"] = pulled
        if "emotet" in parts:
            since = next_second()
            emotet = emotet_push(misp, Path(tmp), tag)
            emotet["pull"] = emotet_pull(misp, Path(tmp), tag, since)
            result["emotet"] = emotet
    result["python"] = platform.python_version()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
