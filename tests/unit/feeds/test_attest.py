"""The node's attestation of a vendor page in worker processes: the same signed objects,
in the page's order, as signing in the process; refusals in place; a dead worker stops
the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from exchange.errors import ExchangeError
from exchange.feeds.attest import Attester, Refused
from exchange.member.generate import generate_indicators, identity_id_for
from exchange.model.limits import Limits
from exchange.model.objects import StixObject
from exchange.signing.cxsig import verify_object
from exchange.signing.keys import generate

SIGNED_AT = "2026-12-06T00:00:00.000Z"
KEY = generate("Ed25519")


def page(count: int) -> list[dict[str, Any]]:
    made = generate_indicators(count, identity_id=identity_id_for("ExampleVendor"), seed=3,
                               start=datetime(2026, 11, 30, tzinfo=UTC))
    return [json.loads(json.dumps(o)) for o in made]


def attester(workers: int) -> Attester:
    return Attester(KEY, signed_at=SIGNED_AT, limits=Limits(), workers=workers)


def test_workers_sign_the_same_bytes_in_the_same_order_as_the_process() -> None:
    objects = page(130)
    with attester(0) as here, attester(2) as forked:
        assert forked.workers == 2
        expected = here.sign(objects)
        got = forked.sign(objects)
    assert all(isinstance(o, StixObject) for o in got)
    assert [o.canonical for o in got] == [o.canonical for o in expected]  # type: ignore[union-attr]
    assert [o.id for o in got] == [o["id"] for o in objects]  # type: ignore[union-attr]
    for signed in got:
        assert isinstance(signed, StixObject)
        assert verify_object(signed.data, lambda _kid: KEY.public_key).kid == KEY.kid


def test_an_object_that_cannot_be_signed_is_refused_in_its_place() -> None:
    objects = page(60)
    objects[17] = {**objects[17], "valid_until": "2020-01-01T00:00:00Z"}  # before valid_from
    with attester(2) as forked:
        got = forked.sign(objects)
    refused = [i for i, o in enumerate(got) if isinstance(o, Refused)]
    assert refused == [17]
    assert got[17].rule == "invalid-object"  # type: ignore[union-attr]
    assert "valid_until" in got[17].reason  # type: ignore[union-attr]
    assert [o.id for o in got if isinstance(o, StixObject)] == \
        [o["id"] for i, o in enumerate(objects) if i != 17]


def test_a_dead_worker_stops_the_page_with_an_error() -> None:
    with attester(2) as forked:
        forked.sign(page(4))
        pool = forked._pool
        assert pool is not None
        for pid in list(pool._processes):  # the forked workers of this attester
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(ExchangeError, match="signing worker died"):
            forked.sign(page(40))


def test_fewer_than_two_workers_sign_in_the_process() -> None:
    with attester(1) as here:
        assert here.workers == 0
        assert here._pool is None
        assert all(isinstance(o, StixObject) for o in here.sign(page(5)))


_HOLDER = """
import sys, time
from exchange.feeds.attest import Attester
from exchange.model.limits import Limits
from exchange.signing.keys import generate
a = Attester(generate("Ed25519"), signed_at="2026-12-06T00:00:00.000Z", limits=Limits(),
             workers=2)
a.start()
print("ready", flush=True)
time.sleep(60)
"""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_workers_end_when_the_importing_process_is_killed_outright() -> None:
    """kill -9 of a run (the OOM killer, an operator) must not leave signing workers
    waiting forever with a copy of the node key."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE,
                              text=True)
    workers: set[int] = set()
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        workers = _children(holder.pid)
        assert len(workers) >= 2
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "a signing worker outlived its parent"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pid in workers:  # only on failure: the workers this test's holder forked
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
