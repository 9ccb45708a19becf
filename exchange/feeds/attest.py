"""The node's attestation of a vendor source's objects, on more than one core.

A vendor source's objects are signed by the node after the ingest checks (DESIGN.md
decision 8): normal form, RFC 8785 bytes, Ed25519 and the signer's strict re-check, by
:func:`exchange.signing.cxsig.sign_validated`. That is most of an import's time, and all
of it Python under one interpreter lock, so :class:`Attester` can spread a page over
worker processes. Each worker signs its share exactly as the importing process would
and sends back the signed object (its :class:`~exchange.model.objects.StixObject`), or
the rule and reason it could not be signed; results come back in the page's order.
Checking before signing, the store, the ledger and the cursor stay with the caller.

The workers are forked, so they inherit the node key: it never crosses a pipe
(:class:`~exchange.signing.keys.SigningKey` refuses to be pickled). :meth:`Attester.start`
forks them, and must run before the caller starts any thread of its own (the read-ahead):
a thread's locks would be copied held. The workers run only pure code (no database, no
network, no logging). With fewer than two workers, or where ``fork`` does not exist,
everything is signed in the calling process.

Errors: :meth:`Attester.sign` raises :class:`~exchange.errors.ExchangeError` when a worker
died (nothing of the page is then stored by the caller).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Final

from exchange.errors import ExchangeError, InvalidObject
from exchange.model.limits import Limits
from exchange.model.objects import StixObject
from exchange.signing.cxsig import sign_validated
from exchange.signing.keys import SigningKey

__all__ = ["MAX_WORKERS", "Attester", "Refused", "rule_of"]

#: The most worker processes one run forks (a source's ``sign_workers``).
MAX_WORKERS: Final = 4
#: Objects per task sent to a worker (small enough to share a page evenly).
_CHUNK: Final = 50


def rule_of(error: ExchangeError) -> str:
    """The stable rule name of a refusal (``invalid-object``, or the error's title)."""
    if isinstance(error, InvalidObject):
        return "invalid-object"
    return error.title.lower().replace(" ", "-")[:60] or "refused"


@dataclass(frozen=True, slots=True)
class Refused:
    """An object the node could not sign: the stable rule, and the reason for people."""

    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Signer:
    key: SigningKey
    signed_at: str
    limits: Limits

    def sign(self, objects: Sequence[Mapping[str, Any] | StixObject]
             ) -> list[StixObject | Refused]:
        out: list[StixObject | Refused] = []
        for item in objects:
            # Every object here passed the strict ingest check (ingest._check), so the
            # normal form may reuse stix2's rewrites of a shape it has seen; given as the
            # check's verdict, the signed object need not be checked again.
            verdict = item if isinstance(item, StixObject) else None
            obj = item.data if isinstance(item, StixObject) else item
            try:
                out.append(sign_validated(obj, self.key, signed_at=self.signed_at,
                                          attest=True, resign=True, limits=self.limits,
                                          checked=True, verdict=verdict))
            except ExchangeError as e:
                out.append(Refused(rule_of(e), e.reason))
        return out


#: The signer of a forked worker (set by :func:`_adopt` in the child only).
_WORKER_SIGNER: _Signer | None = None


#: How often a worker looks whether the process that forked it is still there (seconds).
_PARENT_CHECK_S: Final = 0.5


def _adopt(signer: _Signer, parent: int) -> None:
    """Worker initialiser: keep the signer the fork handed over (never pickled), and end
    this worker when its parent is gone.

    A worker waits on the pool's queue, whose pipe every sibling also holds open, so a
    parent killed outright (``kill -9``, the OOM killer) never gives it an end of file:
    without this watch it would wait forever, holding a copy of the node key.
    """
    global _WORKER_SIGNER  # noqa: PLW0603 - one per worker process, set once
    _WORKER_SIGNER = signer
    threading.Thread(target=_watch_parent, args=(parent,), name="cx-attest-parent",
                     daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(1)  # re-parented: the importing process is gone


def _sign_in_worker(objects: list[dict[str, Any] | StixObject]) -> list[StixObject | Refused]:
    if _WORKER_SIGNER is None:  # pragma: no cover - a worker always has one
        raise RuntimeError("attestation worker without a signer")
    return _WORKER_SIGNER.sign(objects)


def _ready() -> bool:
    return _WORKER_SIGNER is not None


class Attester:
    """Signs pages of checked objects as node attestations, in worker processes.

    Nothing is forked on construction; :meth:`start` does it, :meth:`close` ends them.

    Args:
        key: The node key.
        signed_at: The ``signed_at`` of every signature (the run's time).
        limits: The caps of the strict re-check.
        workers: Worker processes (fewer than 2: sign in the calling process).
    """

    def __init__(self, key: SigningKey, *, signed_at: str, limits: Limits,
                 workers: int) -> None:
        self._signer = _Signer(key, signed_at, limits)
        self.workers = workers if workers >= 2 and "fork" in \
            multiprocessing.get_all_start_methods() else 0
        self._pool: ProcessPoolExecutor | None = None

    @property
    def kid(self) -> str:
        """The key id of the node key that signs."""
        return self._signer.key.kid

    def __repr__(self) -> str:
        return f"Attester(kid={self._signer.key.kid!r}, workers={self.workers})"

    def __enter__(self) -> Attester:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Fork the workers (before the caller starts threads of its own).

        Raises:
            ExchangeError: The workers could not be started.
        """
        if self.workers < 2 or self._pool is not None:
            return
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_adopt, initargs=(self._signer, os.getpid()))
        self._pool = pool
        try:
            pool.submit(_ready).result()  # forks every worker now, before other threads
        except (BrokenProcessPool, OSError) as e:
            self.close()
            raise ExchangeError(f"the signing workers could not start ({type(e).__name__})"
                                ) from None

    def sign(self, objects: Sequence[Mapping[str, Any] | StixObject]
             ) -> list[StixObject | Refused]:
        """Each object signed (``attest=True``), or why not; in the order given.

        An object may be given as the strict check's verdict on it
        (:func:`~exchange.model.stix.validate_object`, ``data`` the object, unchanged
        since): the signed object then is not checked a second time where its normal form
        is certainly the object itself (:func:`~exchange.signing.cxsig.sign_validated`).

        Raises:
            ExchangeError: A worker died; nothing of this page may be stored.
        """
        if self._pool is None or len(objects) < 2:
            return self._signer.sign(objects)
        size = min(_CHUNK, -(-len(objects) // self.workers))
        # A verdict travels whole: pickling keeps its data the very object it judged.
        parts = [[o if isinstance(o, StixObject) else dict(o) for o in objects[i:i + size]]
                 for i in range(0, len(objects), size)]
        try:
            return [r for part in self._pool.map(_sign_in_worker, parts) for r in part]
        except BrokenProcessPool:
            raise ExchangeError("a signing worker died; the page is not stored") from None

    def close(self) -> None:
        """End the workers (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
