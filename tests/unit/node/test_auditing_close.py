"""A node's background audit sequencer after its store is closed: it stops, quietly."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.node.service import Exchange
from exchange.storage.sql import SqlStore


def test_the_sequencer_stops_without_an_error_once_the_store_is_closed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    settings = replace(load_settings(home, env={}), audit_sequence_ms=50)
    store = SqlStore(f"sqlite:///{tmp_path / 'exchange.db'}")
    store.open()
    store.upgrade()
    node = Exchange(settings, store)
    store.close()  # a command that is done closes its store; the daemon thread lives on
    rounds = iter(range(5))  # bounded: five rounds at most, whatever happens

    def keep_going() -> bool:
        return next(rounds, None) is not None

    caplog.set_level(logging.INFO, logger="exchange")
    finished = threading.Event()
    worker = threading.Thread(target=lambda: (node.audit.sequence_forever(
        threading.Event(), keep_going), finished.set()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert finished.is_set()
    assert next(rounds, None) is not None  # it stopped at the first round, not the fifth
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
