"""Where the node's sharing policy comes from, and how it is reloaded safely.

A :class:`PolicySource` reads ``policies/`` through the pure loader and keeps the last
good set in force: a changed directory is re-read at most every ``interval`` seconds,
and a broken change is refused (logged with the loader's clear message) while the
previous policy stays in force. Nothing is re-marked: a change applies to later reads.

``on_change(old_digest, new_digest)``, when set, is called before a changed policy takes
effect (the service records it in the audit ledger); if it raises, the change is not
taken and is tried again at the next check, so no policy is ever in force unrecorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exchange.errors import ConfigError
from exchange.policy import PolicySet, load_policies

log = logging.getLogger(__name__)


class PolicySource:
    """The policy in force for one process, reloaded when its files change."""

    def __init__(self, directory: Path, *, interval: float = 5.0) -> None:
        self.directory = directory
        self.interval = interval
        self._lock = threading.Lock()
        self._current: PolicySet | None = None
        self._checked = 0.0
        self.last_error: str | None = None
        #: Called with (old digest, new digest) before a changed policy takes effect.
        self.on_change: Callable[[str | None, str], None] | None = None

    def load(self) -> PolicySet:
        """Load the policy for the first time.

        Raises:
            ConfigError: The files are broken (the node must not start on them).
        """
        policy = load_policies(self.directory)
        with self._lock:
            self._current = policy
            self._checked = time.monotonic()
        log.info("policy %s loaded from %s", policy.digest, self.directory)
        return policy

    def current(self) -> PolicySet:
        """The policy in force, re-read if the files changed (broken changes refused).

        Raises:
            ConfigError: No policy was ever loaded successfully.
        """
        with self._lock:
            current = self._current
            due = time.monotonic() - self._checked >= self.interval
            if due:
                self._checked = time.monotonic()
        if current is None:
            return self.load()
        if not due:
            return current
        try:
            fresh = load_policies(self.directory)
        except ConfigError as e:
            if self.last_error != e.reason:
                log.error("policy change refused, keeping %s in force: %s",
                          current.digest, e.reason)
            self.last_error = e.reason
            return current
        self.last_error = None
        if fresh.digest == current.digest:
            return current
        if self.on_change is not None:
            try:
                self.on_change(current.digest, fresh.digest)
            except Exception as e:  # noqa: BLE001 - any failure keeps the old policy
                log.error("policy change to %s not taken: it could not be recorded (%s);"
                          " keeping %s in force", fresh.digest,
                          getattr(e, "reason", type(e).__name__), current.digest)
                return current
        log.info("policy reloaded: %s -> %s", current.digest, fresh.digest)
        with self._lock:
            self._current = fresh
        return fresh
