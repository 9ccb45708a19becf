"""Run the TAXII application under gunicorn (never Flask's development server).

Each gunicorn worker builds its own app (and so its own database connections) after the
fork; the master process only checks the configuration first, so a broken home fails
fast with one clear line instead of a crash loop of workers. Beside the workers runs one
``exchange audit sequence --watch`` process, which moves the workers' spooled disclosures
into the audit log (:mod:`exchange.audit.spool`) and makes the periodic checkpoints, and,
when asked, one ``exchange scheduler`` process, which runs the MISP sync jobs (or waits
while another node's scheduler leads). Both stop with the server.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from gunicorn.app.base import BaseApplication

from exchange.config import Settings
from exchange.errors import StorageError
from exchange.node.home import tighten_home
from exchange.taxii.procs import stop_child

log = logging.getLogger(__name__)

#: How long a booting worker waits for an unavailable database (gunicorn's timeout is 60 s).
_BOOT_WAIT_SECONDS = 30.0


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        # read by the front-door worker (exchange.taxii.front) for its limits
        self.exchange_settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from exchange.taxii.app import create_app  # noqa: PLC0415 - per worker, after fork

        # The audit sequencer runs in a process of its own (serve() starts it): a thread
        # in each worker would take the GIL from requests every few hundred ms.
        settings = dataclasses.replace(self._settings, audit_sequence_ms=0)
        # serve() checked the database before starting; a worker that boots later (a
        # replacement) may meet it restarting. gunicorn stops the whole server when a
        # worker fails to boot, so wait for it, bounded well within the boot timeout.
        deadline = time.monotonic() + _BOOT_WAIT_SECONDS
        while True:
            try:
                return create_app(settings)
            except StorageError as e:
                if time.monotonic() > deadline:
                    raise
                log.warning("worker %d: the database is unavailable (%s); retrying",
                            os.getpid(), e.reason)
                time.sleep(0.5)


def gunicorn_options(settings: Settings, *, threads: int = 4, access_log: bool = True
                     ) -> dict[str, Any]:
    """The gunicorn settings for a node (see deploy/gunicorn.conf.py for production).

    The worker is the front door (:mod:`exchange.taxii.front`): requests are read whole,
    under deadlines, before a thread takes them, so gunicorn alone can face a LAN.
    """
    return {
        "bind": f"{settings.host}:{settings.port}" if ":" not in settings.host
        else f"[{settings.host}]:{settings.port}",
        "workers": settings.workers,
        "worker_class": "exchange.taxii.front.FrontDoorWorker",
        "threads": threads,
        "worker_connections": 1000,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 16384,
        "accesslog": "-" if access_log else None,
        # the default access-log format has no Authorization header; keep it that way
        "access_log_format": '%(h)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s',
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "cert-exchange",
    }


def serve(settings: Settings, *, threads: int = 4, access_log: bool = True,
          scheduler: bool = False) -> None:
    """Serve until interrupted. Blocks.

    Args:
        settings: The node's settings.
        threads: Threads per worker.
        access_log: Log each request.
        scheduler: Also run ``exchange scheduler`` (the MISP sync jobs) as a child.

    Raises:
        ConfigError: The settings or the database schema are not usable.
        StorageError: The database cannot be reached.
    """
    from exchange.storage import open_store  # noqa: PLC0415

    # Whatever the node writes from here on (spool, WAL, keys) is its operator's alone.
    os.umask(0o077)
    store = open_store(settings)
    try:
        store.check_schema()
    finally:
        store.close()
    tighten_home(settings)  # a home from an older version, or one copied in: narrow it
    settings.secret_bytes()
    if settings.policy_path is not None:
        from exchange.policy import load_policies  # noqa: PLC0415

        load_policies(settings.policy_path)  # refuse to start on a broken policy
    log.info("serving TAXII 2.1 on http://%s:%d/taxii2/ with %d worker(s)",
             settings.host, settings.port, settings.workers)
    children = [_Child(settings, "the audit sequencer", ["audit", "sequence", "--watch"],
                       "the spool keeps the disclosures meanwhile")]
    if scheduler:
        children.append(_Child(settings, "the MISP scheduler", ["scheduler"],
                               "the sync jobs wait meanwhile"))
    for child in children:
        child.start()
    try:
        _Gunicorn(settings, gunicorn_options(settings, threads=threads,
                                             access_log=access_log)).run()
    finally:
        for child in children:
            child.stop()


class _Child:
    """An ``exchange`` child beside the workers (the audit sequencer, the MISP scheduler),
    restarted (after a pause) if it ever exits on its own. For the sequencer: until then
    the spool keeps every disclosure and the auditor's commands sequence on demand, but
    checkpoints wait; for the scheduler, the sync jobs wait."""

    def __init__(self, settings: Settings, label: str, command: list[str],
                 meanwhile: str) -> None:
        self._label = label
        self._meanwhile = meanwhile
        self._command = [sys.executable, "-m", "exchange", "--home", str(settings.home),
                         *command, "--parent-pid", str(os.getpid())]
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watch = threading.Thread(target=self._keep_running, name="cx-child-watch",
                                       daemon=True)

    def start(self) -> None:
        self._proc = subprocess.Popen(self._command)  # noqa: S603 - our interpreter; our child
        self._watch.start()

    def _keep_running(self) -> None:
        while not self._stopping.wait(5.0):
            proc = self._proc
            if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                # gunicorn's arbiter reaps every child of its process, this one too, and
                # then Popen can only report 0: the real status is gone.
                status = "" if proc.returncode == 0 else f" with status {proc.returncode}"
                log.error("%s stopped%s; restarting it (%s)", self._label, status,
                          self._meanwhile)
                self._proc = subprocess.Popen(self._command)  # noqa: S603 - as in start()

    def stop(self) -> None:
        self._stopping.set()
        if self._proc is not None:
            stop_child(self._proc)
