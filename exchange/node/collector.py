"""Pausing Python's cyclic garbage collector around allocation-heavy work.

Building a feed, importing a page of a TAXII source or a MISP event allocate hundreds of
thousands of small objects (parsed JSON, rows, versions) and make no reference cycles.
With the collector running, every few hundred allocations start a collection, and every
few of those walk the whole heap again (the libraries a node imports hold a couple of
hundred thousand objects): a tenth to a third of such work was spent there. Reference
counting still frees everything while the collector is paused; whatever cyclic garbage
a library makes meanwhile is collected once the pause ends.

Pure code, no I/O.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


class _CollectorPause:
    """Pauses the cyclic garbage collector, process-wide (module docstring).

    Work in several threads shares one pause: the first to start stops the collector (if
    it ran), the last to finish restarts it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._restart = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._restart = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._restart:
                    gc.enable()


#: ``with collector_paused(): ...`` (re-entrant and shared between threads).
collector_paused = _CollectorPause()
