"""A private PostgreSQL cluster for the fault suite, so a test may restart it.

The machine's own cluster (127.0.0.1:5432) is shared with other suites and is never
touched: this one is made with ``initdb`` in a temporary directory, listens on a free
loopback port only (its socket directory is its own), and is stopped by ``pg_ctl``
with its own data directory when the test is done. PostgreSQL refuses to run as root,
so as root it runs as the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.conftest import free_port


class ClusterUnavailable(Exception):
    """No private cluster can be made here (the reason is the message)."""


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise ClusterUnavailable("no PostgreSQL server binaries (pg_ctl, initdb) here")


class PrivateCluster:
    """One throw-away PostgreSQL cluster on ``127.0.0.1:<port>``, trust auth."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cx-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable(
                    "running as root and there is no 'postgres' user to run a cluster as"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True,
                              check=False, timeout=timeout)
        if done.returncode != 0:
            raise ClusterUnavailable(f"{Path(argv[0]).name} failed: "
                                     f"{(done.stderr or done.stdout).strip()[-400:]}")

    def _ctl(self, *args: str) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                   " -c max_connections=60")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", "30", "-o", options, *args)

    def create(self) -> None:
        """initdb and start.

        Raises:
            ClusterUnavailable: initdb or pg_ctl failed.
        """
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                  "-U", "postgres", "-E", "UTF8", "--no-sync")
        self._ctl("start")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m <mode>``: ``fast`` (sessions are cut, a clean shutdown) or
        ``immediate`` (every server process killed; crash recovery at start)."""
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: the database is away until :meth:`start`."""
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start the stopped cluster again."""
        self._ctl("start")

    def destroy(self) -> None:
        """Stop the cluster (immediately) and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ClusterUnavailable):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30",
                          "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
